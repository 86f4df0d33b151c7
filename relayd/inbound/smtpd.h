/* The inbound SMTP dialogue (RFC 5321, 1870, 2920, 3030, 3461, 3463, 6152, 6531, 1985) as a state
 * machine. Pure: it consumes bytes and events and emits reply text and actions into
 * struct smtpd_out; the glue (smtpd_io.c) moves bytes, stores messages and runs flushes.
 * It never knows whether the bytes came over TLS. */
#ifndef HF_SMTPD_H
#define HF_SMTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "smtp_cmd.h"
#include "smtp_data.h"

enum smtpd_state {
    SMTPD_ST_GREET = 0, /* connected, no HELO/EHLO yet */
    SMTPD_ST_READY,     /* after HELO/EHLO, no transaction */
    SMTPD_ST_MAIL,      /* MAIL accepted, no recipient yet */
    SMTPD_ST_RCPT,      /* at least one recipient accepted */
    SMTPD_ST_DATA,      /* receiving message content */
    SMTPD_ST_COMMIT,    /* message complete, waiting for the queue's commit */
    SMTPD_ST_WAIT,      /* waiting for an asynchronous answer (ETRN, AUTH check) */
    SMTPD_ST_CLOSED,    /* QUIT or fatal error; no more input is read */
    SMTPD_ST_TLS,       /* 220 to STARTTLS sent; waiting for the handshake */
    SMTPD_ST_AUTH,      /* 334 sent; the next line is a SASL response */
    SMTPD_ST_CHUNK,     /* receiving the octets of a BDAT chunk (RFC 3030) */
    SMTPD_ST_BDAT,      /* between the chunks of a BDAT transaction: BDAT, RSET, ... */
    SMTPD_ST_REVERSED,  /* ATRN answered 250 (RFC 2645): the connection now belongs to the
                           release, which is the SMTP client on it; no more input is read */
};

/* Limits and switches the session needs; borrowed from the daemon's configuration. */
struct smtpd_params {
    const char *hostname;
    uint64_t max_size;
    unsigned max_rcpts;
    unsigned max_bad;
    bool bare_normalise;
    bool etrn;
    bool tls_available;           /* STARTTLS can be offered (a certificate is loaded) */
    bool auth_available;          /* AUTH can be offered over TLS (a credentials file is loaded) */
    /* ODMR (RFC 2645): an ODMR listener's sessions take AUTH and ATRN and no mail; CRAM-MD5
     * is offered there (also without TLS) when secrets are loaded. On the SMTP port,
     * atrn_where names the ODMR listener for ATRN's 502 (NULL: ATRN is not offered). */
    bool odmr;
    bool cram_available;
    const char *atrn_where;
    bool submission;              /* authenticated clients listed below may relay anywhere */
    const char *submission_users; /* space/comma-separated users who may, "*" all; NULL or "":
                                     nobody */
    /* Memory for messages being received, shared by every session: a session adds what it
     * allocates to *mem_used and refuses (452 4.3.1) to go past mem_limit. NULL: no limit. */
    size_t *mem_used;
    size_t mem_limit;
    /* Accept only while the primary is down: true when a more-preferred MX of the
     * recipient's domain answers, so RCPT gets 451 4.7.1. NULL: never. */
    bool (*primary_up)(void *arg, const char *domain);
    void *primary_arg;
};

struct smtpd_rcpt {
    char *addr;   /* malloc'd mailbox as given (source route removed) */
    char *domain; /* malloc'd lower-case domain */
    char *orcpt;  /* malloc'd or NULL */
    unsigned notify;
};

/* Actions for the glue, as bits in smtpd_out.act. */
#define SMTPD_ACT_CLOSE  0x1u /* close after flushing the replies */
#define SMTPD_ACT_COMMIT 0x2u /* a message is complete: take it with smtpd_take_message() */
#define SMTPD_ACT_ETRN   0x4u /* run ETRN for etrn_arg, answer with smtpd_etrn_done() */
#define SMTPD_ACT_STARTTLS                                                                         \
    0x8u                     /* discard buffered input, start the TLS handshake, then call         \
                                smtpd_tls_ready() (RFC 3207 4.2, 5) */
