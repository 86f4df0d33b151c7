/* One transaction with the local MTA (local_mta, SMTP or LMTP, RFC 2033), step by step, for
 * fetchd's ATRN server role: the relay's MAIL, each RCPT and the complete message are sent
 * to the local MTA one at a time as they arrive, and each answer goes back to the owner,
 * which turns it into the relay's reply (handoff_map.h). So the relay learns per recipient
 * what the local MTA did.
 *
 * A transaction is one connection: resolve, connect, greeting, EHLO (LHLO for LMTP), MAIL;
 * then RCPT...; then DATA, the dot-stuffed body, and the final answer (LMTP: one per
 * recipient taken, RFC 2033 4.2); QUIT. When anything breaks (refused connection, bad
 * greeting, timeout, a malformed reply) the step in progress is answered with code 0 and
 * the reason, and every later step is refused at once (-ENOTCONN): the owner answers the
 * relay 4xx itself. Closing the connection before the end of data leaves nothing at the
 * local MTA (RFC 5321 4.1.1.4: no "." no message).
 *
 * Glue over dns.h, conn.h, smtp_reply.h and smtpc_stuff(). */
#ifndef HF_FETCHD_LMTA_H
#define HF_FETCHD_LMTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dns.h"
#include "handoff_map.h"

struct lmta;

enum lmta_step { LMTA_MAIL = 0, LMTA_RCPT, LMTA_DATA };

/* The answer to one step: n answers (borrowed, valid during the call): 1 for MAIL, RCPT
 * and SMTP's end of data, one per recipient taken for LMTP's. code 0: no answer (text says
 * why; the local MTA is down or the connection broke). */
typedef void (*lmta_cb)(enum lmta_step step, const struct handoff_rcpt *r, size_t n, void *arg);

struct lmta_params {
    uv_loop_t *loop;
    struct dns *dns;       /* borrowed; outlives the transaction */
    const char *local_mta; /* "host:port" (parsed at once) */
    bool lmtp;             /* LHLO and one answer per recipient after the data */
    const char *helo;      /* our name (copied) */
    const char *log_id;    /* first field of log lines (copied) */
    uint64_t timeout_ms;   /* connect timeout and the wait for each answer */
};

/* Opens the transaction with MAIL FROM:<sender> (both borrowed during the call; BODY=8BITMIME
 * when body_8bit and the local MTA offers it; an 8-bit message it cannot take is answered
 * 554 5.6.3 here). Returns 0 and *out: cb(LMTA_MAIL) runs once from the loop; or -EINVAL
 * (local_mta does not parse, sender too long), -ENOMEM: then nothing runs. */
int lmta_start(const struct lmta_params *p, const char *sender, bool body_8bit, lmta_cb cb,
               void *arg, struct lmta **out);

/* RCPT TO:<addr> (borrowed during the call) after MAIL was answered 2xx: cb(LMTA_RCPT).
 * Returns 0, -EBUSY (a step is in progress, or MAIL was not accepted), -ENOTCONN (the
 * connection is gone: no callback), -EINVAL (too long). */
int lmta_rcpt(struct lmta *l, const char *addr);

/* DATA, body[0..len) (borrowed during the call: copied, dot-stuffed) and the end of data,
 * after ntaken >= 1 recipients were answered 2xx: cb(LMTA_DATA) with 1 answer (SMTP) or
 * ntaken (LMTP). Returns 0, -EBUSY, -ENOTCONN, -ENOMEM as lmta_rcpt. */
int lmta_data(struct lmta *l, const char *body, size_t len, size_t ntaken);

/* Ends the transaction: QUIT when the local MTA is idle, else the connection is cut (the
 * local MTA takes nothing it has not answered). cb never runs again; l frees itself once
 * its handles are closed. */
void lmta_end(struct lmta *l);

#endif
