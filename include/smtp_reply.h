/* SMTP replies (RFC 5321 4.2, enhanced codes RFC 3463): formatting for the server side,
 * parsing of multi-line replies for the client side. Pure. */
#ifndef HF_SMTP_REPLY_H
#define HF_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_REPLY_TEXT_MAX 2048

/* Formats one reply line "CODE ENH text\r\n" into buf (size sz). enh may be NULL (no
 * enhanced code, e.g. the 220 greeting). Text is printf-style; control characters in the
 * formatted text (a CR or LF from a peer's string) become '?', so a reply is always one
 * line. With more=true the separator is '-' (continuation line). code must be 200..599
 * (asserted). Keeping the line within 512 octets is the caller's part. Returns the length
 * written (without NUL), or -ENOSPC when it does not fit (buf then holds nothing useful). */
int smtp_reply_fmt(char *buf, size_t sz, int code, const char *enh, bool more, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Accumulates the lines of one (possibly multi-line) reply. */
struct smtp_reply {
    int code;                       /* 3-digit code of the reply */
    char enh[16];                   /* "x.y.z" from the first line when present, else "" */
    char text[SMTP_REPLY_TEXT_MAX]; /* lines' text joined with "\n", enh codes kept,
                                       truncated silently at the buffer size */
    size_t nlines;
    bool done; /* last line (CODE SP) seen */
    /* Each line's text start offset in text, for EHLO keyword scanning. */
    size_t line_off[64];
};

void smtp_reply_init(struct smtp_reply *r);

/* Feeds one reply line (CRLF removed). Returns 1 when the reply is complete, 0 when more
 * lines follow, HF_EPROTO for a malformed line (not 3 digits + ' '/'-', code outside
 * 200..599, or a code differing from the first line's); r is unchanged by a malformed line.
 * A bare "250" is a complete last line (RFC 5321 4.2: the text is optional). Control
 * characters in the text are stored as '?'. Feeding after a complete reply starts a new
 * one (r is re-initialised first). */
int smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len);

/* True if the completed EHLO reply r (code 250) advertises keyword (case-insensitive), as
 * the first word of a line after the first. If param is not NULL it receives a pointer into
 * r->text at the rest of that line (or a static ""), valid while r lives. The rest of the
 * line is not NUL-terminated: it ends at the next '\n' or NUL (strcspn(p, "\n")). Only the
 * first 64 lines are searched. */
bool smtp_reply_has_ext(const struct smtp_reply *r, const char *keyword, const char **param);

/* Class of a code: 2, 3, 4 or 5. */
static inline int smtp_reply_class(int code)
{
    return code / 100;
}

#endif
