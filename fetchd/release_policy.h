/* What a release step's outcome means and how a relay's keys read, pure (no I/O): the
 * verdict per domain, whether this build can serve the relay's mode, whether its TLS and
 * AUTH keys go together, and the TLS policy and certificate check they ask for. Its own
 * header so the steps (etrn.c) need not call the dispatch (release.c) that calls them. */
#ifndef HF_FETCHD_RELEASE_POLICY_H
#define HF_FETCHD_RELEASE_POLICY_H

#include <stdbool.h>

#include "cfg.h"
#include "smtpc.h"

enum release_verdict {
    RELEASE_PENDING = 0, /* not decided yet (never in a finished step's results) */
    RELEASE_DONE,        /* the relay started the queue run, or has nothing waiting */
    RELEASE_RETRY,       /* try again later: 458, other 4xx, unreachable, DNS trouble */
    RELEASE_FATAL,       /* retrying will not help: 459, 5xx, a null MX */
};

/* A static name for logs: "pending", "done", "retry", "fatal". */
const char *release_verdict_name(enum release_verdict v);

/* Why the relay's TLS and AUTH keys do not go together, as a static sentence, or NULL:
 * auth_user without auth_password_file or the reverse, AUTH with tls = no (credentials
 * never go in clear; allowed for mode = atrn, which then uses CRAM-MD5 only), tls_verify =
 * yes with tls = no. Pure. */
const char *release_tls_problem(const struct cfg_relay *relay);

/* The relay's port: `port`, or 25 (SMTP) for mode = etrn and 366 (ODMR, RFC 2645 3) for
 * mode = atrn when it is unset. */
unsigned release_port(const struct cfg_relay *relay);

/* The relay's `tls` as smtpc's policy: no -> NEVER, may -> OPPORTUNISTIC, require (and
 * anything else) -> REQUIRED. Unset: may for mode = etrn, require for mode = atrn. */
enum smtpc_tls release_tls_policy(const struct cfg_relay *relay);

/* Whether the relay's certificate must verify (chain to a trusted CA and the host name):
 * tls_verify = yes; or auto (the default) with tls = require or an auth_user: a password
 * goes only to the right server, and "require" means an attacker may not stand in. With
 * tls = may and no auth_user, auto means no: opportunistic TLS (RFC 7435) encrypts whatever
 * the certificate, whose check is still logged. */
bool release_tls_verify(const struct cfg_relay *relay);

#endif
