/* fetchd's server role after ATRN: the dialogue as a pure state machine (see atrn_srv.h).
 * Lines are framed here (CRLF only), checked with smtp_cmd_parse() and answered by state;
 * MAIL and RCPT that pass the checks wait for the glue (the local MTA's answer to the same
 * command); the message (DATA, or BDAT chunks) is decoded with smtp_data and kept in memory
 * (at most size_max octets) until the glue says what the local MTA did with it.
 *
 * BDAT (RFC 3030 2) follows relayd's inbound rules (relayd/inbound/smtpd_bdat.c): a chunk is
 * its count of octets and nothing else; a refusal is formatted when the command arrives and
 * sent when the chunk's last octet has been consumed, so the stream stays in step and the
 * pipelined replies in order; a chunk that fails the transaction (size, content) drops the
 * message, and the chunks already in the pipeline after it get the same reply again until
 * BDAT LAST, RSET, MAIL or EHLO. The relay sends MAIL, RCPT and every chunk without waiting,
 * so the whole message may arrive while MAIL's event is open: atrn_srv_paused() tells the
 * glue to stop reading rather than keep it all twice. */
#include "atrn_srv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_err.h"
#include "log.h"
#include "smtp_reply.h"

#define ATRN_SRV_CHUNK 4096 /* DATA input decoded per step */

const char *atrn_srv_event_name(enum atrn_srv_event ev)
{
    static const char *const names[] = {"none", "mail", "rcpt", "msg"};
    return (unsigned)ev < sizeof(names) / sizeof(names[0]) ? names[ev] : "?";
}

