/* The client side of SMTP as a state machine that does no I/O (RFC 5321, PIPELINING RFC
 * 2920, SIZE RFC 1870, 8BITMIME RFC 6152, DSN RFC 3461, SMTPUTF8 RFC 6531, ETRN RFC 1985).
 * Pure: the glue (relayd's flush, fetchd's etrn) owns the connection, feeds every reply
 * line in, writes the bytes the machine leaves in its output buffer, and acts on the
 * action bits it raises. It never loses a recipient: whatever is not final when the
 * dialogue breaks is deferred.
 *
 * The glue's loop, for every event:
 *
 *     smtpc_on_line(c, line, len);             (or on_tls_ready, on_closed, msg_begin...)
 *     unsigned act = smtpc_take_actions(c);
 *     if (act & SMTPC_ACT_WRITE)    write smtpc_out_take(c, &len);
 *     if (act & SMTPC_ACT_STARTTLS) start the handshake; then smtpc_on_tls_ready(c);
 *     if (act & SMTPC_ACT_BODY)     stream the body: smtpc_body(c, chunk, n, last)...
 *     if (act & SMTPC_ACT_MSG_DONE) read c->msg_res and c->rcpt_res[]: the results
 *     if (act & SMTPC_ACT_NEXT)     smtpc_msg_begin(c, next) or smtpc_quit(c)
 *     if (act & SMTPC_ACT_CLOSE)    close the connection; the session is over
 *
 * Modes:
 *  - SMTPC_MODE_DELIVER: greeting, EHLO (HELO when EHLO gets 5xx), optionally STARTTLS and
 *    EHLO again, then messages one after another (MAIL, RCPT..., DATA, body, final reply;
 *    pipelined when the server offers PIPELINING), RSET between them when a transaction
 *    was left open, QUIT at the end.
 *  - SMTPC_MODE_ETRN: greeting, EHLO, optionally STARTTLS and EHLO again, optionally AUTH,
 *    one "ETRN <arg>" per argument (its reply collected in etrn_res[]), QUIT.
 *
 * AUTH (RFC 4954, either mode): with opts.auth_user set, once the EHLO after the handshake
 * has been answered, "AUTH PLAIN <initial response>" (RFC 4616, built here: base64 of
 * NUL user NUL password) goes out; 235 goes on, 4xx ends the session temporarily (DEFER),
 * 5xx permanently (FAIL, the server's reply kept in c->session). Credentials are never sent
 * in clear: without an active TLS layer (STARTTLS not offered, refused, or opts.tls NEVER)
 * the session fails (FAIL, code 0, "refusing to send credentials without TLS"); so it does
 * when the current EHLO does not advertise AUTH with PLAIN (what was advertised before TLS
 * does not count, RFC 4954 4). Nothing but QUIT is sent after such a failure.
 * CRAM-MD5 (RFC 2195, the mechanism RFC 2645 names for ODMR) with opts.cram set: used when
 * PLAIN cannot be (no TLS, or the EHLO lists CRAM-MD5 but not PLAIN): "AUTH CRAM-MD5", the
 * 334 challenge decoded, the response (no password on the wire) sent base64. Without TLS
 * it is the only mechanism ever tried.
 *  - SMTPC_MODE_ATRN (RFC 2645, fetchd's "pull"): greeting, EHLO, optionally STARTTLS and
 *    EHLO again, optionally AUTH, then one "ATRN d1,d2" with every argument of opts.etrn
 *    (its reply kept in every etrn_res[]). On 250 the state becomes DONE and SMTPC_ACT_TURN
 *    is raised (no CLOSE): the glue keeps the connection and hands it to the server-side
 *    machine; any other reply is followed by QUIT as in ETRN mode. */
#ifndef HF_SMTPC_H
#define HF_SMTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_reply.h"

#define SMTPC_TEXT_MAX 512 /* reply text kept per result: lines joined with "\n" */

enum smtpc_mode {
    SMTPC_MODE_DELIVER = 0,
    SMTPC_MODE_ETRN,
    SMTPC_MODE_ATRN,
};

enum smtpc_tls {
    SMTPC_TLS_NEVER = 0,     /* never send STARTTLS */
    SMTPC_TLS_OPPORTUNISTIC, /* STARTTLS when offered; go on in clear when it is not */
    SMTPC_TLS_REQUIRED,      /* no TLS, no mail: the session fails (temporary) */
};