#define SMTPD_ACT_AUTH 0x10u /* check auth_user/auth_pass, answer with smtpd_auth_done() */
#define SMTPD_ACT_ATRN 0x20u /* ATRN etrn_arg (domains) for user: answer with smtpd_atrn_done() */
#define SMTPD_ACT_REVERSE                                                                          \
    0x40u /* ATRN's 250 is in buf: send it, then hand the connection to the release, which     \
             waits for the client's 220 (RFC 2645 4.3) */

struct smtpd_out {
    char *buf; /* reply bytes to send; malloc'd, kept by the session */
    size_t len, cap;
    unsigned act;
    char etrn_arg[SMTP_CMD_LINE_MAX + 1]; /* ETRN's or ATRN's argument */
    char *auth_user; /* SMTPD_ACT_AUTH: decoded credentials, malloc'd; the glue takes them */
    char *auth_pass; /* the password, or with auth_cram the client's 32 hex digits */
    bool auth_cram;  /* CRAM-MD5: check auth_pass against HMAC-MD5(secret, cram_chal) */
};

/* The message handed to the queue. The body has `head` octets of free room in front so the
 * glue can prepend the Received: header without copying the message. */
#define SMTPD_BODY_HEADROOM 1024

struct smtpd_msg {
    char *sender; /* "" for <> */
    struct smtpd_rcpt *rcpts;
    size_t nrcpt;
    char *buf;   /* malloc'd; message bytes start at buf + head */
    size_t head; /* free octets in front of the message */
    size_t len;  /* message octets */
    bool eight_bit;
    bool smtputf8;
    int ret;
    char *envid; /* malloc'd or NULL */
    size_t mem;  /* octets counted in params.mem_used for buf: the taker subtracts them once
                    buf is freed */
};

struct smtpd {
    const struct smtpd_params *prm;
    const struct policy *policy;
    enum smtpd_state st;
    bool esmtp;
    char *helo; /* malloc'd HELO/EHLO name */
    char client_addr[64];
    uint64_t id;       /* connection id for log lines (c=N) */
    unsigned bad;      /* bad commands so far */
    unsigned rej_rcpt; /* recipients refused; the glue adds them to its counters */
    unsigned rej_data; /* messages refused after DATA */
    /* input line assembly (allocated only while a partial line is pending) */
    char *line;
    size_t line_len;
    bool line_overflow; /* discarding the rest of an over-long line */
    bool overflow_cr;   /* the last octet discarded was CR */
    /* transaction */
    struct smtpd_msg *msg;
    size_t msg_cap; /* allocated octets of msg->buf */
    uint64_t declared_size;
    /* TLS and AUTH */
    bool tls;          /* the session runs over TLS */
    char tls_info[96]; /* "TLSv1.3 TLS_AES_256_GCM_SHA384" for Received: */
    char *user;        /* authenticated user, malloc'd */
    int auth_mech;     /* SASL exchange in progress: 1 PLAIN, 2 LOGIN, 3 CRAM-MD5 */
    char nonce[40];    /* set by the glue after init: random text for the CRAM challenge */
    char cram_chal[400]; /* CRAM-MD5 challenge sent, "<nonce.id@hostname>" (RFC 2195) */
    char *auth_login;  /* LOGIN: the user name received, malloc'd */
    struct smtp_data dec;
    bool too_big;
    bool no_mem; /* the shared memory budget ran out: 452 4.3.1 at the end */
    /* BDAT (RFC 3030 2). The transaction's content comes in chunks framed by their octet
     * count; refusals are answered once the chunk's octets are consumed. */
    bool bdat;                  /* the transaction has had a BDAT: no DATA in it now */
    bool bdat_failed;           /* a chunk was refused: later chunks get chunk_reply again */
    uint64_t bdat_in;           /* octets received in the transaction's chunks */
    uint64_t chunk_left;        /* SMTPD_ST_CHUNK: octets of the chunk still to come */
    uint64_t chunk_size;        /* the current chunk's declared size */
    bool chunk_last;            /* the current chunk is BDAT ... LAST */
    bool chunk_skip;            /* discard the chunk, then send chunk_reply */
    bool chunk_bad;             /* chunk_reply answers a protocol error (counts in max_bad) */
    enum smtpd_state chunk_ret; /* state after a skipped chunk that fails no transaction */
    char *chunk_reply;          /* malloc'd reply line(s) with CRLF for a refused chunk */
    /* The refusal log line (smtpd_out.c): every 4xx/5xx reply logs one line naming the
     * command it answers, the client and the envelope so far, plus the fields of note. */
    const char *verb;     /* static: "RCPT", "END-OF-MESSAGE", "CONNECT", ... */
    const char *cur_path; /* MAIL/RCPT path while that command runs (borrowed), else NULL */
    char note[256];       /* extra key=value fields for the next refusal's line, or "" */
    struct smtpd_out out;
};