const char *atrn_srv_state_name(enum atrn_srv_state st)
{
    static const char *const names[] = {"greet", "ready", "mail", "rcpt",
                                        "data",  "chunk", "wait", "done"};
    return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

/* Every state change goes through here (logged at debug level, STYLE.md). */
static void atrn_srv_enter(struct atrn_srv *s, enum atrn_srv_state next)
{
    if (s->state != next)
        log_debug("atrn_srv %s -> %s", atrn_srv_state_name(s->state), atrn_srv_state_name(next));
    s->state = next;
}

static int atrn_srv_reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    char *p = realloc(*buf, n);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

/* Queues one reply line; more=true for a continuation line. */
static int atrn_srv_reply(struct atrn_srv *s, int code, const char *enh, bool more, const char *fmt,
                          ...) __attribute__((format(printf, 5, 6)));
static int atrn_srv_reply(struct atrn_srv *s, int code, const char *enh, bool more, const char *fmt,
                          ...)
{
    char text[SMTP_CMD_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    char line[SMTP_CMD_LINE_MAX + 32];
    int n = smtp_reply_fmt(line, sizeof(line), code, enh, more, "%s", text);
    if (n < 0)
        n = smtp_reply_fmt(line, sizeof(line), code, enh, more, "%s", "(reply text too long)");
    if (n < 0 || atrn_srv_reserve(&s->out, &s->out_cap, s->out_len + (size_t)n) < 0)
        return -ENOMEM;
    memcpy(s->out + s->out_len, line, (size_t)n);
    s->out_len += (size_t)n;
    if (code >= 400 && !s->answering) {
        s->nrefusals++;
        snprintf(s->refusal, sizeof(s->refusal), "%d%s%s %s", code, enh ? " " : "", enh ? enh : "",
                 text);
    }
    s->actions |= ATRN_SRV_ACT_WRITE;
    return 0;
}

static void atrn_srv_txn_reset(struct atrn_srv *s)
{
    /* MAIL was answered 2xx: the local MTA has a transaction open that must go too. */
    if (s->state == ATRN_SRV_ST_MAIL || s->state == ATRN_SRV_ST_RCPT ||
        s->state == ATRN_SRV_ST_DATA || s->state == ATRN_SRV_ST_CHUNK)
        s->actions |= ATRN_SRV_ACT_RESET;
    s->msg.sender[0] = '\0';
    s->msg.nrcpt = 0;
    s->msg.len = 0;
    s->msg.eight_bit = false;
    s->msg.body_8bit = false;
    s->too_big = false;
    s->msg.chunked = false;
    s->bdat_failed = false;
    if (s->state != ATRN_SRV_ST_GREET && s->state != ATRN_SRV_ST_DONE)
        atrn_srv_enter(s, ATRN_SRV_ST_READY);
}

int atrn_srv_init(struct atrn_srv *s, const struct atrn_srv_opts *o)
{
    memset(s, 0, sizeof(*s));
    if (!o->name || !o->name[0] || strlen(o->name) > ATRN_SRV_NAME_MAX || !o->size_max ||
        strpbrk(o->name, " \r\n"))
        return -EINVAL;
    snprintf(s->name, sizeof(s->name), "%s", o->name);
    s->size_max = o->size_max;
    s->msg.rcpts = calloc(ATRN_SRV_RCPT_MAX, sizeof(*s->msg.rcpts));
    if (!s->msg.rcpts)
        return -ENOMEM;
    s->state = ATRN_SRV_ST_GREET;
    /* RFC 2645 4.2: after the turn the new server greets, as on a fresh connection. */
    if (atrn_srv_reply(s, 220, NULL, false, "%s ESMTP fetchd (ATRN)", s->name) < 0) {
        atrn_srv_close(s);
        return -ENOMEM;
    }
    return 0;
}

void atrn_srv_close(struct atrn_srv *s)
{
    free(s->out);
    free(s->msg.rcpts);
    free(s->msg.body);
    free(s->hold);
    memset(s, 0, sizeof(*s));
    atrn_srv_enter(s, ATRN_SRV_ST_DONE);
}

/* Ends the session from our side: 421 and CLOSE. */
static int atrn_srv_abort(struct atrn_srv *s, const char *why)
{
    int rc = atrn_srv_reply(s, 421, "4.3.0", false, "%s %s, closing", s->name, why);
    atrn_srv_enter(s, ATRN_SRV_ST_DONE);
    s->actions |= ATRN_SRV_ACT_CLOSE;
    return rc;
}

/* ---- commands ---------------------------------------------------------------------------- */

/* Hands an event to the glue: nothing more is read until atrn_srv_answer(). */
static int atrn_srv_wait(struct atrn_srv *s, enum atrn_srv_event ev)
{
    s->wait_from = s->state;
    atrn_srv_enter(s, ATRN_SRV_ST_WAIT);
    s->event = ev;
    s->actions |= ATRN_SRV_ACT_EVENT;
    return 0;
}

static int atrn_srv_ehlo(struct atrn_srv *s, bool ehlo)
{
    atrn_srv_txn_reset(s);
    atrn_srv_enter(s, ATRN_SRV_ST_READY);
    s->esmtp = ehlo;
    if (!ehlo)
        return atrn_srv_reply(s, 250, NULL, false, "%s", s->name);
    int rc = atrn_srv_reply(s, 250, NULL, true, "%s", s->name);
    if (rc == 0)
        rc = atrn_srv_reply(s, 250, NULL, true, "PIPELINING");
    if (rc == 0)
        rc = atrn_srv_reply(s, 250, NULL, true, "8BITMIME");
    if (rc == 0)
        rc = atrn_srv_reply(s, 250, NULL, true, "CHUNKING");
    if (rc == 0)
        rc = atrn_srv_reply(s, 250, NULL, true, "SIZE %llu", (unsigned long long)s->size_max);
    if (rc == 0)
        rc = atrn_srv_reply(s, 250, NULL, false, "ENHANCEDSTATUSCODES");
    return rc;
}

static int atrn_srv_mail(struct atrn_srv *s, const struct smtp_cmd *c)
{
    if (s->state == ATRN_SRV_ST_GREET)
        return atrn_srv_reply(s, 503, "5.5.1", false, "EHLO or HELO first");
    if (s->state != ATRN_SRV_ST_READY)
        return atrn_srv_reply(s, 503, "5.5.1", false, "nested MAIL command");
    if (c->smtputf8)
        return atrn_srv_reply(s, 555, "5.5.4", false, "SMTPUTF8 not offered");
    if (c->body == SMTP_BODY_BINARYMIME)
        return atrn_srv_reply(s, 555, "5.5.4", false, "BODY=BINARYMIME not offered");
    if (c->has_size && c->size > s->size_max)
        return atrn_srv_reply(s, 552, "5.3.4", false, "message size exceeds fixed maximum of %llu",
                              (unsigned long long)s->size_max);
    s->bdat_failed = false; /* a new transaction: the failed one's chunks are over */
    snprintf(s->msg.sender, sizeof(s->msg.sender), "%s", c->path_null ? "" : c->path);
    s->msg.body_8bit = c->body == SMTP_BODY_8BITMIME;
    return atrn_srv_wait(s, ATRN_SRV_EV_MAIL);
}

static int atrn_srv_rcpt(struct atrn_srv *s, const struct smtp_cmd *c)
{
    if (s->state != ATRN_SRV_ST_MAIL && s->state != ATRN_SRV_ST_RCPT)
        return atrn_srv_reply(s, 503, "5.5.1", false, "need MAIL before RCPT");
    if (s->msg.chunked)
        return atrn_srv_reply(s, 503, "5.5.1", false, "RCPT after BDAT"); /* RFC 3030 2 */
    if (c->notify || c->orcpt[0])
        return atrn_srv_reply(s, 555, "5.5.4", false, "DSN not offered");
    if (s->msg.nrcpt >= ATRN_SRV_RCPT_MAX)
        return atrn_srv_reply(s, 452, "4.5.3", false, "too many recipients");
    /* Counted when the local MTA took it: its answer is the relay's answer. */
    snprintf(s->msg.rcpts[s->msg.nrcpt], SMTP_PATH_MAX + 1, "%s", c->path);
    return atrn_srv_wait(s, ATRN_SRV_EV_RCPT);
}

static int atrn_srv_data(struct atrn_srv *s)
{
    if (s->state == ATRN_SRV_ST_MAIL)
        return atrn_srv_reply(s, 554, "5.5.1", false, "no valid recipients");
    if (s->state != ATRN_SRV_ST_RCPT)
        return atrn_srv_reply(s, 503, "5.5.1", false, "need RCPT before DATA");
    if (s->msg.chunked) /* RFC 3030 2: no DATA in a transaction that has had BDAT */
        return atrn_srv_reply(s, 503, "5.5.1", false, "DATA after BDAT");
    smtp_data_init(&s->dec, SMTP_TEXT_LINE_MAX, SMTP_DATA_BARE_REJECT);
    s->msg.len = 0;
    s->too_big = false;
    atrn_srv_enter(s, ATRN_SRV_ST_DATA);
    return atrn_srv_reply(s, 354, NULL, false, "end data with <CR><LF>.<CR><LF>");
}

/* ---- message content --------------------------------------------------------------------- */

/* Keeps decoded octets unless the message is already over size_max (then only that is noted). */
static int atrn_srv_keep(struct atrn_srv *s, const char *out, size_t olen)
{
    if (!s->too_big && s->msg.len + olen > s->size_max)
        s->too_big = true;
    if (s->too_big || !olen)
        return 0;
    if (atrn_srv_reserve(&s->msg.body, &s->body_cap, s->msg.len + olen) < 0)
        return -ENOMEM;
    memcpy(s->msg.body + s->msg.len, out, olen);
    s->msg.len += olen;
    return 0;
}

/* Feeds up to ATRN_SRV_CHUNK octets to the decoder (DATA or BDAT) and keeps its output.
 * Returns the octets consumed, or -ENOMEM. */
static long atrn_srv_decode(struct atrn_srv *s, const char *in, size_t len)
{
    char out[SMTP_DATA_OUT_MAX(ATRN_SRV_CHUNK)];
    size_t n = len < ATRN_SRV_CHUNK ? len : ATRN_SRV_CHUNK;
    size_t olen = 0;
    size_t used = smtp_data_feed(&s->dec, in, n, out, &olen);
    return atrn_srv_keep(s, out, olen) < 0 ? -ENOMEM : (long)used;
}

/* ---- BDAT ------------------------------------------------------------------------------ */

/* The reply that will answer the current chunk once its octets are consumed; they are
 * discarded. */
static void atrn_srv_chunk_refuse(struct atrn_srv *s, int code, const char *enh, const char *text)
{
    s->chunk_code = code;
    snprintf(s->chunk_enh, sizeof(s->chunk_enh), "%s", enh);
    snprintf(s->chunk_text, sizeof(s->chunk_text), "%s", text);
    s->chunk_skip = true;
}

/* The transaction fails with the reply just set: the message goes (RESET for the local
 * MTA), and the reply is kept for the chunks that follow in the pipeline. */
static void atrn_srv_chunk_fail(struct atrn_srv *s)
{
    atrn_srv_txn_reset(s); /* from CHUNK: READY, and RESET */
    s->bdat_failed = true;
}

/* The content refusal of a message (with its code and enhanced code), or NULL when it may be
 * handed over. */
static const char *atrn_srv_content_verdict(const struct atrn_srv *s, int *code, const char **enh)
{
    *code = s->too_big ? 552 : 554;
    *enh = s->too_big ? "5.3.4" : "5.6.0";
    if (s->too_big)
        return "message too big";
    if (s->dec.err == HF_EBARELF)
        return "bare CR or LF in message (only CRLF ends a line)";
    if (s->dec.err == HF_ELONGLINE)
        return "text line over 1000 octets (RFC 5321 4.5.3.1.6)";
    return NULL;
}

/* The chunk's last octet has been consumed (or it had none): answer it. */
static int atrn_srv_chunk_end(struct atrn_srv *s)
{
    if (s->chunk_skip) {
        int rc = atrn_srv_reply(s, s->chunk_code, s->chunk_enh, false, "%s", s->chunk_text);
        if (!s->bdat_failed) {
            atrn_srv_enter(s, s->chunk_ret); /* the command was refused, not the transaction */
            return rc;
        }
        if (s->chunk_last)
            s->bdat_failed = false; /* BDAT LAST ends the failed transaction */
        atrn_srv_enter(s, ATRN_SRV_ST_READY);
        return rc;
    }
    if (s->chunk_last) {
        char o[1];
        size_t n = smtp_data_end(&s->dec, o); /* a CR ending the content is bare */
        if (atrn_srv_keep(s, o, n) < 0)
            return -ENOMEM;
    }
    int code;
    const char *enh;
    const char *why = atrn_srv_content_verdict(s, &code, &enh);
    if (why) {
        s->nmsgs_refused++;
        int rc = atrn_srv_reply(s, code, enh, false, "%s", why);
        if (s->chunk_last) {
            atrn_srv_txn_reset(s); /* from CHUNK: READY, and RESET */
        } else {
            atrn_srv_chunk_refuse(s, code, enh, why);
            atrn_srv_chunk_fail(s);
        }
        return rc;
    }
    if (s->chunk_last) {
        s->msg.eight_bit = s->dec.eight_bit;
        s->msg.seq++;
        return atrn_srv_wait(s, ATRN_SRV_EV_MSG);
    }
    atrn_srv_enter(s, ATRN_SRV_ST_RCPT);
    return atrn_srv_reply(s, 250, "2.0.0", false, "%llu octets received",
                          (unsigned long long)s->chunk_size);
}

static int atrn_srv_bdat(struct atrn_srv *s, const struct smtp_cmd *c)
{
    s->chunk_size = s->chunk_left = c->size;
    s->chunk_last = c->bdat_last;
    s->chunk_skip = false;
    s->chunk_ret = s->state;
    if (s->state == ATRN_SRV_ST_GREET) {
        atrn_srv_chunk_refuse(s, 503, "5.5.1", "EHLO or HELO first");
    } else if (!s->esmtp) {
        /* CHUNKING is offered in the EHLO reply only (RFC 3030 2). */
        atrn_srv_chunk_refuse(s, 503, "5.5.1", "BDAT needs EHLO (CHUNKING)");
    } else if (s->bdat_failed) {
        /* RFC 3030 2: chunks already in the pipeline after a failed one are discarded,
         * each answered with the transaction's failure again. */
        s->chunk_skip = true;
    } else if (s->state == ATRN_SRV_ST_READY) {
        atrn_srv_chunk_refuse(s, 503, "5.5.1", "need MAIL and RCPT before BDAT");
    } else if (s->state == ATRN_SRV_ST_MAIL) {
        atrn_srv_chunk_refuse(s, 554, "5.5.1", "no valid recipients");
    } else if (c->size > s->size_max - s->msg.len) {
        /* RFC 1870, RFC 3030 2: known from the count, before any octet is kept. */
        s->nmsgs_refused++;
        char text[96];
        snprintf(text, sizeof(text), "message size exceeds fixed maximum of %llu",
                 (unsigned long long)s->size_max);
        atrn_srv_chunk_refuse(s, 552, "5.3.4", text);
        atrn_srv_chunk_fail(s);
    } else if (!s->msg.chunked) {
        s->msg.chunked = true;
        smtp_data_init_raw(&s->dec, SMTP_TEXT_LINE_MAX, SMTP_DATA_BARE_REJECT);
        s->msg.len = 0;
        s->too_big = false;
    }
    atrn_srv_enter(s, ATRN_SRV_ST_CHUNK);
    return s->chunk_left == 0 ? atrn_srv_chunk_end(s) : 0;
}

/* Consumes a chunk's octets; returns how many, or -ENOMEM. */
static long atrn_srv_chunk(struct atrn_srv *s, const char *in, size_t len)
{
    size_t take = (uint64_t)len < s->chunk_left ? len : (size_t)s->chunk_left;
    if (take > ATRN_SRV_CHUNK)
        take = ATRN_SRV_CHUNK;
    if (!s->chunk_skip && atrn_srv_decode(s, in, take) < 0) /* raw: consumes all of it */
        return -ENOMEM;
    s->chunk_left -= take;
    if (s->chunk_left == 0 && atrn_srv_chunk_end(s) < 0)
        return -ENOMEM;
    return (long)take;
}

static int atrn_srv_parse_error(struct atrn_srv *s, int err, enum smtp_verb verb)
{
    switch (err) {
    case HF_EUNKNOWN:
        return atrn_srv_reply(s, 500, "5.5.1", false, "command unrecognized");
    case HF_EPARAM:
        return atrn_srv_reply(s, 555, "5.5.4", false, "parameter not recognized");
    case HF_EADDR:
        return atrn_srv_reply(s, 501, verb == SMTP_V_RCPT ? "5.1.3" : "5.1.7", false,
                              "bad address syntax");
    case HF_ELONGLINE:
        return atrn_srv_reply(s, 500, "5.5.2", false, "line too long");
    case HF_EBARELF:
        return atrn_srv_reply(s, 500, "5.5.2", false, "bare CR or LF in command");
    default:
        return atrn_srv_reply(s, 501, "5.5.4", false, "syntax error");
    }
}

static int atrn_srv_command(struct atrn_srv *s, const char *line, size_t len)
{
    struct smtp_cmd *c = &s->cmd;
    int rc = smtp_cmd_parse(line, len, c);
    if (rc < 0)
        return atrn_srv_parse_error(s, rc, c->verb);
    switch (c->verb) {
    case SMTP_V_EHLO:
        return atrn_srv_ehlo(s, true);
    case SMTP_V_HELO:
        return atrn_srv_ehlo(s, false);
    case SMTP_V_MAIL:
        return atrn_srv_mail(s, c);
    case SMTP_V_RCPT:
        return atrn_srv_rcpt(s, c);
    case SMTP_V_DATA:
        return atrn_srv_data(s);
    case SMTP_V_BDAT:
        return atrn_srv_bdat(s, c);
    case SMTP_V_RSET:
        atrn_srv_txn_reset(s);
        return atrn_srv_reply(s, 250, "2.0.0", false, "reset");
    case SMTP_V_NOOP:
        return atrn_srv_reply(s, 250, "2.0.0", false, "ok");
    case SMTP_V_QUIT:
        rc = atrn_srv_reply(s, 221, "2.0.0", false, "%s closing", s->name);
        atrn_srv_txn_reset(s);
        s->quit = true;
        atrn_srv_enter(s, ATRN_SRV_ST_DONE);
        s->actions |= ATRN_SRV_ACT_CLOSE;
        return rc;
    default:
        /* VRFY, EXPN, HELP, ETRN, ATRN, TURN, STARTTLS, AUTH, SEND...: not here. */
        return atrn_srv_reply(s, 502, "5.5.1", false, "%s not implemented",
                              smtp_cmd_verb_name(c->verb));
    }
}

/* ---- input ------------------------------------------------------------------------------- */

/* The end of data was seen: refuse a bad message at once, hand a good one over. */
static int atrn_srv_end_of_data(struct atrn_srv *s)
{
    s->msg.eight_bit = s->dec.eight_bit;
    int code;
    const char *enh;
    const char *why = atrn_srv_content_verdict(s, &code, &enh);
    if (why) {
        int rc = atrn_srv_reply(s, code, enh, false, "%s", why);
        s->nmsgs_refused++;
        atrn_srv_txn_reset(s);
        return rc;
    }
    s->msg.seq++;
    return atrn_srv_wait(s, ATRN_SRV_EV_MSG);
}

/* Consumes message octets; returns how many, or -ENOMEM. */
static long atrn_srv_body(struct atrn_srv *s, const char *in, size_t len)
{
    long used = atrn_srv_decode(s, in, len);
    if (used < 0 || (s->dec.done && atrn_srv_end_of_data(s) < 0))
        return -ENOMEM;
    return used;
}

/* One command line's octets; the line ends at LF. Returns octets consumed or -ENOMEM. */
static long atrn_srv_line(struct atrn_srv *s, const char *in, size_t len)
{
    const char *lf = memchr(in, '\n', len);
    size_t take = lf ? (size_t)(lf - in) + 1 : len;
    size_t body = lf ? take - 1 : take; /* octets before the LF */
    if (!s->line_long) {
        if (s->line_len + body > sizeof(s->line) - 1) {
            s->line_long = true;
        } else {
            memcpy(s->line + s->line_len, in, body);
            s->line_len += body;
        }
    }
    if (!lf)
        return (long)take;
    int rc;
    if (s->line_long) {
        rc = atrn_srv_reply(s, 500, "5.5.2", false, "line too long");
    } else if (s->line_len == 0 || s->line[s->line_len - 1] != '\r') {
        rc = atrn_srv_reply(s, 500, "5.5.2", false, "bare LF: lines end with CRLF");
    } else {
        rc = atrn_srv_command(s, s->line, s->line_len - 1);
    }
    s->line_len = 0;
    s->line_long = false;
    return rc < 0 ? rc : (long)take;
}

static int atrn_srv_run(struct atrn_srv *s, const char *in, size_t len)
{
    size_t off = 0;
    while (off < len) {
        if (s->state == ATRN_SRV_ST_DONE)
            return 0;
        if (s->state == ATRN_SRV_ST_WAIT) {
            size_t rest = len - off;
            if (s->hold_len + rest > ATRN_SRV_HOLD_HARD) {
                atrn_srv_abort(s, "too much input while delivering");
                return -ENOBUFS;
            }
            char *h = realloc(s->hold, s->hold_len + rest);
            if (!h) {
                atrn_srv_abort(s, "out of memory");
                return -ENOMEM;
            }
            memcpy(h + s->hold_len, in + off, rest);
            s->hold = h;
            s->hold_len += rest;
            return 0;
        }
        long n = s->state == ATRN_SRV_ST_DATA    ? atrn_srv_body(s, in + off, len - off)
                 : s->state == ATRN_SRV_ST_CHUNK ? atrn_srv_chunk(s, in + off, len - off)
                                                 : atrn_srv_line(s, in + off, len - off);
        if (n < 0) {
            atrn_srv_abort(s, "out of memory");
            return (int)n;
        }
        off += (size_t)n;
    }
    return 0;
}

int atrn_srv_feed(struct atrn_srv *s, const char *in, size_t len)
{
    return atrn_srv_run(s, in, len);
}

int atrn_srv_answer(struct atrn_srv *s, int code, const char *enh, const char *text)
{
    if (s->state != ATRN_SRV_ST_WAIT || s->event == ATRN_SRV_EV_NONE)
        return -EBUSY;
    enum atrn_srv_event ev = s->event;
    if (code < 200 || code > 599 || code / 100 == 3) {
        code = 451;
        enh = "4.3.0";
    }
    /* RFC 3463 2: the enhanced code's class is the reply's. */
    if (enh && (enh[0] - '0' != code / 100 || enh[1] != '.'))
        enh = NULL;
    int cls = code / 100;
    if (cls == 4)
        s->ntemp++;
    s->event = ATRN_SRV_EV_NONE;
    atrn_srv_enter(s, s->wait_from);
    s->answering = true;
    int rc = atrn_srv_reply(s, code, enh && enh[0] ? enh : NULL, false, "%s", text ? text : "");
    s->answering = false;
    switch (ev) {
    case ATRN_SRV_EV_MAIL:
        if (cls == 2)
            atrn_srv_enter(s, ATRN_SRV_ST_MAIL);
        else
            s->msg.sender[0] = '\0';
        break;
    case ATRN_SRV_EV_RCPT:
        if (cls == 2) {
            s->msg.nrcpt++;
            atrn_srv_enter(s, ATRN_SRV_ST_RCPT);
        }
        break;
    case ATRN_SRV_EV_MSG:
        if (cls == 2)
            s->nmsgs_taken++;
        else
            s->nmsgs_refused++;
        /* The local MTA ended its transaction with its answer: no RESET needed. */
        atrn_srv_enter(s, ATRN_SRV_ST_READY);
        atrn_srv_txn_reset(s);
        break;
    case ATRN_SRV_EV_NONE:
        break;
    }
    if (rc < 0)
        return rc;
    /* Go on with what arrived meanwhile; a second WAIT keeps the rest again. */
    char *held = s->hold;
    size_t n = s->hold_len;
    s->hold = NULL;
    s->hold_len = 0;
    rc = held ? atrn_srv_run(s, held, n) : 0;
    free(held);
    return rc;
}

bool atrn_srv_paused(const struct atrn_srv *s)
{
    return s->state == ATRN_SRV_ST_WAIT && s->hold_len >= ATRN_SRV_HOLD_MAX;
}

void atrn_srv_on_closed(struct atrn_srv *s)
{
    if (s->state != ATRN_SRV_ST_WAIT)
        atrn_srv_enter(s, ATRN_SRV_ST_DONE);
}

unsigned atrn_srv_take_actions(struct atrn_srv *s)
{
    unsigned a = s->actions;
    s->actions = 0;
    return a;
}

char *atrn_srv_out_take(struct atrn_srv *s, size_t *len)
{
    if (!s->out_len) {
        *len = 0;
        return NULL;
    }
    char *p = s->out;
    *len = s->out_len;
    s->out = NULL;
    s->out_len = s->out_cap = 0;
    return p;
}
