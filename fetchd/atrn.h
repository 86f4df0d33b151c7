/* fetchd's side of a turned-around ATRN connection (RFC 2645 4.2): after the relay answered
 * 250 to ATRN, this session is the SMTP server of that connection (atrn_srv.h, pure) and
 * passes every MAIL, RCPT and message to the local MTA (lmta.h) as it comes, answering the
 * relay only with what the local MTA answered (handoff_map.h): 250 when it took it, the
 * same class when it refused, 4xx when it is down. One log line per message handed over:
 *     relay=NAME domain=D id=QUEUEID local=250 rcpts=2 size=1234 reply=250
 * (id: the relay's queue id from the first Received: header, else "msgN").
 *
 * The owner (etrn.c, which opened the connection and ran ATRN with smtpc) forwards the
 * connection's reads here and calls atrn_sess_finish() once the connection is gone. */
#ifndef HF_FETCHD_ATRN_H
#define HF_FETCHD_ATRN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dns.h"
#include "release_policy.h"

struct conn;
struct atrn_sess;

struct atrn_sess_params {
    uv_loop_t *loop;
    struct dns *dns;       /* borrowed; outlives the session */
    struct conn *conn;     /* the relay's connection (borrowed until atrn_sess_finish) */
    const char *label;     /* "NAME[addr]:port" for log lines (copied) */
    const char *relay;     /* the relay's name, for the per-message line (copied) */
    const char *local_mta; /* "host:port" */
    bool lmtp;
    const char *helo;    /* our name: greeting, EHLO to the local MTA (copied) */
    uint64_t timeout_ms; /* each answer of the local MTA; the relay's idle time */
    uint64_t size_max;   /* SIZE offered to the relay */
};

/* SIZE offered after the turn: messages are held in memory until the local MTA answered. */
#define ATRN_SIZE_MAX (50u << 20)

/* What a reply to ATRN other than 250 (whose verdict is the session's) means (RFC 2645
 * 4.1): 453 no mail waiting DONE; 450 a domain refused FATAL; 451 and other 4xx RETRY; 5xx
 * FATAL; anything else RETRY. Pure. */
enum release_verdict atrn_reply_verdict(int code);

/* Starts the server role: sends 220 on p->conn. Returns 0 and *out, -EINVAL, -ENOMEM. */
int atrn_sess_start(const struct atrn_sess_params *p, struct atrn_sess **out);

/* Bytes from the relay (borrowed during the call). */
void atrn_sess_on_read(struct atrn_sess *s, const char *data, size_t len);

/* The idle timer of the relay's connection ran out: true when the session is waiting for
 * the local MTA (the owner keeps the connection), false when the relay went quiet. */
bool atrn_sess_busy(const struct atrn_sess *s);

/* The relay's connection is gone (or going). Ends the local transaction (cut before its
 * end of data, so the local MTA keeps nothing the relay was not told about), logs a summary
 * and frees s. Returns DONE when the relay ended with QUIT and nothing was answered 4xx,
 * RETRY otherwise (the relay keeps what it was not given a 250 for). */
enum release_verdict atrn_sess_finish(struct atrn_sess *s);

#endif
