/* Delivery status notifications as multipart/report messages (see dsn.h). The text is
 * assembled in a growing buffer; every value that goes into a header field is checked for
 * line breaks (which would let one field forge others) and diagnostic texts are flattened
 * to one line, since the reply that produced them came from a remote server. */
#include "dsn.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DSN_DIAG_MAX 900 /* RFC 5322 2.1.1: lines stay below 998 octets */

struct dsn_buf {
    char *p;
    size_t len, cap;
    int err;
};

static void dsn_put(struct dsn_buf *b, const char *s, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->err = -ENOMEM;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void dsn_puts(struct dsn_buf *b, const char *s)
{
    dsn_put(b, s, strlen(s));
}

static void dsn_putf(struct dsn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dsn_putf(struct dsn_buf *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = -EINVAL;
        return;
    }
    dsn_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static bool dsn_empty(const char *s)
{
    return !s || !*s;
}

/* A value that goes into a header field: no CR, LF or NUL-truncation surprises. */
static bool dsn_header_ok(const char *s)
{
    return !s || strpbrk(s, "\r\n") == NULL;
}

static bool dsn_status_ok(const char *s)
{
    /* RFC 3463 2: class "." subject "." detail; class 2, 4 or 5; 1-3 digits each. */
    if (!s || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    const char *p = s + 2;
    for (int part = 0; part < 2; part++) {
        int n = 0;
        while (isdigit((unsigned char)*p) && n < 4) {
            p++;
            n++;
        }
        if (n == 0 || n > 3)
            return false;
        if (part == 0 && *p++ != '.')
            return false;
    }
    return *p == '\0';
}

/* One line of at most DSN_DIAG_MAX octets: control characters become spaces. */
static void dsn_flatten(const char *in, char *out, size_t outsz)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 1 < outsz; p++)
        out[o++] = (*p < 0x20 || *p == 0x7f) ? ' ' : (char)*p;
    out[o] = '\0';
}

const char *dsn_date(int64_t t, char out[40])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, 40, "Thu, 01 Jan 1970 00:00:00 +0000");
        return out;
    }
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return out;
}

const char *dsn_status_of(int code, const char *enh, const char *dflt, char out[16])
{
    int cls = code / 100;
    if (enh && *enh && dsn_status_ok(enh) && (cls == 0 || enh[0] - '0' == cls)) {
        snprintf(out, 16, "%s", enh);
    } else if (cls == 2 || cls == 4 || cls == 5) {
        snprintf(out, 16, "%d.0.0", cls);
    } else {
        snprintf(out, 16, "%s", dflt ? dflt : "5.0.0");
    }
    return out;
}

static const char *dsn_action_name(enum dsn_action a)
{
    switch (a) {
    case DSN_ACT_FAILED:
        return "failed";
    case DSN_ACT_DELAYED:
        return "delayed";
    case DSN_ACT_DELIVERED:
        return "delivered";
    case DSN_ACT_RELAYED:
        return "relayed";
    case DSN_ACT_EXPANDED:
        return "expanded";
    }
    return "failed";
}

/* RFC 3464 2.3.1: Original-Recipient is "addr-type ; generic-address", the address
 * decoded from the xtext of ORCPT (RFC 3461 4.2). Writes it to out; false when orcpt is
 * not of that form. */
static bool dsn_orcpt(const char *orcpt, char *out, size_t outsz)
{
    const char *semi = strchr(orcpt, ';');
    if (!semi || semi == orcpt)
        return false;
    char dec[SMTP_XTEXT_MAX + 1];
    if (smtp_xtext_decode(semi + 1, strlen(semi + 1), dec, sizeof(dec)) < 0)
        return false;
    if (!dsn_header_ok(dec))
        return false;
    snprintf(out, outsz, "%.*s;%s", (int)(semi - orcpt), orcpt, dec);
    return true;
}

/* The header section of a stored message: up to and including the CRLF of its last
 * header line (the empty line that ends it is not part of it). */
