/* One release step for one relay: ask the relay (or each MX host of the relay's domains)
 * to send the held mail, and report one verdict per domain. The step is chosen by the
 * relay's mode: ETRN (etrn.c: the relay opens a fresh connection to our MX) or ATRN
 * (RFC 2645: the relay turns our connection around and we hand the mail to the local MTA,
 * atrn.c), behind the same interface.
 *
 * The verdicts and the pure reading of a relay's keys are in release_policy.h (included
 * here). The runner (runner.c) decides when a step runs, retries the domains whose verdict is
 * RELEASE_RETRY and keeps one step at a time per relay; a step knows nothing of timers. */
#ifndef HF_FETCHD_RELEASE_H
#define HF_FETCHD_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cfg.h"
#include "dns.h"
#include "release_policy.h"
#include "smtpc.h"

struct tls_ctx;

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
    const char *local_mta;     /* ATRN: where the mail goes ("host:port", borrowed) */
    bool local_lmtp;           /* ATRN: local_mta speaks LMTP */
};

/* Starts the step for p->relay's mode. Returns 0 and *out (the callback will run exactly
 * once), -ENOTSUP when release_tls_problem() says so, -EINVAL (no
 * domains; TLS wanted but no tls_ctx; auth_user but no auth_password), -ENOMEM; on error
 * nothing was started and the callback will not run. */
int release_step_start(const struct release_params *p, release_done_cb cb, void *arg,
                       struct release_step **out);

/* Stops the step early (shutdown): open connections are aborted; DNS lookups end when the
 * resolver is freed (dns_free). The callback still runs once, with cancelled = true. */
void release_step_cancel(struct release_step *s);

#endif
