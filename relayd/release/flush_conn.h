/* The connections of a queue run (flush_conn.c) and the small interface through which they
 * reach the run that owns them (flush.c). The run owns the shared state (struct flush_run
 * in flush_int.h: its items, results, summary and workers); a connection reads the run's
 * attempts and TLSA answers, and changes the run only through these calls, so flush_conn.c
 * never calls into flush.c. All calls happen on the loop. */
#ifndef HF_FLUSH_CONN_H
#define HF_FLUSH_CONN_H

#include <stddef.h>
#include <stdint.h>

struct flush_item;
struct flush_run;
struct flush_worker;
struct smtpc_result;

struct flush_conn_owner {
    /* The domain's outbound TLS policy: none, may, encrypt, verify, dane (borrowed). */
    const char *(*tls_policy)(const struct flush_run *run);
    /* The next message no connection has taken, now marked taken; NULL when none is left
     * or the daemon is shutting down: the connection then quits. */
    struct flush_item *(*take)(struct flush_run *run);
    /* Records every recipient of it: results r[i], or one shared result when r is NULL;
     * logs one line each and queues the changes to the writer thread. */
    void (*record)(struct flush_run *run, struct flush_item *it, const char *relay, const char *tls,
                   const struct smtpc_result *r, const struct smtpc_result *shared);
    /* For the run's summary: the exchanger last tried (relay) and the last error (error);
     * either may be NULL. Both are copied. */
    void (*note)(struct flush_run *run, const char *relay, const char *error);
    /* w is over (no exchanger left to try, or the session ended): the run forgets it and
     * ends once nothing is outstanding, which may free the run. The connection code frees
     * w right after and touches neither again. */
    void (*worker_done)(struct flush_run *run, struct flush_worker *w);
};

/* Connects w (w->run and w->own set, w->attempt the first exchanger to try) to
 * run->attempts[w->attempt] or the next that works, and delivers what w->own hands out,
 * several messages per connection; moves on to the next exchanger when one fails or
 * refuses the session. When no attempt is left, ends w through w->own->worker_done and
 * frees it. */
void flush_conn_start(struct flush_worker *w);

/* ATRN (RFC 2645 4.3): w (w->run and w->own set) takes over c, an inbound connection whose
 * ATRN was just answered 250, as an SMTP client: waits for the client's 220 with
 * timeout_ms per reply, delivers what w->own hands out, QUIT. pre[0..prelen) are octets the
 * client sent after ATRN (read already; fed first). relay names the peer for logs. TLS
 * that the session negotiated stays; no STARTTLS is tried. Ends w like flush_conn_start. */
struct conn;
void flush_conn_adopt(struct flush_worker *w, struct conn *c, const char *relay, const char *pre,
                      size_t prelen, uint64_t timeout_ms);

#endif
