/* relayctl's output helpers: JSON strings (RFC 8259), terminal-safe text, human sizes,
 * ages and times. */
#include "relayctl.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- output helpers ---------------------------------------------------------------- */

static const char ctl_hex[] = "0123456789abcdef";

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one (overlong forms,
 * surrogates and code points past U+10FFFF are invalid, RFC 3629 4). */
static size_t ctl_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    if (cp >= 0xd800 && cp <= 0xdfff)
        return 0;
    return len;
}

/* Writes s[0..n) as a JSON string literal, quotes included. */
void relayctl_json_strn(FILE *f, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    putc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            putc('\\', f);
            putc(c, f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            /* RFC 8259 7: the short escapes for 0x08..0x0d where they exist. */
            static const char *const short_esc[] = {"\\b", "\\t", "\\n", NULL, "\\f", "\\r"};
            if (c >= 0x08 && c <= 0x0d && short_esc[c - 0x08])
                fputs(short_esc[c - 0x08], f);
            else
                fprintf(f, "\\u00%c%c", ctl_hex[c >> 4], ctl_hex[c & 15]);
            i++;
        } else if (c < 0x80) {
            putc(c, f);
            i++;
        } else {
            size_t len = ctl_utf8_len(p + i, n - i);
            if (len == 0) {
                fprintf(f, "\\u00%c%c", ctl_hex[c >> 4], ctl_hex[c & 15]);
                i++;
            } else {
                fwrite(p + i, 1, len, f);
                i += len;
            }
        }
    }
    putc('"', f);
}

void relayctl_json_str(FILE *f, const char *s)
{
    relayctl_json_strn(f, s, strlen(s));
}

/* Writes s[0..n) for a terminal: printable ASCII and valid UTF-8 as they are, tab as is,
 * every other control or stray byte as \xHH, so text from the network cannot move the
 * cursor or change the terminal's state. CRLF and LF become a newline when keep_lines. */
void relayctl_text_strn(FILE *f, const char *s, size_t n, bool keep_lines)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (keep_lines && c == '\r' && i + 1 < n && p[i + 1] == '\n') {
            putc('\n', f);
            i += 2;
            continue;
        }
        if (keep_lines && c == '\n') {
            putc('\n', f);
            i++;
            continue;
        }
        size_t len = c >= 0x80 ? ctl_utf8_len(p + i, n - i) : 1;
        if (c == '\t' || (c >= 0x20 && c < 0x7f)) {
            putc(c, f);
            i++;
        } else if (c >= 0x80 && len > 0) {
            fwrite(p + i, 1, len, f);
            i += len;
        } else {
            fprintf(f, "\\x%c%c", ctl_hex[c >> 4], ctl_hex[c & 15]);
            i++;
        }
    }
}

void relayctl_text_str(FILE *f, const char *s)
{
    relayctl_text_strn(f, s, strlen(s), false);
}

/* Formats octets as "512", "1.5K", "12M", "3.2G" into buf. */
const char *relayctl_human_bytes(uint64_t n, char *buf, size_t bufsz)
{
    static const char units[] = "KMGTPE";
    if (n < 1024) {
        snprintf(buf, bufsz, "%" PRIu64, n);
        return buf;
    }
    double v = (double)n;
    int u = -1;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (v < 10.0)
        snprintf(buf, bufsz, "%.1f%c", v, units[u]);
    else
        snprintf(buf, bufsz, "%.0f%c", v, units[u]);
    return buf;
}

/* Formats an age in seconds as "42s", "5m", "3h", "2d" into buf ("-" when unknown). */
const char *relayctl_human_age(int64_t when, int64_t now, char *buf, size_t bufsz)
{
    if (when <= 0) {
        snprintf(buf, bufsz, "-");
        return buf;
    }
    int64_t d = now - when;
    if (d < 0)
        d = 0;
    if (d < 120)
        snprintf(buf, bufsz, "%" PRId64 "s", d);
    else if (d < 2 * 3600)
        snprintf(buf, bufsz, "%" PRId64 "m", d / 60);
    else if (d < 2 * 86400)
        snprintf(buf, bufsz, "%" PRId64 "h", d / 3600);
    else
        snprintf(buf, bufsz, "%" PRId64 "d", d / 86400);
    return buf;
}

/* Formats unix seconds as local "YYYY-MM-DD HH:MM:SS". */
const char *relayctl_time(int64_t t, char *buf, size_t bufsz)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (localtime_r(&tt, &tm) == NULL || strftime(buf, bufsz, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, bufsz, "@%" PRId64, t);
    return buf;
}

const char *relayctl_state_name(int state)
{
    switch (state) {
    case QUEUE_RS_PENDING:
        return "pending";
    case QUEUE_RS_DEFERRED:
        return "deferred";
    case QUEUE_RS_FAILED:
        return "failed";
    default:
        return "unknown";
    }
}