static size_t dsn_header_len(const char *m, size_t len)
{
    if (len >= 2 && m[0] == '\r' && m[1] == '\n')
        return 0;
    for (size_t i = 0; i + 3 < len; i++)
        if (m[i] == '\r' && m[i + 1] == '\n' && m[i + 2] == '\r' && m[i + 3] == '\n')
            return i + 2;
    return len;
}

static bool dsn_contains(const char *hay, size_t hlen, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0 || n > hlen)
        return false;
    for (size_t i = 0; i + n <= hlen; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
            return true;
    return false;
}

static const char *dsn_subject(const struct dsn_report *r)
{
    switch (r->rcpts[0].action) {
    case DSN_ACT_DELAYED:
        return "Delayed Mail (still being retried)";
    case DSN_ACT_DELIVERED:
    case DSN_ACT_RELAYED:
    case DSN_ACT_EXPANDED:
        return "Successful Mail Delivery Report";
    default:
        return "Undelivered Mail Returned to Sender";
    }
}

static void dsn_human(struct dsn_buf *b, const struct dsn_report *r, bool headers_only,
                      bool too_big)
{
    char d[40];
    dsn_putf(b, "This is the mail system at host %s.\r\n\r\n", r->reporting_mta);
    switch (r->rcpts[0].action) {
    case DSN_ACT_DELAYED:
        dsn_putf(b,
                 "Your message%s%s, accepted %s, could not be delivered yet to the\r\n"
                 "recipients below. Nothing needs to be done: delivery is retried until\r\n"
                 "the time given for each recipient. If it does not succeed by then, you\r\n"
                 "will get another report.\r\n",
                 r->queue_id ? " " : "", r->queue_id ? r->queue_id : "", dsn_date(r->arrival, d));
        break;
    case DSN_ACT_DELIVERED:
    case DSN_ACT_RELAYED:
    case DSN_ACT_EXPANDED:
        dsn_putf(b,
                 "Your message%s%s was passed on to the recipients below, as you asked\r\n"
                 "with NOTIFY=SUCCESS. The next mail system does not support delivery\r\n"
                 "notifications, so this is the last report you will get about them.\r\n",
                 r->queue_id ? " " : "", r->queue_id ? r->queue_id : "");
        break;
    default:
        dsn_putf(b,
                 "Your message%s%s, accepted %s, could not be delivered to the\r\n"
                 "recipients below. This is a permanent error; the mail system has given\r\n"
                 "up on them.\r\n",
                 r->queue_id ? " " : "", r->queue_id ? r->queue_id : "", dsn_date(r->arrival, d));
        break;
    }
    for (size_t i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        char diag[DSN_DIAG_MAX + 1];
        dsn_flatten(dsn_empty(rc->diag) ? "" : rc->diag, diag, sizeof(diag));
        dsn_putf(b, "\r\n<%s>: ", rc->addr);
        if (!dsn_empty(rc->remote_mta))
            dsn_putf(b, "host %s said: ", rc->remote_mta);
        dsn_putf(b, "%s\r\n", diag[0] ? diag : dsn_action_name(rc->action));
        if (rc->tls)
            dsn_putf(b, "    The last delivery attempt %s TLS%s%s%s.\r\n",
                     strcmp(rc->tls, "none") == 0 ? "did not use" : "used",
                     strcmp(rc->tls, "none") == 0 ? "" : " (",
                     strcmp(rc->tls, "none") == 0 ? "" : rc->tls,
                     strcmp(rc->tls, "none") == 0 ? "" : ")");
        else if (rc->last_attempt == 0 || dsn_empty(rc->remote_mta))
            dsn_puts(b, "    No connection to a receiving mail system was made.\r\n");
        if (rc->action == DSN_ACT_DELAYED && rc->retry_until)
            dsn_putf(b, "    Delivery will be retried until %s.\r\n", dsn_date(rc->retry_until, d));
    }
    if (r->rcpts[0].action == DSN_ACT_FAILED || r->rcpts[0].action == DSN_ACT_DELAYED) {
        if (!r->orig)
            dsn_puts(b, "\r\nThe message itself is no longer available.\r\n");
        else if (too_big)
            dsn_putf(b,
                     "\r\nThe message is larger than %zu octets; only its headers are "
                     "attached.\r\n",
                     r->full_max);
        else if (headers_only)
            dsn_puts(b, "\r\nThe headers of the message are attached.\r\n");
        else
            dsn_puts(b, "\r\nThe message is attached.\r\n");
    }
}

