/* Inbound SMTP dialogue, the bottom layer: the reply buffer (s->out), state changes and the
 * bad-command counter. Replies accumulate in s->out so pipelined commands (RFC 2920) are
 * answered in order and sent in one write by the glue. Every state change goes through
 * smtpd__enter().
 *
 * Every reply passes smtpd__out_append(), so that is where refusals are logged: each 4xx or
 * 5xx reply gives exactly one line, in Postfix's grammar so that its tools count it
 * (pflogsumm's "rejected"):
 *   NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.7.1 <x@y.test>: Relaying denied;
 *   from=<a@b.test> to=<x@y.test> proto=ESMTP helo=<client> c=7 reason=relay_denied
 * Callers that know more than the reply says add fields with smtpd_note(); they log no line
 * of their own. */
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
                                                "TLS",   "AUTH",   "CHUNK", "BDAT",
                                                "REVERSED"};

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

void smtpd_note(struct smtpd *s, const char *fmt, ...)
{
    size_t l = strlen(s->note);
    if (l + 2 >= sizeof(s->note))
        return;
    if (l)
        s->note[l++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->note + l, sizeof(s->note) - l, fmt, ap);
    va_end(ap);
}

/* Copies text for a log line: control octets (none should be there) become \xHH. */
static void smtpd_log_text(char *dst, size_t cap, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
}

/* The one log line of a refusal: reply (one line, CRLF at the end) p[0..n). */
static void smtpd_log_refusal(struct smtpd *s, const char *p, size_t n)
{
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    char reply[600], from[400], to[400], helo[300], path[300];
    smtpd_log_text(reply, sizeof(reply), p, n);
    from[0] = to[0] = helo[0] = '\0';
    const struct smtpd_msg *m = s->msg;
    if (m && m->sender)
        snprintf(from, sizeof(from), " from=<%s>", log_safe(m->sender, path, sizeof(path)));
    if (s->cur_path && strcmp(s->verb, "RCPT") == 0)
        snprintf(to, sizeof(to), " to=<%s>", log_safe(s->cur_path, path, sizeof(path)));
    else if (s->cur_path && strcmp(s->verb, "MAIL") == 0 && !from[0])
        snprintf(from, sizeof(from), " from=<%s>", log_safe(s->cur_path, path, sizeof(path)));
    else if (m && m->nrcpt)
        snprintf(to, sizeof(to), " to=<%s>", log_safe(m->rcpts[0].addr, path, sizeof(path)));
    if (s->helo)
        snprintf(helo, sizeof(helo), " helo=<%s>", log_safe(s->helo, path, sizeof(path)));
    log_svc(LOG_LVL_INFO, "smtpd", "NOQUEUE: reject: %s from unknown[%s]: %s;%s%s proto=%s%s c=%llu nrcpt=%zu%s%s%s%s",
             s->verb ? s->verb : "CONNECT", s->client_addr, reply, from, to,
             s->esmtp ? "ESMTP" : "SMTP", helo, (unsigned long long)s->id, m ? m->nrcpt : 0,
             s->user ? " user=" : "", s->user ? log_safe(s->user, path, sizeof(path)) : "",
             s->note[0] ? " " : "", s->note);
    s->note[0] = '\0';
}

void smtpd__out_append(struct smtpd *s, const char *p, size_t n)
{
    if (n >= 4 && (p[0] == '4' || p[0] == '5'))
        smtpd_log_refusal(s, p, n);
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
    smtpd_note(s, "reason=timeout state=%s", smtpd_state_name(s->st));
    smtpd_refuse(s, 421, "4.4.2", "Timeout exceeded, closing connection");
}

/* Counts a bad command; past the limit the session is dropped (421 4.7.0). */
void smtpd__bad(struct smtpd *s)
{
    if (++s->bad >= s->prm->max_bad && s->st != SMTPD_ST_CLOSED) {
        smtpd_note(s, "reason=too_many_errors count=%u", s->bad);
        smtpd_refuse(s, 421, "4.7.0", "Too many errors, closing connection");
    }
}
