/* Inbound SMTP dialogue, the bottom layer: the reply buffer (s->out), state changes and the
 * bad-command counter. Replies accumulate in s->out so pipelined commands (RFC 2920) are
 * answered in order and sent in one write by the glue. Every state change goes through
 * smtpd__enter(). */
#include "smtpd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp_reply.h"
#include "smtpd_int.h"

static const char *const smtpd_state_names[] = {"GREET", "READY",  "MAIL",  "RCPT",
                                                "DATA",  "COMMIT", "WAIT",  "CLOSED",
                                                "TLS",   "AUTH",   "CHUNK", "BDAT"};

const char *smtpd_state_name(enum smtpd_state st)
{
    return (unsigned)st < sizeof(smtpd_state_names) / sizeof(smtpd_state_names[0])
               ? smtpd_state_names[st]
               : "?";
}

void smtpd__enter(struct smtpd *s, enum smtpd_state next)
{
    if (s->st != next)
        log_debug("c=%llu state %s -> %s", (unsigned long long)s->id, smtpd_state_name(s->st),
                  smtpd_state_name(next));
    s->st = next;
}

void smtpd__out_append(struct smtpd *s, const char *p, size_t n)
{
    struct smtpd_out *o = &s->out;
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n)
            cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) { /* out of memory: drop the session rather than send a partial reply */
            o->act |= SMTPD_ACT_CLOSE;
            s->st = SMTPD_ST_CLOSED;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

void smtpd__reply(struct smtpd *s, int code, const char *enh, const char *fmt, ...)
{
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    char line[700];
    int n = smtp_reply_fmt(line, sizeof(line), code, enh, false, "%s", text);
    if (n > 0)
        smtpd__out_append(s, line, (size_t)n);
}

void smtpd_out_reset(struct smtpd *s)
{
    s->out.len = 0;
    s->out.act = 0; /* every action is taken once, by the glue, before this */
    if (s->out.cap > 4096) {
        free(s->out.buf);
        s->out.buf = NULL;
        s->out.cap = 0;
    }
}

void smtpd_refuse(struct smtpd *s, int code, const char *enh, const char *text)
{
    smtpd__reply(s, code, enh, "%s", text);
    s->out.act |= SMTPD_ACT_CLOSE;
    smtpd__enter(s, SMTPD_ST_CLOSED);
}

void smtpd_timeout(struct smtpd *s)
{
    smtpd_refuse(s, 421, "4.4.2", "Timeout exceeded, closing connection");
}

/* Counts a bad command; past the limit the session is dropped (421 4.7.0). */
void smtpd__bad(struct smtpd *s)
{
    if (++s->bad >= s->prm->max_bad && s->st != SMTPD_ST_CLOSED) {
        log_info("c=%llu too many errors client=[%s] count=%u", (unsigned long long)s->id,
                 s->client_addr, s->bad);
        smtpd_refuse(s, 421, "4.7.0", "Too many errors, closing connection");
    }
}
