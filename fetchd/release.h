/* One release step for one relay: ask the relay (or each MX host of the relay's domains)
 * to send the held mail, and report one verdict per domain. The step is chosen by the
 * relay's mode: ETRN (etrn.c: the relay opens a fresh connection to our MX) now, ATRN
 * (RFC 2645: the relay turns our connection around and we hand the mail to the local MTA)
 * later, behind the same interface.
 *
 * The runner (runner.c) decides when a step runs, retries the domains whose verdict is
 * RELEASE_RETRY and keeps one step at a time per relay; a step knows nothing of timers. */
#ifndef HF_FETCHD_RELEASE_H
#define HF_FETCHD_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cfg.h"
#include "dns.h"
#include "smtpc.h"

struct tls_ctx;

enum release_verdict {
    RELEASE_PENDING = 0, /* not decided yet (never in a finished step's results) */
    RELEASE_DONE,        /* the relay started the queue run, or has nothing waiting */
    RELEASE_RETRY,       /* try again later: 458, other 4xx, unreachable, DNS trouble */
    RELEASE_FATAL,       /* retrying will not help: 459, 5xx, a null MX */
};

/* A static name for logs: "pending", "done", "retry", "fatal". */
const char *release_verdict_name(enum release_verdict v);

struct release_step;

/* Called exactly once per started step, from the loop, with the verdicts (results[i] for
 * domains[i] of the parameters; borrowed, valid during the call). The step is freed right
 * after the callback returns. cancelled is true after release_step_cancel(). */
typedef void (*release_done_cb)(const enum release_verdict *results, size_t n, bool cancelled,
                                void *arg);

struct release_params {
    uv_loop_t *loop;
    struct dns *dns;               /* borrowed: must outlive the step */
    const struct cfg_relay *relay; /* borrowed for the step's life: name, host, port, mode */
    const char *const *domains;    /* the domains this step asks for (copied) */
    size_t ndomains;               /* >= 1 */
    const char *helo;              /* our name for EHLO (copied) */
    uint64_t connect_timeout_ms;
    uint64_t reply_timeout_ms;
    struct tls_ctx *tls_ctx;   /* client context (borrowed for the step's life); NULL only
                                  when relay->tls is "no" */
    const char *auth_password; /* relay->auth_user's password (borrowed for the step's life),
                                  or NULL when the relay has no auth_user */
};

/* Why a relay cannot run at all with this build (mode = atrn), as a static sentence, or NULL
 * when it can. Pure; fetchd -t reports it and the runner skips the relay. */
const char *release_unsupported(const struct cfg_relay *relay);

/* Why the relay's TLS and AUTH keys do not go together, as a static sentence, or NULL:
 * auth_user without auth_password_file or the reverse, AUTH with tls = no (credentials
 * never go in clear), tls_verify = yes with tls = no. Pure. */
const char *release_tls_problem(const struct cfg_relay *relay);

/* The relay's `tls` as smtpc's policy: no -> NEVER, may -> OPPORTUNISTIC, require (and
 * anything else) -> REQUIRED. */
enum smtpc_tls release_tls_policy(const struct cfg_relay *relay);

/* Whether the relay's certificate must verify (chain to a trusted CA and the host name):
 * tls_verify = yes; or auto (the default) with tls = require or an auth_user: a password
 * goes only to the right server, and "require" means an attacker may not stand in. With
 * tls = may and no auth_user, auto means no: opportunistic TLS (RFC 7435) encrypts whatever
 * the certificate, whose check is still logged. */
bool release_tls_verify(const struct cfg_relay *relay);

/* Starts the step for p->relay's mode. Returns 0 and *out (the callback will run exactly
 * once), -ENOTSUP when release_unsupported() or release_tls_problem() says so, -EINVAL (no
 * domains; TLS wanted but no tls_ctx; auth_user but no auth_password), -ENOMEM; on error
 * nothing was started and the callback will not run. */
int release_step_start(const struct release_params *p, release_done_cb cb, void *arg,
                       struct release_step **out);

/* Stops the step early (shutdown): open connections are aborted; DNS lookups end when the
 * resolver is freed (dns_free). The callback still runs once, with cancelled = true. */
void release_step_cancel(struct release_step *s);

#endif
