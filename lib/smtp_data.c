/* DATA decoder: a byte-at-a-time state machine that finds the end of data (CRLF "." CRLF
 * only, RFC 5321 4.1.1.4), removes dot-stuffing (RFC 5321 4.5.2), and refuses or normalises
 * bare CR and bare LF, so that no other line ending can end the data (SMTP smuggling).
 * Everything it knows between buffers is in struct smtp_data, so any split of the input
 * gives the same output. In raw mode (BDAT chunks, RFC 3030) the same machine judges bare CR
 * / LF and line length but never sees a leading dot or an end of data: the chunk's octet
 * count, kept by the session, frames the content.
 *
 * Pure. Size limits on the whole message, the Received: header and storage are the
 * session's and the queue's. */
#include "smtp_data.h"

#include <string.h>

#include "hf_err.h"

enum data_state {
    DATA_ST_BOL = 0, /* at the start of a line: just after CRLF, or at the very start */
    DATA_ST_DOT,     /* "." at the start of a line, not emitted */
    DATA_ST_DOT_CR,  /* "." CR at the start of a line, neither emitted: maybe the end */
    DATA_ST_TEXT,    /* inside a line */
    DATA_ST_CR,      /* CR inside a line, already emitted: LF or bare CR next */
    DATA_ST_DONE,
};

void smtp_data_init(struct smtp_data *d, size_t max_line, enum smtp_data_bare bare)
{
    memset(d, 0, sizeof(*d));
    d->st = DATA_ST_BOL;
    d->max_line = max_line;
    d->bare = bare;
}

void smtp_data_init_raw(struct smtp_data *d, size_t max_line, enum smtp_data_bare bare)
{
    smtp_data_init(d, max_line, bare);
    d->raw = true;
}

static void data__fail(struct smtp_data *d, int err)
{
    if (d->err == 0) {
        d->err = err;
    }
}

static void data__emit(struct smtp_data *d, unsigned char c, char *out, size_t *o)
{
    if (d->err == 0) {
        out[(*o)++] = (char)c;
    }
}

/* A bare CR or LF: refused, or replaced by CRLF. Either way it ends no SMTP line. */
static void data__bare(struct smtp_data *d, bool cr_emitted, char *out, size_t *o)
{
    if (d->bare == SMTP_DATA_BARE_REJECT) {
        data__fail(d, HF_EBARELF);
        return;
    }
    if (!cr_emitted) {
        data__emit(d, '\r', out, o);
    }
    data__emit(d, '\n', out, o);
    d->line_len = 0;
}

/* An octet inside a line (or the first one that is not a leading dot). */
static void data__text(struct smtp_data *d, unsigned char c, char *out, size_t *o)
{
    if (c == '\r') {
        /* Emitted at once: it starts CRLF either way, and holding it back would make the
         * output of one call larger than twice its input. */
        data__emit(d, c, out, o);
        d->st = DATA_ST_CR;
        return;
    }
    d->st = DATA_ST_TEXT;
    if (c == '\n') {
        data__bare(d, false, out, o);
        return;
    }
    data__emit(d, c, out, o);
}

size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len, char *out, size_t *out_len)
{
    size_t o = 0;
    size_t i;

    for (i = 0; i < len && d->st != DATA_ST_DONE; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c >= 0x80) {
            d->eight_bit = true;
        }
        if ((d->st == DATA_ST_CR || d->st == DATA_ST_DOT_CR) && c != '\n') {
            /* The CR before c was bare. After ".CR" the dot stays removed (the line
             * started with one) and nothing of the line was emitted yet. */
            data__bare(d, d->st == DATA_ST_CR, out, &o);
            d->st = DATA_ST_TEXT;
        }
        /* RFC 5321 4.5.3.1.6: the leading dot duplicated for transparency is not counted. */
        if (d->st != DATA_ST_BOL || c != '.' || d->raw) {
            d->line_len++;
        }
        if (d->max_line != 0 && d->line_len > d->max_line) {
            data__fail(d, HF_ELONGLINE);
        }
        switch (d->st) {
        case DATA_ST_BOL:
            if (c == '.' && !d->raw) {
                d->st = DATA_ST_DOT;
            } else {
                data__text(d, c, out, &o);
            }
            break;
        case DATA_ST_DOT:
            if (c == '\r') {
                d->st = DATA_ST_DOT_CR;
            } else {
                /* RFC 5321 4.5.2: the leading dot goes; ".." keeps one, ".x" keeps x. */
                data__text(d, c, out, &o);
            }
            break;
        case DATA_ST_DOT_CR:
            /* c is LF (anything else was handled above): CRLF "." CRLF. */
            d->st = DATA_ST_DONE;
            d->done = true;
            break;
        case DATA_ST_CR:
            /* c is LF: a real line end. */
            data__emit(d, c, out, &o);
            d->st = DATA_ST_BOL;
            d->line_len = 0;
            break;
        default:
            data__text(d, c, out, &o);
            break;
        }
    }
    d->bytes_out += o;
    *out_len = o;
    return i;
}

size_t smtp_data_end(struct smtp_data *d, char *out)
{
    size_t o = 0;

    if (d->st == DATA_ST_CR) {
        /* The content ended on a CR that no LF followed: a bare CR. */
        data__bare(d, true, out, &o);
    }
    d->st = DATA_ST_DONE;
    d->done = true;
    d->bytes_out += o;
    return o;
}
