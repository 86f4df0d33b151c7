/* The release step's dispatch by mode (see release.h). ETRN is the only mode for now;
 * ATRN (RFC 2645) slots in as a second member of the union and a second case below, with
 * the same verdict per domain. Also the pure reading of a relay's TLS and AUTH keys, shared
 * by the checks (runner_check) and the steps. */
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
    return NULL;
}

static bool release_is(const char *v, const char *want)
{
    return v && strcmp(v, want) == 0;
}

const char *release_tls_problem(const struct cfg_relay *relay)
{
    bool user = relay->auth_user && relay->auth_user[0];
    bool file = relay->auth_password_file && relay->auth_password_file[0];
    if (user && !file)
        return "auth_user needs auth_password_file (the file holding the password)";
    if (file && !user)
        return "auth_password_file is set but auth_user is not";
    if (user && release_is(relay->tls, "no"))
        return "auth_user needs TLS (credentials are never sent in clear): "
               "set tls = require";
    if (release_is(relay->tls_verify, "yes") && release_is(relay->tls, "no"))
        return "tls_verify = yes needs tls = may or tls = require";
    return NULL;
}

enum smtpc_tls release_tls_policy(const struct cfg_relay *relay)
{
    if (release_is(relay->tls, "no"))
        return SMTPC_TLS_NEVER;
    if (release_is(relay->tls, "may"))
        return SMTPC_TLS_OPPORTUNISTIC;
    return SMTPC_TLS_REQUIRED;
}

bool release_tls_verify(const struct cfg_relay *relay)
{
    if (release_is(relay->tls_verify, "yes"))
        return true;
    if (release_is(relay->tls_verify, "no"))
        return false;
    return release_is(relay->tls, "require") || (relay->auth_user && relay->auth_user[0]);
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
    if (release_unsupported(p->relay) || release_tls_problem(p->relay))
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