int dsn_build(const struct dsn_report *r, char **out, size_t *len, bool *has_8bit)
{
    *out = NULL;
    *len = 0;
    *has_8bit = false;
    if (!r || dsn_empty(r->reporting_mta) || !r->sender || dsn_empty(r->message_id) ||
        dsn_empty(r->boundary) || !r->rcpts || r->nrcpt == 0)
        return -EINVAL;
    if (!dsn_header_ok(r->reporting_mta) || !dsn_header_ok(r->sender) || !dsn_header_ok(r->envid) ||
        !dsn_header_ok(r->message_id) || !dsn_header_ok(r->boundary))
        return -EINVAL;
    for (size_t i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        if (dsn_empty(rc->addr) || !dsn_status_ok(rc->status) || !dsn_header_ok(rc->addr) ||
            !dsn_header_ok(rc->remote_mta) || !dsn_header_ok(rc->tls) || !dsn_header_ok(rc->orcpt))
            return -EINVAL;
    }

    /* What is returned (RFC 3461 4.3): RET=HDRS or a delay report: the headers; RET=FULL
     * or no RET: the whole message when it fits full_max, else its headers. */
    bool delayed = r->rcpts[0].action == DSN_ACT_DELAYED;
    bool success = r->rcpts[0].action == DSN_ACT_DELIVERED ||
                   r->rcpts[0].action == DSN_ACT_RELAYED || r->rcpts[0].action == DSN_ACT_EXPANDED;
    bool too_big = r->orig && r->ret != SMTP_RET_HDRS && !delayed && r->orig_len > r->full_max;
    bool headers_only = r->ret == SMTP_RET_HDRS || delayed || success || too_big;
    const char *ret_p = r->orig;
    size_t ret_len = 0;
    if (r->orig)
        ret_len = headers_only ? dsn_header_len(r->orig, r->orig_len) : r->orig_len;
    for (size_t i = 0; i < ret_len; i++)
        if ((unsigned char)ret_p[i] >= 0x80) {
            *has_8bit = true;
            break;
        }

    /* A boundary that does not occur in what is returned (RFC 2046 5.1.1). */
    char boundary[160];
    snprintf(boundary, sizeof(boundary), "%.120s", r->boundary);
    for (unsigned n = 1; ret_p && dsn_contains(ret_p, ret_len, boundary); n++)
        snprintf(boundary, sizeof(boundary), "%.120s.%u", r->boundary, n);

    struct dsn_buf b = {0};
    char d[40];
    char envid[SMTP_XTEXT_MAX + 1] = "";
    if (!dsn_empty(r->envid) &&
        (smtp_xtext_decode(r->envid, strlen(r->envid), envid, sizeof(envid)) < 0 ||
         !dsn_header_ok(envid)))
        envid[0] = '\0';

    /* Headers of the report (RFC 3461 6.2: null reverse-path; RFC 3834 Auto-Submitted). */
    dsn_putf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", r->reporting_mta);
    dsn_putf(&b, "To: <%s>\r\n", r->sender);
    dsn_putf(&b, "Subject: %s\r\n", dsn_subject(r));
    dsn_putf(&b, "Date: %s\r\n", dsn_date(r->date, d));
    dsn_putf(&b, "Message-ID: %s\r\n", r->message_id);
    dsn_puts(&b, "Auto-Submitted: auto-replied\r\n");
    dsn_puts(&b, "MIME-Version: 1.0\r\n");
    dsn_putf(&b,
             "Content-Type: multipart/report; report-type=delivery-status;\r\n"
             "\tboundary=\"%s\"\r\n",
             boundary);
    if (*has_8bit)
        dsn_puts(&b, "Content-Transfer-Encoding: 8bit\r\n");
    dsn_puts(&b, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    /* 1. The human part. */
    dsn_putf(&b, "--%s\r\n", boundary);
    dsn_putf(&b,
             "Content-Description: Notification\r\n"
             "Content-Type: text/plain; charset=%s\r\n",
             r->utf8 ? "utf-8" : "us-ascii");
    if (r->utf8)
        dsn_puts(&b, "Content-Transfer-Encoding: 8bit\r\n");
    dsn_puts(&b, "\r\n");
    dsn_human(&b, r, headers_only, too_big);
    dsn_puts(&b, "\r\n");

    /* 2. The machine part (RFC 3464 2.1: per-message fields, then one block per
     * recipient, each block preceded by an empty line). */
    dsn_putf(&b, "--%s\r\n", boundary);
    dsn_puts(&b, "Content-Description: Delivery report\r\n");
    dsn_putf(&b, "Content-Type: %s\r\n\r\n",
             r->utf8 ? "message/global-delivery-status" : "message/delivery-status");
    if (envid[0])
        dsn_putf(&b, "Original-Envelope-Id: %s\r\n", envid);
    dsn_putf(&b, "Reporting-MTA: dns; %s\r\n", r->reporting_mta);
    if (r->queue_id)
        dsn_putf(&b, "X-Holdfast-Queue-ID: %s\r\n", r->queue_id);
    dsn_putf(&b, "Arrival-Date: %s\r\n", dsn_date(r->arrival, d));
    for (size_t i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        dsn_puts(&b, "\r\n");
        char orcpt[SMTP_XTEXT_MAX + 64];
        if (!dsn_empty(rc->orcpt) && dsn_orcpt(rc->orcpt, orcpt, sizeof(orcpt)))
            dsn_putf(&b, "Original-Recipient: %s\r\n", orcpt);
        dsn_putf(&b, "Final-Recipient: %s; %s\r\n", r->utf8 ? "utf-8" : "rfc822", rc->addr);
        dsn_putf(&b, "Action: %s\r\n", dsn_action_name(rc->action));
        dsn_putf(&b, "Status: %s\r\n", rc->status);
        if (!dsn_empty(rc->remote_mta))
            dsn_putf(&b, "Remote-MTA: dns; %s\r\n", rc->remote_mta);
        if (!dsn_empty(rc->diag)) {
            char diag[DSN_DIAG_MAX + 1];
            dsn_flatten(rc->diag, diag, sizeof(diag));
            dsn_putf(&b, "Diagnostic-Code: %s; %s\r\n", rc->diag_smtp ? "smtp" : "X-Holdfast",
                     diag);
        }
        if (rc->last_attempt)
            dsn_putf(&b, "Last-Attempt-Date: %s\r\n", dsn_date(rc->last_attempt, d));
        if (rc->action == DSN_ACT_DELAYED && rc->retry_until)
            dsn_putf(&b, "Will-Retry-Until: %s\r\n", dsn_date(rc->retry_until, d));
        if (rc->tls)
            dsn_putf(&b, "X-Holdfast-TLS: %s\r\n", rc->tls);
    }
    dsn_puts(&b, "\r\n");

    /* 3. The returned message or its headers. */
    if (r->orig) {
        dsn_putf(&b, "--%s\r\n", boundary);
        if (headers_only) {
            dsn_puts(&b, "Content-Description: Undelivered Message Headers\r\n");
            dsn_puts(&b, "Content-Type: text/rfc822-headers\r\n");
        } else {
            dsn_puts(&b, "Content-Description: Undelivered Message\r\n");
            dsn_puts(&b, "Content-Type: message/rfc822\r\n");
        }
        if (*has_8bit)
            dsn_puts(&b, "Content-Transfer-Encoding: 8bit\r\n");
        dsn_puts(&b, "\r\n");
        dsn_put(&b, ret_p, ret_len);
        if (ret_len < 2 || ret_p[ret_len - 2] != '\r' || ret_p[ret_len - 1] != '\n')
            dsn_puts(&b, "\r\n");
        dsn_puts(&b, "\r\n");
    }
    dsn_putf(&b, "--%s--\r\n", boundary);
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
