/* Message content decoder. DATA (RFC 5321 4.1.1.4, 4.5.2): finds end of data (CRLF.CRLF
 * only), removes dot-stuffing, and flags bare CR / bare LF and over-long text lines, across
 * any split of the input into buffers. BDAT (RFC 3030 2): the same content checks on chunks
 * whose length the command gave, with no dot-stuffing and no end-of-data marker. Pure.
 *
 * Smuggling rule: only CR LF "." CR LF ends the data. "\n.\n", "\r.\r", "\n.\r\n" and
 * "\r\n.\n" do not; they are body bytes (and make the message bad in reject mode). In a BDAT
 * chunk nothing ends the data: only the octet count does. */
#ifndef HF_SMTP_DATA_H
#define HF_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>

enum smtp_data_bare {
    SMTP_DATA_BARE_REJECT = 0, /* record HF_EBARELF, keep scanning for the real end */
    SMTP_DATA_BARE_NORMALISE,  /* emit CRLF for a bare LF or a bare CR */
};

struct smtp_data {
    /* private state */
    int st;
    bool raw; /* BDAT: no dot-stuffing, no end-of-data marker */
    size_t line_len;
    size_t max_line;
    enum smtp_data_bare bare;
    /* results */
    bool done;        /* end of data seen; no more input is consumed */
    int err;          /* 0, HF_EBARELF, or HF_ELONGLINE: first problem seen */
    size_t bytes_out; /* total octets emitted (the message size) */
    bool eight_bit;   /* an octet >= 0x80 was seen */
};

/* Octets of out that smtp_data_feed() may write for len octets of input. Normalising
 * turns each bare CR or LF into CRLF (2 for 1), and a ".CR" held back from the previous
 * buffer may come out as CRLF ahead of the first octet, hence the one extra. */
#define SMTP_DATA_OUT_MAX(len) (2 * (size_t)(len) + 1)

/* max_line: longest text line in octets including CRLF (SMTP_TEXT_LINE_MAX); 0 for no
 * limit. The decoder starts as if just after a CRLF, so ".\r\n" at once is an empty
 * message. */
void smtp_data_init(struct smtp_data *d, size_t max_line, enum smtp_data_bare bare);

/* The same for BDAT content (RFC 3030 2): every octet is message content; "." at the start of
 * a line is an ordinary octet and CRLF.CRLF ends nothing. Bare CR / bare LF and line length
 * are judged as for DATA; smtp_data_end() closes the content after BDAT LAST. */
void smtp_data_init_raw(struct smtp_data *d, size_t max_line, enum smtp_data_bare bare);

/* BDAT only: the last chunk has been fed. A CR that ended the content is bare (refused, or
 * completed to CRLF when normalising: one octet written to out, which must hold 1). Sets
 * d->done. Returns the octets written (0 or 1). */
size_t smtp_data_end(struct smtp_data *d, char *out);

/* Consumes in[0..len) until the end of data. Unstuffed message bytes (each line ending in
 * CRLF, the final ".CRLF" not included) are written to out, which must hold at least
 * SMTP_DATA_OUT_MAX(len) octets; *out_len receives how many.
 * Dot-stuffing (RFC 5321 4.5.2): the first "." of every line that starts with one is
 * removed. A line starts only after a real CRLF: after a normalised bare CR or LF the
 * next octet is mid-line, so "\n.\r\n" can never become an end of data.
 * Line length counts the line's octets including the CRLF after unstuffing: RFC 5321
 * 4.5.3.1.6 does not count the leading dot duplicated for transparency, so ".." + 997 + CRLF
 * (1001 octets on the wire) is a line of 1000. A normalised bare CR or LF ends the counted
 * line. In raw mode (BDAT) nothing is stuffed and every octet counts.
 * After an error (d->err != 0) input is still consumed up to the end of data, so the
 * session stays in step, but nothing more is emitted; the bytes emitted before the error
 * are not a usable message.
 * Returns the number of input octets consumed: len, or fewer when the end of data fell
 * inside the buffer (the rest is the next command, e.g. pipelined QUIT). Once d->done is
 * set it returns 0. In raw mode it always consumes len (the caller counts the chunk). */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len, char *out, size_t *out_len);

#endif
