/* fetchd's server role after ATRN (RFC 2645 4.2): once the relay has answered "250" to
 * ATRN the connection is turned around and fetchd is the SMTP server of that connection.
 * This is that server's dialogue as a state machine without I/O: bytes in, replies out.
 * MAIL, every RCPT and the complete message are events the glue answers with what the
 * local MTA said to the same command (mapped by handoff_map.h), so the relay learns per
 * recipient what happened: nothing is acknowledged before the local MTA has answered.
 *
 * Offered (EHLO): PIPELINING (RFC 2920), 8BITMIME (RFC 6152), CHUNKING (RFC 3030), SIZE
 * (RFC 1870), ENHANCEDSTATUSCODES (RFC 2034). Verbs: EHLO, HELO, MAIL, RCPT, DATA, BDAT,
 * RSET, NOOP, QUIT; every other known verb gets 502, an unknown one 500. Commands are parsed
 * with lib's strict grammar (smtp_cmd.h), the message with lib's decoder (smtp_data.h): only
 * CRLF ends a line, only CRLF.CRLF ends the data, a bare CR or LF or a text line over 1000
 * octets refuses the message (554 5.6.0), a command line over its limit gets 500 5.5.2.
 * BDAT chunks are exactly their count of octets, never read as commands, never unstuffed;
 * they are judged by the same content rules, and a refused chunk is answered once its octets
 * are consumed (RFC 3030 2), as are the chunks already pipelined after it. State sequence:
 * GREET -> (EHLO/HELO) READY -> (MAIL, answered 2xx) MAIL -> (RCPT, answered 2xx) RCPT ->
 * DATA, or CHUNK per BDAT chunk (back to RCPT between chunks) -> READY ... QUIT -> DONE, with
 * WAIT while an event is with the glue.
 *
 * The glue's loop:
 *     atrn_srv_feed(s, bytes, n);            (any split of the input)
 *     unsigned act = atrn_srv_take_actions(s);
 *     if (act & ATRN_SRV_ACT_WRITE) write atrn_srv_out_take(s, &len)
 *     if (act & ATRN_SRV_ACT_RESET) drop the local transaction (before any event below)
 *     if (act & ATRN_SRV_ACT_EVENT) s->event says MAIL (s->msg.sender), RCPT
 *                                   (s->msg.rcpts[s->msg.nrcpt]) or MSG (s->msg.body);
 *                                   later atrn_srv_answer(s, code, enh, text)
 *     if (act & ATRN_SRV_ACT_CLOSE) close after the writes (QUIT answered, or an error)
 * At most one event is open at a time. Input that arrives meanwhile (pipelining, RFC 2920;
 * with BDAT the whole message follows MAIL and RCPT without waiting) is kept and read after
 * atrn_srv_answer(). Once ATRN_SRV_HOLD_MAX octets are kept atrn_srv_paused() is true: the
 * glue stops reading until it is false again, so what is kept stays bounded. */
#ifndef HF_FETCHD_ATRN_SRV_H
#define HF_FETCHD_ATRN_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_cmd.h"
#include "smtp_data.h"

#define ATRN_SRV_RCPT_MAX  100   /* RFC 5321 4.5.3.1.8: at least 100 recipients */
#define ATRN_SRV_HOLD_MAX  65536 /* input kept during WAIT before the glue pauses reading */
#define ATRN_SRV_HOLD_HARD (4 * ATRN_SRV_HOLD_MAX) /* beyond: the glue did not pause; 421 */
#define ATRN_SRV_NAME_MAX  255

enum atrn_srv_state {
    ATRN_SRV_ST_GREET = 0, /* 220 sent; waiting for EHLO/HELO */
    ATRN_SRV_ST_READY,     /* greeted, no transaction */
    ATRN_SRV_ST_MAIL,      /* MAIL accepted, no recipient yet */
    ATRN_SRV_ST_RCPT,      /* at least one recipient */
    ATRN_SRV_ST_DATA,      /* 354 sent: reading the message */
    ATRN_SRV_ST_CHUNK,     /* BDAT: reading the octets of a chunk */
    ATRN_SRV_ST_WAIT,      /* an event is with the glue; its answer is awaited */
    ATRN_SRV_ST_DONE,      /* QUIT answered or the session ended */
};

enum atrn_srv_action {
    ATRN_SRV_ACT_WRITE = 1u << 0, /* replies waiting: atrn_srv_out_take() */
    ATRN_SRV_ACT_EVENT = 1u << 1, /* s->event is open: atrn_srv_answer() when known */
    ATRN_SRV_ACT_CLOSE = 1u << 2, /* close once the replies are written */
    ATRN_SRV_ACT_RESET = 1u << 3, /* the transaction the local MTA knows of is abandoned
                                     (RSET, EHLO, a refused message): drop it there */
};

enum atrn_srv_event {
    ATRN_SRV_EV_NONE = 0,
    ATRN_SRV_EV_MAIL, /* s->msg.sender (and body_8bit) */
    ATRN_SRV_EV_RCPT, /* s->msg.rcpts[s->msg.nrcpt]: counted only when answered 2xx */
    ATRN_SRV_EV_MSG,  /* s->msg.body[0..len) for the s->msg.nrcpt recipients taken */
};

