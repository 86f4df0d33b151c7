/* SMTP replies (RFC 5321 4.2): one-line formatting for the server side, and for the client
 * side the accumulation of a multi-line reply, its enhanced status code (RFC 3463, RFC 2034)
 * and the lookup of EHLO keywords (RFC 5321 4.1.1.1).
 *
 * Pure. The caller frames lines and strips CRLF; what a code means for the dialogue is
 * smtpc.c's business. */
#include "smtp_reply.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "hf_err.h"

#define REPLY_NOFF (sizeof(((struct smtp_reply *)0)->line_off) / sizeof(size_t))

int smtp_reply_fmt(char *buf, size_t sz, int code, const char *enh, bool more, const char *fmt, ...)
{
    va_list ap;
    int n, t;
    size_t len;

    assert(code >= 200 && code <= 599);
    if (enh != NULL && enh[0] != '\0') {
        n = snprintf(buf, sz, "%03d%c%s", code, more ? '-' : ' ', enh);
    } else {
        n = snprintf(buf, sz, "%03d%c", code, more ? '-' : ' ');
    }
    if (n < 0 || (size_t)n >= sz) {
        return -ENOSPC;
    }
    len = (size_t)n;
    /* The separator between the enhanced code and the text; dropped again below when
     * the text is empty. */
    if (enh != NULL && enh[0] != '\0') {
        if (len + 1 >= sz) {
            return -ENOSPC;
        }
        buf[len++] = ' ';
        buf[len] = '\0';
    }
    va_start(ap, fmt);
    t = vsnprintf(buf + len, sz - len, fmt, ap);
    va_end(ap);
    if (t < 0 || (size_t)t >= sz - len) {
        return -ENOSPC;
    }
    /* Text may carry what a peer sent (a domain, an address). A CR or LF in it would
     * start a reply line of the peer's choosing, so control characters become '?'. */
    for (size_t i = len; i < len + (size_t)t; i++) {
        unsigned char c = (unsigned char)buf[i];
        if ((c < 32 && c != '\t') || c == 127) {
            buf[i] = '?';
        }
    }
    if (t == 0 && buf[len - 1] == ' ') {
        len--; /* "250 2.0.0", "250": Reply-code [ SP textstring ] */
    } else {
        len += (size_t)t;
    }
    if (len + 3 > sz) {
        return -ENOSPC;
    }
    buf[len++] = '\r';
    buf[len++] = '\n';
    buf[len] = '\0';
    return (int)len;
}

void smtp_reply_init(struct smtp_reply *r)
{
    memset(r, 0, sizeof(*r));
}

static bool reply__digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Enhanced status code at the start of s (RFC 3463 2): class "." 1*3digit "." 1*3digit,
 * followed by SP or the end. Returns its length or 0. */
static size_t reply__enh_len(const char *s, size_t len)
{
    size_t i = 0;

    if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') {
        return 0;
    }
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < len && reply__digit(s[i]) && i - start < 4) {
            i++;
        }
        if (i == start || i - start > 3) {
            return 0;
        }
        if (part == 0) {
            if (i >= len || s[i] != '.') {
                return 0;
            }
            i++;
        }
    }
    if (i < len && s[i] != ' ') {
        return 0;
    }
    return i;
}

int smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len)
{
    int code;
    const char *text;
    size_t tlen, used;

    /* Reply-line = *( Reply-code "-" [ textstring ] CRLF )
     *              Reply-code [ SP textstring ] CRLF        (RFC 5321 4.2) */
    if (len < 3 || !reply__digit(line[0]) || !reply__digit(line[1]) || !reply__digit(line[2])) {
        return HF_EPROTO;
    }
    if (len > 3 && line[3] != ' ' && line[3] != '-') {
        return HF_EPROTO;
    }
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (code < 200 || code > 599) {
        return HF_EPROTO;
    }
    if (r->done) {
        smtp_reply_init(r); /* the previous reply was handed over; this starts the next */
    }
    if (r->nlines > 0 && code != r->code) {
        return HF_EPROTO;
    }
    text = len > 4 ? line + 4 : "";
    tlen = len > 4 ? len - 4 : 0;
    if (r->nlines == 0) {
        size_t elen = reply__enh_len(text, tlen);
        /* RFC 3463 2: the class of the enhanced code is that of the reply code. */
        if (elen > 0 && elen < sizeof(r->enh) && text[0] - '0' == code / 100) {
            memcpy(r->enh, text, elen);
            r->enh[elen] = '\0';
        }
        r->code = code;
    }
    /* Join with "\n", truncating silently; an offset is kept only for a line whose start
     * fits, so a keyword is never matched against a cut-off line start. */
    used = strlen(r->text);
    if (r->nlines > 0 && used + 1 < sizeof(r->text)) {
        r->text[used++] = '\n';
    }
    if (r->nlines < REPLY_NOFF && used + 1 < sizeof(r->text)) {
        r->line_off[r->nlines] = used;
    } else if (r->nlines < REPLY_NOFF) {
        r->line_off[r->nlines] = sizeof(r->text) - 1; /* points at the final NUL: "" */
    }
    for (size_t i = 0; i < tlen && used + 1 < sizeof(r->text); i++) {
        unsigned char c = (unsigned char)text[i];
        /* Server text ends up in logs and bounces: no control characters. */
        r->text[used++] = (c < 32 && c != '\t') || c == 127 ? '?' : (char)c;
    }
    r->text[used] = '\0';
    r->nlines++;
    if (len == 3 || line[3] == ' ') {
        r->done = true;
        return 1;
    }
    return 0;
}

bool smtp_reply_has_ext(const struct smtp_reply *r, const char *keyword, const char **param)
{
    size_t klen = strlen(keyword);
    size_t n = r->nlines < REPLY_NOFF ? r->nlines : REPLY_NOFF;

    if (r->code != 250 || klen == 0) {
        return false;
    }
    /* Line 0 is the greeting ("250-relay.test Hello"), never a keyword. */
    for (size_t i = 1; i < n; i++) {
        const char *l = r->text + r->line_off[i];
        if (strncasecmp(l, keyword, klen) != 0 ||
            (l[klen] != '\0' && l[klen] != '\n' && l[klen] != ' ')) {
            continue;
        }
        if (param != NULL) {
            const char *p = l + klen;
            while (*p == ' ') {
                p++;
            }
            *param = *p == '\n' ? "" : p;
        }
        return true;
    }
    return false;
}
