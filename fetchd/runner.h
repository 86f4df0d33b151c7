/* fetchd's runner: turns triggers (link-up, the periodic timer, SIGUSR1, --once) into
 * release steps (release.h), one relay at a time:
 *
 *   trigger --> every relay marked wanted --> wait for the local MTA (mta.h, bounded)
 *           --> each wanted relay that is idle: one release step for all its domains
 *           --> domains whose verdict is RETRY: again after backoff.h's delay, up to
 *               retry_limit retries; DONE and FATAL domains are not asked again
 *
 * One step at a time per relay: a trigger that arrives while the relay's step runs is
 * remembered and runs once after it; a trigger that arrives while the relay waits for a
 * retry starts a fresh series at once (the link has just come up: that is the moment).
 * A relay whose TLS and AUTH keys cannot be used (runner_check) is reported and skipped. The runner reads each relay's
 * password file once, at creation, and holds one TLS client context for all relays.
 *
 * In --once mode the runner reports, when every relay's series has ended, whether every
 * domain got a DONE verdict. */
#ifndef HF_FETCHD_RUNNER_H
#define HF_FETCHD_RUNNER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cfg.h"
#include "dns.h"

struct runner;

/* Once mode: every series has ended. ok: every domain of every usable relay was DONE and
 * no relay was skipped. */
typedef void (*runner_idle_cb)(bool ok, void *arg);

struct runner_opts {
    const struct cfg *cfg;  /* borrowed until the runner is closed */
    struct dns *dns;        /* borrowed until the runner is closed */
    const char *helo;       /* our name for EHLO (copied) */
    runner_idle_cb on_idle; /* called each time the runner becomes idle after work; or NULL */
    void *arg;
    uint32_t seed; /* seeds the retry jitter */
};

/* Checks what fetchd needs beyond cfg.c's rules and appends one error per problem to errs
 * (with the line of the key or section): no [relay] section, a local_mta that does not
 * parse, an unreadable tls_ca_file (line 0: global), TLS and AUTH keys that do not go
 * together (release_tls_problem),
 * an auth_password_file that cannot be used (unreadable, empty, or open to group or others:
 * see secret.h). Returns the number of problems added, or -ENOMEM. */
int runner_check(const struct cfg *c, struct cfg_errors *errs);

/* Creates the runner: reads the relays' password files and the CA store, no network I/O
 * yet. Returns 0 and *out, -ENOMEM, HF_ECONFIG when no relay
 * can run (each reason logged). */
int runner_new(uv_loop_t *loop, const struct runner_opts *o, struct runner **out);

/* A trigger: reason is logged ("link-up dev=eth0", "timer", "signal", "once"; borrowed). */
void runner_trigger(struct runner *r, const char *reason);

/* True while anything is running, waiting for a retry or for the local MTA. */
bool runner_busy(const struct runner *r);

/* Stops everything (steps are cancelled, timers stopped); no on_idle after this. Memory is
 * released from the loop's close callbacks, so the loop must run until it is empty. */
void runner_close(struct runner *r);

#endif