/* The transaction (the strings valid until the event's answer, or the next RESET). */
struct atrn_srv_msg {
    char sender[SMTP_PATH_MAX + 1]; /* "" for the null reverse-path */
    char (*rcpts)[SMTP_PATH_MAX + 1];
    size_t nrcpt;
    char *body; /* unstuffed (DATA) or as the chunks carried it (BDAT); every line ends in
                   CRLF, except perhaps the last after BDAT */
    size_t len;
    bool eight_bit; /* an octet >= 0x80 in the body */
    bool body_8bit; /* MAIL said BODY=8BITMIME */
    uint64_t seq;   /* 1, 2, ... per session */
    bool chunked;   /* the message comes by BDAT (from its first chunk on), not DATA */
};

struct atrn_srv_opts {
    const char *name;  /* our name in the 220 greeting and EHLO (borrowed; 1-255 octets) */
    uint64_t size_max; /* SIZE offered and enforced, octets; > 0 */
};

struct atrn_srv {
    /* read-only for the glue */
    enum atrn_srv_state state;
    enum atrn_srv_event event; /* the open event (state WAIT), or NONE */
    struct atrn_srv_msg msg;
    size_t nmsgs_taken;   /* end of data answered 2xx */
    size_t nmsgs_refused; /* end of data answered 4xx/5xx (ours or the glue's) */
    size_t ntemp;         /* answers of the glue that were temporary (4xx), any event */
    bool quit;            /* the session ended with QUIT (not cut, not aborted) */
    size_t nrefusals;     /* 4xx/5xx replies of our own (not the glue's answers), for the
                             glue's log; the latest is in refusal ("554 5.6.0 text") */
    char refusal[160];
    /* private */
    char name[ATRN_SRV_NAME_MAX + 1];
    uint64_t size_max;
    unsigned actions;
    char *out;
    size_t out_len, out_cap;
    char line[SMTP_CMD_LINE_LONGEST + 2];
    size_t line_len;
    bool line_long; /* the current line went over the limit: discard to its LF */
    struct smtp_cmd cmd;
    struct smtp_data dec;
    bool too_big;
    size_t body_cap;
    char *hold; /* input kept during WAIT */
    size_t hold_len;
    enum atrn_srv_state wait_from; /* the state an open event returns to */
    bool esmtp;                    /* greeted by EHLO: BDAT is allowed */
    bool bdat_failed;              /* a chunk failed it: pipelined chunks get the same reply */
    uint64_t chunk_left;           /* octets of the current chunk still to come */
    uint64_t chunk_size;
    bool chunk_last;
    bool chunk_skip;               /* discard the chunk's octets; answer with chunk_code */
    enum atrn_srv_state chunk_ret; /* the state a refused BDAT command returns to */
    int chunk_code;                /* the reply to a skipped chunk */
    char chunk_enh[8];
    char chunk_text[128];
    bool answering; /* the reply being queued is the glue's answer */
};

/* Places a server in s and queues the 220 greeting. Returns 0, -EINVAL (bad name or
 * size_max 0), -ENOMEM. */
int atrn_srv_init(struct atrn_srv *s, const struct atrn_srv_opts *o);

/* Releases what s holds. */
void atrn_srv_close(struct atrn_srv *s);

/* Reads in[0..len) (borrowed, any split). Returns 0, or -ENOBUFS when input came during
 * WAIT beyond ATRN_SRV_HOLD_HARD (the glue did not pause; the session then ends: 421,
 * CLOSE), -ENOMEM (the same).
 * Input after DONE is ignored. */
int atrn_srv_feed(struct atrn_srv *s, const char *in, size_t len);

/* The glue's answer to the open event: the reply the relay gets (code 200..599; a 3xx, or
 * a code out of range, becomes 451 4.3.0; enh "x.y.z" or NULL; text borrowed, control
 * characters made harmless). MAIL and RCPT go on only when the class is 2; a message
 * answered is over either way. Then reads the input kept meanwhile. Returns 0, -EBUSY (no
 * event open), -ENOBUFS or -ENOMEM as atrn_srv_feed. */
int atrn_srv_answer(struct atrn_srv *s, int code, const char *enh, const char *text);

/* True while so much input is kept during WAIT that the glue should stop reading; false
 * again after the answer that lets it be read. */
bool atrn_srv_paused(const struct atrn_srv *s);

/* The connection is gone: DONE. An open event stays open (the glue abandons it). */
void atrn_srv_on_closed(struct atrn_srv *s);

const char *atrn_srv_event_name(enum atrn_srv_event ev);

unsigned atrn_srv_take_actions(struct atrn_srv *s);

/* The replies waiting (returns owned: free()), their length in *len, or NULL. */
char *atrn_srv_out_take(struct atrn_srv *s, size_t *len);

const char *atrn_srv_state_name(enum atrn_srv_state st);

#endif
