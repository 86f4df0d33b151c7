/* fetchd's ETRN release step (RFC 1985): one connection per relay host carrying one
 * "ETRN <domain>" for every domain that host is asked for, then QUIT; one verdict per
 * domain. The host is the relay's configured host, or, when the relay has no host
 * (`host =` left empty), every MX host of each domain (dns_mx_resolve), so a host that is
 * MX for several of the domains still gets one connection.
 *
 * Named fetchd_etrn.h, not etrn.h, because relayd/etrn.h (the server side) is on the same
 * include path when the unit tests link both cores; the prefix fetchd_etrn_ keeps the
 * symbols apart for the same reason.
 *
 * fetchd_etrn_verdict() is pure (no I/O) and unit-tested; the rest is glue over conn.h,
 * dns.h and smtpc.h, reached through release.h. */
#ifndef HF_FETCHD_ETRN_H
#define HF_FETCHD_ETRN_H

#include "release.h"

struct fetchd_etrn_run;

/* What an ETRN reply code means for fetchd (RFC 1985 5): 250, 251, 252, 253 (and any
 * other 2xx) are DONE: the run started or nothing waits; 459 ("node not allowed": the
 * relay does not serve the domain, or not for us) and every 5xx are FATAL: asking again
 * gets the same answer; 458 ("unable to queue now") and every other 4xx are RETRY, and so
 * is 0 (no reply: unreachable, connection lost, timeout) and any code outside 200..599
 * or of class 1 or 3, which no ETRN reply should be. */
enum release_verdict fetchd_etrn_verdict(int code);


/* Starts the ETRN step described by p (see release.h; p->relay->mode is not checked
 * here). Returns 0 and *out (cb runs exactly once, from the loop), -EINVAL (no domains, a
 * domain not fit for an ETRN line), -ENOMEM; then nothing runs. */
int fetchd_etrn_start(const struct release_params *p, release_done_cb cb, void *arg,
                      struct fetchd_etrn_run **out);

/* Aborts open connections; see release_step_cancel(). */
void fetchd_etrn_cancel(struct fetchd_etrn_run *r);

#endif