/* Initialises s for a new connection from client_addr (copied) and emits the 220 greeting.
 * prm and policy are borrowed for the session's life. */
void smtpd_init(struct smtpd *s, const struct smtpd_params *prm, const struct policy *policy,
                uint64_t id, const char *client_addr);
/* Frees everything s holds (the pending message included). */
void smtpd_close(struct smtpd *s);

/* Consumes input bytes. Returns how many were consumed: fewer than len when the session must
 * wait (SMTPD_ST_COMMIT / SMTPD_ST_WAIT / SMTPD_ST_CLOSED); the glue keeps the rest and
 * feeds it again after the answer arrives. Replies and actions accumulate in s->out. */
size_t smtpd_input(struct smtpd *s, const char *data, size_t len);

/* The message of the last SMTPD_ACT_COMMIT; the caller owns it (smtpd_msg_free). */
struct smtpd_msg *smtpd_take_message(struct smtpd *s);
void smtpd_msg_free(struct smtpd_msg *m);

/* The queue answered the commit: status 0 with the queue id text, or a negative code.
 * Emits 250 / 452 4.3.1 / 451 4.3.0 and returns to READY. */
void smtpd_committed(struct smtpd *s, int status, const char *queue_id);

/* The ETRN answer: the full reply line(s) without CRLF handling (code and text). */
void smtpd_etrn_done(struct smtpd *s, int code, const char *enh, const char *text);

/* The TLS handshake ended: status 0 restarts the session over TLS (the client must send EHLO
 * again; everything from before is forgotten), info names version and cipher. Otherwise the
 * session closes. */
void smtpd_tls_ready(struct smtpd *s, int status, const char *info);

/* The credentials check ended: user (borrowed) is authenticated when ok; otherwise 535 5.7.8.
 * temp_fail: the check could not be made (rate limit, error): 454 4.7.0. */
void smtpd_auth_done(struct smtpd *s, bool ok, bool temp_fail, const char *user);

/* The ATRN answer (RFC 2645 4.2): 250 reverses the connection (SMTPD_ACT_REVERSE, state
 * REVERSED), anything else returns to READY. */
void smtpd_atrn_done(struct smtpd *s, int code, const char *enh, const char *text);

/* Timeout: emits 421 4.4.2 and closes. */
void smtpd_timeout(struct smtpd *s);

/* Emits a reply ("421 4.7.0 ..." style pieces) and closes; used for connection limits and
 * shutdown. */
void smtpd_refuse(struct smtpd *s, int code, const char *enh, const char *text);

/* Adds key=value fields (printf format) to the log line of the next refusal (4xx/5xx reply)
 * of this session, e.g. "reason=max_connections limit=50"; the line is logged once, by the
 * reply itself, so the caller logs nothing of its own. */
void smtpd_note(struct smtpd *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the output buffer after the glue sent it (keeps capacity only when small). */
void smtpd_out_reset(struct smtpd *s);

const char *smtpd_state_name(enum smtpd_state st);

#endif