/* The machine's states. Entering one sends that state's command; its reply picks the
 * next. SMTPC_ST_TXN covers a whole transaction's replies (MAIL, RCPT, DATA, RSET), which
 * are matched in order against the commands sent (RFC 2920 3.1). */
enum smtpc_state {
    SMTPC_ST_GREET = 0, /* waiting for the 220 greeting */
    SMTPC_ST_EHLO,      /* EHLO sent */
    SMTPC_ST_HELO,      /* HELO sent after EHLO got 5xx */
    SMTPC_ST_STARTTLS,  /* STARTTLS sent */
    SMTPC_ST_TLS,       /* 220 to STARTTLS received; waiting for smtpc_on_tls_ready() */
    SMTPC_ST_AUTH,      /* AUTH PLAIN sent (or "*" cancelling a 334 challenge) */
    SMTPC_ST_IDLE,      /* ready: smtpc_msg_begin() or smtpc_quit() */
    SMTPC_ST_TXN,       /* a transaction's commands sent, replies pending */
    SMTPC_ST_BODY,      /* 354 received; the glue streams the body with smtpc_body() */
    SMTPC_ST_DOT,       /* end of data sent; waiting for the final reply */
    SMTPC_ST_ETRN,      /* ETRN sent */
    SMTPC_ST_QUIT,      /* QUIT sent */
    SMTPC_ST_DONE,      /* over: the connection is (to be) closed */
    SMTPC_ST_COUNT_,
};

/* Action bits, accumulated until smtpc_take_actions(). */
enum smtpc_action {
    SMTPC_ACT_WRITE = 1u << 0,    /* output is waiting: smtpc_out_take() */
    SMTPC_ACT_STARTTLS = 1u << 1, /* start TLS on the connection; discard any bytes that
                                     arrived after the 220 (RFC 3207 5), then
                                     smtpc_on_tls_ready() */
    SMTPC_ACT_BODY = 1u << 2,     /* send the current message's body: smtpc_body() */
    SMTPC_ACT_MSG_DONE = 1u << 3, /* the current message's results are final */
    SMTPC_ACT_NEXT = 1u << 4,     /* idle: smtpc_msg_begin() the next message, or smtpc_quit() */
    SMTPC_ACT_CLOSE = 1u << 5,    /* close the connection: the session is over */
    SMTPC_ACT_TURN = 1u << 6,     /* ATRN got 250: the connection is now the peer's client
                                     side; keep it open and act as its server */
};

/* Supported service extensions seen in the EHLO reply (smtpc.ext). */
enum smtpc_ext {
    SMTPC_EXT_PIPELINING = 1u << 0,
    SMTPC_EXT_8BITMIME = 1u << 1,
    SMTPC_EXT_SMTPUTF8 = 1u << 2,
    SMTPC_EXT_DSN = 1u << 3,
    SMTPC_EXT_SIZE = 1u << 4,
    SMTPC_EXT_STARTTLS = 1u << 5,
    SMTPC_EXT_ETRN = 1u << 6,
    SMTPC_EXT_ATRN = 1u << 7,
    SMTPC_EXT_ENHANCED = 1u << 8,    /* ENHANCEDSTATUSCODES */
    SMTPC_EXT_AUTH = 1u << 9,        /* AUTH with any mechanism */
    SMTPC_EXT_AUTH_PLAIN = 1u << 10, /* AUTH listing PLAIN */
    SMTPC_EXT_CHUNKING = 1u << 11,   /* BDAT (RFC 3030) */
    SMTPC_EXT_AUTH_CRAM = 1u << 12,  /* AUTH listing CRAM-MD5 */
};

enum smtpc_outcome {
    SMTPC_PENDING = 0, /* not final yet */
    SMTPC_OK,          /* accepted (2xx) */
    SMTPC_DEFER,       /* temporary: keep and retry (4xx, lost connection, local reason) */
    SMTPC_FAIL,        /* permanent (5xx): bounce */
};

/* The outcome of one recipient, one message, one ETRN argument, or the session. */
struct smtpc_result {
    enum smtpc_outcome outcome;
    int code;                  /* the server's reply code; 0 when decided here (no reply) */
    char enh[16];              /* enhanced status code "x.y.z", or "" */
    char text[SMTPC_TEXT_MAX]; /* the reply's text (lines joined with "\n", truncated), or
                                  why it was decided here */
};