/* ---- messages: envelope and recipients ------------------------------------------- */

static bool ctl_wanted(const struct relayctl_msg_out *o, uint32_t idx)
{
    if (o->want == NULL)
        return true;
    for (size_t i = 0; i < o->nwant; i++)
        if (o->want[i].idx == idx)
            return true;
    return false;
}

static void ctl_json_notify(FILE *f, unsigned notify)
{
    static const struct {
        unsigned bit;
        const char *name;
    } bits[] = {{SMTP_NOTIFY_NEVER, "NEVER"},
                {SMTP_NOTIFY_SUCCESS, "SUCCESS"},
                {SMTP_NOTIFY_FAILURE, "FAILURE"},
                {SMTP_NOTIFY_DELAY, "DELAY"}};
    bool first = true;
    putc('[', f);
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        if (notify & bits[i].bit) {
            fprintf(f, "%s\"%s\"", first ? "" : ",", bits[i].name);
            first = false;
        }
    }
    putc(']', f);
}

int relayctl_print_rcpt(const struct queue_rcpt *r, void *arg)
{
    struct relayctl_msg_out *o = arg;
    FILE *f = o->f;
    if (!ctl_wanted(o, r->idx))
        return 0;
    if (o->json) {
        fputs(o->printed ? "," : "", f);
        fputs("{\"addr\":", f);
        relayctl_json_str(f, r->addr);
        fputs(",\"domain\":", f);
        relayctl_json_str(f, r->domain);
        fprintf(f,
                ",\"state\":\"%s\",\"attempts\":%" PRIu32 ",\"next_attempt\":%" PRId64
                ",\"last_attempt\":%" PRId64 ",\"last_error\":",
                relayctl_state_name(r->state), r->attempts, r->next_attempt, r->last_attempt);
        relayctl_json_str(f, r->last_error);
        fputs(",\"orcpt\":", f);
        relayctl_json_str(f, r->orcpt);
        fputs(",\"notify\":", f);
        ctl_json_notify(f, r->notify);
        putc('}', f);
    } else {
        char t[64];
        fputs("    <", f);
        relayctl_text_str(f, r->addr);
        fprintf(f, ">  %s, attempts %" PRIu32, relayctl_state_name(r->state), r->attempts);
        if (r->last_attempt > 0)
            fprintf(f, ", last %s", relayctl_time(r->last_attempt, t, sizeof(t)));
        if (r->state == QUEUE_RS_DEFERRED)
            fprintf(f, ", next %s",
                    r->next_attempt > 0 ? relayctl_time(r->next_attempt, t, sizeof(t)) : "now");
        putc('\n', f);
        if (r->last_error[0]) {
            fputs("        (", f);
            relayctl_text_str(f, r->last_error);
            fputs(")\n", f);
        }
    }
    o->printed++;
    return 0;
}

const char *relayctl_ret_name(int ret)
{
    switch (ret) {
    case SMTP_RET_FULL:
        return "FULL";
    case SMTP_RET_HDRS:
        return "HDRS";
    default:
        return NULL;
    }
}

/* Writes the envelope part of MESSAGE in JSON, up to and including "rcpts":[ . */
void relayctl_json_env(FILE *f, const struct queue_env *e)
{
    char id[QUEUE_ID_STR];
    fprintf(f, "{\"id\":\"%s\",\"size\":%" PRIu64 ",\"arrival\":%" PRId64 ",\"sender\":",
            queue_id_str(e->id, id), e->size, e->arrival);
    relayctl_json_str(f, e->sender);
    fputs(",\"flags\":[", f);
    const char *sep = "";
    if (e->flags & QUEUE_F_8BITMIME) {
        fprintf(f, "%s\"8BITMIME\"", sep);
        sep = ",";
    }
    if (e->flags & QUEUE_F_SMTPUTF8) {
        fprintf(f, "%s\"SMTPUTF8\"", sep);
        sep = ",";
    }
    if (e->flags & QUEUE_F_HELD)
        fprintf(f, "%s\"HELD\"", sep);
    fputs("],\"client_name\":", f);
    relayctl_json_str(f, e->client_name);
    fputs(",\"client_addr\":", f);
    relayctl_json_str(f, e->client_addr);
    fputs(",\"envid\":", f);
    relayctl_json_str(f, e->envid);
    const char *ret = relayctl_ret_name(e->ret);
    if (ret)
        fprintf(f, ",\"ret\":\"%s\"", ret);
    else
        fputs(",\"ret\":null", f);
    fputs(",\"rcpts\":[", f);
}

void relayctl_text_flags(FILE *f, unsigned flags)
{
    if (flags & QUEUE_F_8BITMIME)
        fputs(" 8BITMIME", f);
    if (flags & QUEUE_F_SMTPUTF8)
        fputs(" SMTPUTF8", f);
    if (flags & QUEUE_F_HELD)
        fputs(" HELD", f);
}
