/* The release step's dispatch by mode (see release.h). ETRN and ATRN (RFC 2645) share the
 * connection step of etrn.c (resolve, connect, STARTTLS, AUTH), which sends ETRN or ATRN by
 * the relay's mode and, for ATRN, hands the turned connection to atrn.c; the verdict per
 * domain is the same either way. The pure reading of a relay's keys that the checks and the
 * steps share is in release_policy.c, which the steps call instead of this file. */
#include "release.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fetchd_etrn.h"

enum release_mode { RELEASE_MODE_ETRN = 0, RELEASE_MODE_ATRN };

struct release_step {
    enum release_mode mode;
    union {
        struct fetchd_etrn_run *etrn;
    } u;
    release_done_cb cb;
    void *arg;
};

static void release_on_done(const enum release_verdict *results, size_t n, bool cancelled,
                            void *arg)
{
    struct release_step *s = arg;
    s->cb(results, n, cancelled, s->arg);
    free(s);
}

int release_step_start(const struct release_params *p, release_done_cb cb, void *arg,
                       struct release_step **out)
{
    if (release_tls_problem(p->relay))
        return -ENOTSUP;
    if (release_tls_policy(p->relay) != SMTPC_TLS_NEVER && !p->tls_ctx)
        return -EINVAL;
    if (p->relay->auth_user && p->relay->auth_user[0] && !p->auth_password)
        return -EINVAL;
    if (!p->ndomains)
        return -EINVAL;
    struct release_step *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cb = cb;
    s->arg = arg;
    s->mode = p->relay->mode && strcmp(p->relay->mode, "atrn") == 0 ? RELEASE_MODE_ATRN
                                                                    : RELEASE_MODE_ETRN;
    if (s->mode == RELEASE_MODE_ATRN && !p->local_mta) {
        free(s);
        return -EINVAL;
    }
    int rc = fetchd_etrn_start(p, release_on_done, s, &s->u.etrn);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void release_step_cancel(struct release_step *s)
{
    if (!s)
        return;
    switch (s->mode) {
    case RELEASE_MODE_ETRN:
    case RELEASE_MODE_ATRN:
        fetchd_etrn_cancel(s->u.etrn);
        break;
    }
}
