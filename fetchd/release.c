/* The release step's dispatch by mode (see release.h). ETRN is the only mode for now;
 * ATRN (RFC 2645) slots in as a second member of the union and a second case below, with
 * the same verdict per domain. */
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

const char *release_verdict_name(enum release_verdict v)
{
    switch (v) {
    case RELEASE_PENDING:
        return "pending";
    case RELEASE_DONE:
        return "done";
    case RELEASE_RETRY:
        return "retry";
    case RELEASE_FATAL:
        return "fatal";
    }
    return "?";
}

const char *release_unsupported(const struct cfg_relay *relay)
{
    if (relay->mode && strcmp(relay->mode, "atrn") == 0)
        return "mode = atrn: ATRN (RFC 2645) is not available yet; use mode = etrn";
    /* TLS HOOK: remove once lib/tls.c gives conn_start_tls with certificate checks. */
    if (relay->tls && strcmp(relay->tls, "require") == 0)
        return "tls = require: TLS not available yet (STARTTLS comes with the TLS work); "
               "use tls = may or tls = no meanwhile";
    return NULL;
}

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
    if (release_unsupported(p->relay))
        return -ENOTSUP;
    if (!p->ndomains)
        return -EINVAL;
    struct release_step *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cb = cb;
    s->arg = arg;
    s->mode = RELEASE_MODE_ETRN;
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
        fetchd_etrn_cancel(s->u.etrn);
        break;
    case RELEASE_MODE_ATRN:
        break;
    }
}
