/* The pure reading of a relay's mode, TLS and AUTH keys, and the verdict names: shared by
 * the checks (runner_check), the dispatch (release.c) and the steps (etrn.c, later ATRN),
 * which call this file and never release.c. See release_policy.h. */
#include "release_policy.h"

#include <stdbool.h>
#include <string.h>

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

static bool release_is(const char *v, const char *want)
{
    return v && strcmp(v, want) == 0;
}

/* The relay's `tls`, or its default by mode: ATRN carries the mail itself over the
 * connection, so STARTTLS is required unless configured otherwise. */
static const char *release_tls_of(const struct cfg_relay *relay)
{
    if (relay->tls && relay->tls[0])
        return relay->tls;
    return release_is(relay->mode, "atrn") ? "require" : "may";
}

const char *release_tls_problem(const struct cfg_relay *relay)
{
    bool user = relay->auth_user && relay->auth_user[0];
    bool file = relay->auth_password_file && relay->auth_password_file[0];
    if (user && !file)
        return "auth_user needs auth_password_file (the file holding the password)";
    if (file && !user)
        return "auth_password_file is set but auth_user is not";
    /* ATRN may authenticate with CRAM-MD5 (RFC 2645 5), which sends no password. */
    if (user && release_is(release_tls_of(relay), "no") && !release_is(relay->mode, "atrn"))
        return "auth_user needs TLS (credentials are never sent in clear): "
               "set tls = require";
    if (release_is(relay->tls_verify, "yes") && release_is(release_tls_of(relay), "no"))
        return "tls_verify = yes needs tls = may or tls = require";
    return NULL;
}

unsigned release_port(const struct cfg_relay *relay)
{
    if (relay->port)
        return (unsigned)relay->port;
    return release_is(relay->mode, "atrn") ? 366 : 25;
}

enum smtpc_tls release_tls_policy(const struct cfg_relay *relay)
{
    if (release_is(release_tls_of(relay), "no"))
        return SMTPC_TLS_NEVER;
    if (release_is(release_tls_of(relay), "may"))
        return SMTPC_TLS_OPPORTUNISTIC;
    return SMTPC_TLS_REQUIRED;
}

bool release_tls_verify(const struct cfg_relay *relay)
{
    if (release_is(relay->tls_verify, "yes"))
        return true;
    if (release_is(relay->tls_verify, "no"))
        return false;
    return release_is(release_tls_of(relay), "require") ||
           (relay->auth_user && relay->auth_user[0]);
}