/* One recipient of a message, as the glue hands it over (borrowed until MSG_DONE). */
struct smtpc_rcpt {
    const char *addr;   /* forward-path without <> */
    const char *notify; /* DSN NOTIFY value ("SUCCESS,FAILURE", "NEVER") or NULL */
    const char *orcpt;  /* DSN ORCPT value, already "rfc822;" + xtext, or NULL */
};

/* One message (borrowed from smtpc_msg_begin() until its MSG_DONE). SIZE= goes out when
 * the server offers SIZE; RET, ENVID, NOTIFY and ORCPT only when it offers DSN: when it
 * does not (c->ext lacks SMTPC_EXT_DSN), the caller owes a "relayed" DSN to recipients
 * that asked for NOTIFY=SUCCESS (RFC 3461 4.1). */
struct smtpc_msg {
    const char *sender; /* reverse-path without <>; "" for the null path */
    uint64_t size;      /* octets of the body as sent; 0: unknown, no SIZE= */
    bool body_8bit;     /* the body has octets >= 0x80 (BODY=8BITMIME) */
    bool smtputf8;      /* the envelope or headers need SMTPUTF8 */
    const char *ret;    /* DSN RET: "FULL", "HDRS" or NULL */
    const char *envid;  /* DSN ENVID, xtext, or NULL */
    const struct smtpc_rcpt *rcpts;
    size_t nrcpt; /* >= 1 */
};

/* Writes the CRAM-MD5 response "user SP hex-digest" for challenge chal into out (outsz
 * octets, NUL-terminated). Returns 0 or a negative code. cram.h's cram_md5_response. */
typedef int (*smtpc_cram_fn)(const char *user, const void *secret, size_t slen, const void *chal,
                             size_t clen, char *out, size_t outsz);

struct smtpc_opts {
    enum smtpc_mode mode;
    const char *helo;   /* our host name for EHLO/HELO (borrowed for c's life) */
    const char *log_id; /* first field of log lines, e.g. "c=17" (borrowed), or NULL */
    enum smtpc_tls tls;
    const char *const *etrn; /* ETRN mode: the arguments ("branch.test", "@branch.test",
                                "#queue"), borrowed for c's life */
    size_t netrn;            /* ETRN mode: >= 1 */
    const char *auth_user;   /* AUTH PLAIN authcid (1-255 octets), or NULL: no AUTH; with
                                auth_pass borrowed for c's life */
    const char *auth_pass;   /* its password (1-255 octets); NULL when auth_user is */
    smtpc_cram_fn cram;      /* CRAM-MD5 (RFC 2195) response function (cram_md5_response,
                                which this pure module cannot call itself), or NULL: PLAIN
                                only. See AUTH above. */
};

/* Dot-stuffing encoder state (RFC 5321 4.5.2) for a body split into chunks anywhere. */
struct smtpc_stuff {
    bool bol; /* at the beginning of a line */
    bool cr;  /* the last octet was CR */
};

/* Where each pending reply goes (private). */
struct smtpc_pend {
    uint8_t kind;
    uint32_t idx;
};

struct smtpc {
    /* read-only for the glue */
    enum smtpc_state state;
    unsigned ext;                  /* SMTPC_EXT_* offered by the server */
    uint64_t size_max;             /* the server's SIZE limit; 0: none announced */
    bool tls_active;               /* smtpc_on_tls_ready() was called */
    struct smtpc_result session;   /* why the session ended early (outcome PENDING while
                                      all is well): a bad greeting, EHLO/HELO refused,
                                      421, connection lost, protocol error */
    struct smtpc_result msg_res;   /* the current message: the reply that decided it */
    struct smtpc_result *rcpt_res; /* the current message's recipients, rcpt_res[i] for
                                      msg->rcpts[i]; valid until the next msg_begin */
    struct smtpc_result *etrn_res; /* ETRN mode: one per argument */
    size_t nmsgs;                  /* messages finished on this connection */

    /* private */
    struct smtpc_opts o;
    unsigned actions;
    char *out;
    size_t out_len, out_cap;
    struct smtp_reply reply;
    bool reply_active;
    struct smtpc_pend *pend;
    size_t pend_head, pend_len, pend_cap;
    const struct smtpc_msg *msg;
    size_t rcpt_cap;
    bool *rcpt_ok; /* RCPT got 2xx: the final reply decides */
    size_t naccepted;
    bool mail_failed;
    bool need_rset;   /* MAIL accepted and the transaction not ended by the final reply */
    bool bdat;        /* the current message goes by BDAT (CHUNKING with PIPELINING) */
    bool bdat_failed; /* a BDAT chunk of the current message was refused */
    bool quit_queued;
    size_t next_etrn;
    struct smtpc_stuff stuff;
};

/* Worst-case output of smtpc_stuff() for len input octets. */
#define SMTPC_STUFF_MAX(len) (3 * (size_t)(len) + 5)

void smtpc_stuff_init(struct smtpc_stuff *st);

/* Encodes in[0..len) for DATA into out (which must hold SMTPC_STUFF_MAX(len) octets):
 * a "." at the start of a line is doubled; a bare CR or bare LF (which a stored body
 * should not hold) is sent as CRLF, since RFC 5321 2.3.8 allows no other line end. With
 * last=true the data is terminated: CRLF if the body did not end with one, then ".CRLF".
 * State carries across calls, so a chunk may end anywhere (even between CR and LF).
 * Returns the octets written. */
size_t smtpc_stuff(struct smtpc_stuff *st, const char *in, size_t len, bool last, char *out);

/* Places a machine in c for one connection. opts is copied, its strings borrowed.
 * Returns 0, -EINVAL (no helo; ETRN mode without arguments; auth_user without auth_pass or
 * the reverse; either empty or over 255 octets), -ENOMEM. The machine starts in SMTPC_ST_GREET,
 * waiting for the greeting. */
int smtpc_init(struct smtpc *c, const struct smtpc_opts *opts);

/* Releases what c holds (the output buffer too, wiped first: it may hold the AUTH line). */
void smtpc_close(struct smtpc *c);

/* One reply line, CRLF removed. Returns 0, or HF_EPROTO for a malformed reply or a reply
 * nothing was waiting for: the session then ends (CLOSE), every recipient not yet final
 * is deferred, and c->session says why. HF_EPROTO too for a line in SMTPC_ST_TLS (a reply
 * injected before the handshake) and after SMTPC_ST_DONE. */
int smtpc_on_line(struct smtpc *c, const char *line, size_t len);

/* The TLS handshake the STARTTLS action asked for has completed: forgets what the server
 * offered in clear and sends EHLO again (RFC 3207 4.2). Ignored in other states. */
void smtpc_on_tls_ready(struct smtpc *c);

/* The connection is gone (reset, timeout, TLS failure: err, a negative code). Every
 * recipient not yet final is deferred, MSG_DONE is raised if a message was open, and the
 * state becomes DONE. Harmless when already DONE. */
void smtpc_on_closed(struct smtpc *c, int err);

/* Starts message m (borrowed until its MSG_DONE) in SMTPC_ST_IDLE. When the server cannot
 * take it, nothing is sent and MSG_DONE|NEXT come at once: 8-bit body without 8BITMIME,
 * SMTPUTF8 needed but not offered (both deferred, RFC 6152 3, RFC 6531 3.4), size over the
 * server's SIZE limit (failed, RFC 1870 6.1). Returns 0, -EINVAL (no recipients), -EBUSY
 * (not idle), -ENOMEM (the session then ends as on a lost connection). */
int smtpc_msg_begin(struct smtpc *c, const struct smtpc_msg *m);

/* Appends body octets in SMTPC_ST_BODY, dot-stuffed; last=true ends the data (".CRLF")
 * and waits for the final reply. When the server offers CHUNKING and PIPELINING the message
 * goes by BDAT instead (RFC 3030): SMTPC_ACT_BODY comes right after smtpc_msg_begin(), before
 * the replies to MAIL and RCPT, each piece goes out as it is as "BDAT n" and last=true sends
 * "BDAT 0 LAST". Returns 0, -EBUSY (not in BODY), -ENOMEM. */
int smtpc_body(struct smtpc *c, const char *data, size_t len, bool last);

/* Ends the session politely in SMTPC_ST_IDLE: QUIT, then CLOSE on its reply. In another
 * state (nothing is lost: only idle sessions are quit) returns -EBUSY. */
int smtpc_quit(struct smtpc *c);

/* Returns the action bits raised since the last call and clears them. */
unsigned smtpc_take_actions(struct smtpc *c);

/* Returns the output waiting to be written (returns owned: free() it; the glue keeps it
 * alive until its write completes) and its length in *len, or NULL when there is none. */
char *smtpc_out_take(struct smtpc *c, size_t *len);

/* Static names for logs. */
const char *smtpc_state_name(enum smtpc_state st);
const char *smtpc_outcome_name(enum smtpc_outcome o);

#endif
