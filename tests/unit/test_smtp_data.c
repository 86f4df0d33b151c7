/* Unit tests for smtp_data.c: end of data, dot-unstuffing, bare CR/LF (reject and
 * normalise), smuggling variants, long lines (the RFC 5321 4.5.3.1.6 boundary with and
 * without a stuffed dot), eight_bit, and the raw mode BDAT uses; every case is fed whole,
 * byte by byte and split at every point, and an exhaustive run over short inputs compares
 * the decoder (both modes) with a simple whole-buffer reference. Output buffers are allocated at
 * exactly SMTP_DATA_OUT_MAX(len) so that AddressSanitizer catches any overrun. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_cmd.h"
#include "smtp_data.h"
#include "hf_err.h"

#define BUF_MAX 8192

/* Raw mode (BDAT): set by the tests that use it; run_split initialises the decoder with it
 * and ends the content with smtp_data_end() as BDAT LAST does. */
static bool raw_mode;

struct result {
    char out[2 * BUF_MAX + 1];
    size_t out_len;
    size_t consumed;
    bool done;
    int err;
    bool eight_bit;
    size_t bytes_out;
};

/* Feeds one piece with an output buffer of exactly the documented size. Returns consumed. */
static size_t feed_piece(struct smtp_data *d, const char *in, size_t len, struct result *r)
{
    size_t max = SMTP_DATA_OUT_MAX(len);
    char *out = malloc(max);
    size_t olen = (size_t)-1;
    size_t used;

    assert_non_null(out);
    used = smtp_data_feed(d, in, len, out, &olen);
    assert_true(olen <= max);
    assert_true(used <= len);
    /* Fewer than len only when the end of data fell inside the piece. */
    assert_true(used == len || d->done);
    memcpy(r->out + r->out_len, out, olen);
    r->out_len += olen;
    r->consumed += used;
    free(out);
    return used;
}

/* Decodes in[0..len) split at the sorted cut points cuts[0..ncuts). */
static void run_split(const char *in, size_t len, size_t max_line, enum smtp_data_bare bare,
                      const size_t *cuts, size_t ncuts, struct result *r)
{
    struct smtp_data d;
    size_t start = 0;

    /* Only the scalars: the 16 KiB buffer is written before it is read. */
    r->out_len = 0;
    r->consumed = 0;
    if (raw_mode) {
        smtp_data_init_raw(&d, max_line, bare);
    } else {
        smtp_data_init(&d, max_line, bare);
    }
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        size_t used = feed_piece(&d, in + start, end - start, r);
        if (used < end - start) {
            break;
        }
        start = end;
    }
    if (raw_mode) {
        /* Raw mode takes everything; the chunk count, not the decoder, ends the content. */
        char last[1];
        assert_int_equal(r->consumed, len);
        assert_false(d.done);
        size_t n = smtp_data_end(&d, last);
        assert_true(n <= 1);
        memcpy(r->out + r->out_len, last, n);
        r->out_len += n;
        assert_true(d.done);
    }
    /* Once done, nothing more is taken. */
    if (d.done) {
        char out[4];
        size_t olen = 99;
        assert_int_equal(smtp_data_feed(&d, "x\r\n", 3, out, &olen), 0);
        assert_int_equal(olen, 0);
    }
    r->done = d.done;
    r->err = d.err;
    r->eight_bit = d.eight_bit;
    r->bytes_out = d.bytes_out;
    assert_int_equal(r->bytes_out, r->out_len);
}

static void run_whole(const char *in, size_t len, size_t max_line, enum smtp_data_bare bare,
                      struct result *r)
{
    run_split(in, len, max_line, bare, NULL, 0, r);
}

static void assert_same(const struct result *a, const struct result *b, const char *what, size_t at)
{
    if (a->out_len != b->out_len || memcmp(a->out, b->out, a->out_len) != 0 ||
        a->consumed != b->consumed || a->done != b->done || a->err != b->err ||
        a->eight_bit != b->eight_bit) {
        print_error("%s (at %zu) differs from whole: out %zu/%zu consumed %zu/%zu done %d/%d "
                    "err %d/%d\n",
                    what, at, b->out_len, a->out_len, b->consumed, a->consumed, b->done, a->done,
                    b->err, a->err);
        fail();
    }
}

/* Whole, byte by byte, and every two-piece split must agree. */
static void check_splits(const char *in, size_t len, size_t max_line, enum smtp_data_bare bare,
                         struct result *whole)
{
    struct result *r = malloc(sizeof(*r));
    size_t *cuts = malloc((len + 1) * sizeof(size_t));

    assert_non_null(r);
    assert_non_null(cuts);
    run_whole(in, len, max_line, bare, whole);
    for (size_t i = 0; i < len; i++) {
        cuts[i] = i + 1;
    }
    run_split(in, len, max_line, bare, cuts, len > 0 ? len - 1 : 0, r);
    assert_same(whole, r, "byte by byte", 0);
    for (size_t at = 0; at <= len; at++) {
        run_split(in, len, max_line, bare, &at, 1, r);
        assert_same(whole, r, "split", at);
    }
    free(cuts);
    free(r);
}

#define RJ  SMTP_DATA_BARE_REJECT
#define NM  SMTP_DATA_BARE_NORMALISE
#define ALL ((size_t)-1)

struct data_case {
    const char *in;
    enum smtp_data_bare bare;
    size_t max_line;
    const char *out; /* checked when err == 0 */
    size_t consumed; /* ALL for the whole input */
    bool done;
    int err;
    bool eight_bit;
};

static const struct data_case data_cases[] = {
    /* end of data */
    {".\r\n", RJ, 1000, "", ALL, true, 0, false},
    {"Hello\r\n.\r\n", RJ, 1000, "Hello\r\n", ALL, true, 0, false},
    {"Hello\r\n.\r\nQUIT\r\n", RJ, 1000, "Hello\r\n", 10, true, 0, false},
    {".\r\nMAIL FROM:<a@b.test>\r\n", RJ, 1000, "", 3, true, 0, false},
    {"\r\n.\r\n", RJ, 1000, "\r\n", ALL, true, 0, false},
    {"a\r\n\r\n.\r\n", RJ, 1000, "a\r\n\r\n", ALL, true, 0, false},
    {"Subject: x\r\n\r\nbody\r\n", RJ, 1000, "Subject: x\r\n\r\nbody\r\n", ALL, false, 0, false},
    {"Hello\r\n.", RJ, 1000, "Hello\r\n", ALL, false, 0, false},
    {"Hello\r\n.\r", RJ, 1000, "Hello\r\n", ALL, false, 0, false},
    {"", RJ, 1000, "", ALL, false, 0, false},
    /* dot-unstuffing (RFC 5321 4.5.2) */
    {"..\r\n.\r\n", RJ, 1000, ".\r\n", ALL, true, 0, false},
    {"..dot\r\n.\r\n", RJ, 1000, ".dot\r\n", ALL, true, 0, false},
    {"a\r\n...\r\n.\r\n", RJ, 1000, "a\r\n..\r\n", ALL, true, 0, false},
    {".x\r\n.\r\n", RJ, 1000, "x\r\n", ALL, true, 0, false},
    {"a\r\n.x.y.\r\n.\r\n", RJ, 1000, "a\r\nx.y.\r\n", ALL, true, 0, false},
    {"a.\r\nb.b\r\n.\r\n", RJ, 1000, "a.\r\nb.b\r\n", ALL, true, 0, false},
    {". \r\n.\r\n", RJ, 1000, " \r\n", ALL, true, 0, false},
    {"..\r\n..\r\n.\r\n", RJ, 1000, ".\r\n.\r\n", ALL, true, 0, false},
    /* smuggling: none of these ends the data, and in reject mode they spoil the message */
    {"a\r\n.\nMAIL FROM:<x@evil.test>\r\n", RJ, 1000, NULL, ALL, false, HF_EBARELF, false},
    {"a\n.\r\nMAIL FROM:<x@evil.test>\r\n", RJ, 1000, NULL, ALL, false, HF_EBARELF, false},
    {"a\n.\nMAIL FROM:<x@evil.test>\r\n", RJ, 1000, NULL, ALL, false, HF_EBARELF, false},
    {"a\r.\rMAIL FROM:<x@evil.test>\r\n", RJ, 1000, NULL, ALL, false, HF_EBARELF, false},
    {"a\r.\r\nMAIL FROM:<x@evil.test>\r\n", RJ, 1000, NULL, ALL, false, HF_EBARELF, false},
    {"a\r\n.\r\rMAIL\r\n", RJ, 1000, NULL, ALL, false, HF_EBARELF, false},
    {"\n.\r\n", RJ, 1000, NULL, ALL, false, HF_EBARELF, false},
    {".\n", RJ, 1000, NULL, ALL, false, HF_EBARELF, false},
    {"\r.\r\n", RJ, 1000, NULL, ALL, false, HF_EBARELF, false},
    /* ... and the real end still comes, so the session stays in step */
    {"a\n.\nb\r\n.\r\nQUIT\r\n", RJ, 1000, NULL, 10, true, HF_EBARELF, false},
    {"a\rb\r\n.\r\nQUIT\r\n", RJ, 1000, NULL, 8, true, HF_EBARELF, false},
    {".\r.\r\n.\r\nQUIT\r\n", RJ, 1000, NULL, 8, true, HF_EBARELF, false},
    /* normalise mode: bare CR and LF become CRLF, still never an end of data */
    {"a\nb\r\n.\r\n", NM, 1000, "a\r\nb\r\n", ALL, true, 0, false},
    {"a\rb\r\n.\r\n", NM, 1000, "a\r\nb\r\n", ALL, true, 0, false},
    {"a\r\r\n.\r\n", NM, 1000, "a\r\n\r\n", ALL, true, 0, false},
    {"a\n\n\r\n.\r\n", NM, 1000, "a\r\n\r\n\r\n", ALL, true, 0, false},
    {"a\r\r\rb\r\n.\r\n", NM, 1000, "a\r\n\r\n\r\nb\r\n", ALL, true, 0, false},
    {"a\r\n.\nb\r\n.\r\n", NM, 1000, "a\r\n\r\nb\r\n", ALL, true, 0, false},
    {"a\n.\r\nb\r\n.\r\n", NM, 1000, "a\r\n.\r\nb\r\n", ALL, true, 0, false},
    {"a\n.\nb\r\n.\r\n", NM, 1000, "a\r\n.\r\nb\r\n", ALL, true, 0, false},
    {"a\r.\rb\r\n.\r\n", NM, 1000, "a\r\n.\r\nb\r\n", ALL, true, 0, false},
    {".\rX\r\n.\r\n", NM, 1000, "\r\nX\r\n", ALL, true, 0, false},
    {".\r\r\n.\r\n", NM, 1000, "\r\n\r\n", ALL, true, 0, false},
    {"\r.\r\n.\r\n", NM, 1000, "\r\n.\r\n", ALL, true, 0, false},
    {"\n..\r\n.\r\n", NM, 1000, "\r\n..\r\n", ALL, true, 0, false},
    {"a\n.\r\n", NM, 1000, "a\r\n.\r\n", ALL, false, 0, false},
    /* line length: input octets with CRLF, before unstuffing */
    {"12345678\r\n.\r\n", RJ, 10, "12345678\r\n", ALL, true, 0, false},
    {"123456789\r\n.\r\n", RJ, 10, NULL, ALL, true, HF_ELONGLINE, false},
    {"123456789\r\n.\r\nQUIT\r\n", RJ, 10, NULL, 14, true, HF_ELONGLINE, false},
    /* line length: counted after unstuffing (RFC 5321 4.5.3.1.6) */
    {"..234567\r\n.\r\n", RJ, 10, ".234567\r\n", ALL, true, 0, false},
    {"..2345678\r\n.\r\n", RJ, 10, ".2345678\r\n", ALL, true, 0, false},
    {"..23456789\r\n.\r\n", RJ, 10, NULL, ALL, true, HF_ELONGLINE, false},
    {".12345678\r\n.\r\n", RJ, 10, "12345678\r\n", ALL, true, 0, false},
    {"a\r\n..2345678\r\n.\r\n", RJ, 10, "a\r\n.2345678\r\n", ALL, true, 0, false},
    {"a\r\n..23456789\r\n.\r\n", RJ, 10, NULL, ALL, true, HF_ELONGLINE, false},
    {"...2345678\r\n.\r\n", RJ, 10, NULL, ALL, true, HF_ELONGLINE, false},
    {"...234567\r\n.\r\n", RJ, 10, "..234567\r\n", ALL, true, 0, false},
    /* after a normalised bare LF the next octet is mid-line: its dot stays and counts */
    {"a\n..2345678\r\n.\r\n", NM, 10, NULL, ALL, true, HF_ELONGLINE, false},
    {"a\n.2345678\r\n.\r\n", NM, 10, "a\r\n.2345678\r\n", ALL, true, 0, false},
    {"12345678\r\n12345678\r\n.\r\n", RJ, 10, "12345678\r\n12345678\r\n", ALL, true, 0, false},
    {"1234567\n1234567\r\n.\r\n", NM, 10, "1234567\r\n1234567\r\n", ALL, true, 0, false},
    {"1234567\r1234567\r\n.\r\n", NM, 10, "1234567\r\n1234567\r\n", ALL, true, 0, false},
    {"123456789\n1\r\n.\r\n", NM, 10, "123456789\r\n1\r\n", ALL, true, 0, false},
    {"1234567890\n1\r\n.\r\n", NM, 10, NULL, ALL, true, HF_ELONGLINE, false},
    {"1234567\n12345678\r\n.\r\n", NM, 10, "1234567\r\n12345678\r\n", ALL, true, 0, false},
    {"123456789\n\r\n.\r\n", RJ, 10, NULL, ALL, true, HF_EBARELF, false},    /* LF first */
    {"1234567\n123\r\n.\r\n", RJ, 10, NULL, ALL, true, HF_EBARELF, false},   /* bare first */
    {"1234567890\n\r\n.\r\n", RJ, 10, NULL, ALL, true, HF_ELONGLINE, false}, /* long first */
    {"123456789012345\r\n.\r\n", RJ, 0, "123456789012345\r\n", ALL, true, 0, false},
    /* eight_bit, NUL and other octets pass through */
    {"caf\xc3\xa9\r\n.\r\n", RJ, 1000, "caf\xc3\xa9\r\n", ALL, true, 0, true},
    {"\xff\xfe\r\n.\r\n", RJ, 1000, "\xff\xfe\r\n", ALL, true, 0, true},
    {".\xc3\xa9\r\n.\r\n", RJ, 1000, "\xc3\xa9\r\n", ALL, true, 0, true},
    {".\r\n\xff", RJ, 1000, "", 3, true, 0, false}, /* after the end: not ours */
    {"a\tb\x01\x7f\r\n.\r\n", RJ, 1000, "a\tb\x01\x7f\r\n", ALL, true, 0, false},
};

static void test_cases(void **state)
{
    struct result *whole = malloc(sizeof(*whole));

    (void)state;
    assert_non_null(whole);
    for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
        const struct data_case *c = &data_cases[i];
        size_t len = strlen(c->in);
        size_t want_consumed = c->consumed == ALL ? len : c->consumed;

        check_splits(c->in, len, c->max_line, c->bare, whole);
        if (whole->done != c->done || whole->err != c->err || whole->consumed != want_consumed ||
            whole->eight_bit != c->eight_bit ||
            (c->err == 0 && (whole->out_len != strlen(c->out) ||
                             memcmp(whole->out, c->out, whole->out_len) != 0))) {
            print_error("case %zu: done %d err %d consumed %zu eight %d out_len %zu\n", i,
                        whole->done, whole->err, whole->consumed, whole->eight_bit, whole->out_len);
            fail();
        }
    }
    free(whole);
}

/* A NUL is a body octet like any other (the session judges BINARYMIME). */
static void test_nul(void **state)
{
    static const char in[] = "a\0b\r\n.\r\n";
    struct result *r = malloc(sizeof(*r));

    (void)state;
    assert_non_null(r);
    check_splits(in, sizeof(in) - 1, 1000, RJ, r);
    assert_true(r->done);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->out_len, 5);
    assert_memory_equal(r->out, "a\0b\r\n", 5);
    free(r);
}

/* A message of realistic size with lines at and over the RFC limit. */
static void test_long_lines(void **state)
{
    char *in = malloc(BUF_MAX);
    struct result *r = malloc(sizeof(*r));
    size_t n = 0;

    (void)state;
    assert_non_null(in);
    assert_non_null(r);
    /* 998 + CRLF = 1000: accepted. */
    memcpy(in, "Subject: t\r\n\r\n", 14);
    n = 14;
    memset(in + n, 'x', 998);
    n += 998;
    memcpy(in + n, "\r\n.\r\n", 5);
    n += 5;
    check_splits(in, n, SMTP_TEXT_LINE_MAX, RJ, r);
    assert_true(r->done);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->out_len, n - 3);
    /* 999 + CRLF, normalise mode: still refused, and nothing after the error is output. */
    memset(in + 14, 'y', 999);
    memcpy(in + 14 + 999, "\r\nmore\r\n.\r\nQUIT\r\n", 17);
    n = 14 + 999 + 17;
    check_splits(in, n, SMTP_TEXT_LINE_MAX, NM, r);
    assert_true(r->done);
    assert_int_equal(r->err, HF_ELONGLINE);
    assert_int_equal(r->consumed, n - 6);
    assert_true(r->out_len <= 14 + 1000);
    free(r);
    free(in);
}

/* RFC 5321 4.5.3.1.6 at its exact boundary: "The maximum total length of a text line
 * including the <CRLF> is 1000 octets (not counting the leading dot duplicated for
 * transparency)". Each line is lead + nx 'x' + CRLF, after an optional first line, in DATA
 * (followed by the end of data) or BDAT (raw) mode; want is the unstuffed line or NULL when
 * it must be refused. Fed whole, byte by byte and split at every offset. */
struct boundary_case {
    bool raw;
    enum smtp_data_bare bare;
    const char *first; /* a line before, as sent ("" for none) */
    const char *lead;  /* octets the line starts with, as sent */
    size_t nx;
    const char *want_lead; /* lead after unstuffing; NULL: the message is refused */
};

static const struct boundary_case boundary_cases[] = {
    /* 998 content octets + CRLF = 1000: accepted; 999: refused */
    {false, RJ, "", "", 998, ""},
    {false, RJ, "", "", 999, NULL},
    /* a 998-octet line starting with "." is sent as ".." + 997: 1001 on the wire, 1000 */
    {false, RJ, "", "..", 997, "."},
    {false, RJ, "", "..", 998, NULL},
    {false, NM, "", "..", 997, "."},
    {false, RJ, "Subject: t\r\n", "..", 997, "."},
    {false, RJ, "Subject: t\r\n", "..", 998, NULL},
    {false, RJ, "Subject: t\r\n", "", 998, ""},
    {false, RJ, "Subject: t\r\n", "", 999, NULL},
    /* "..." + 996 is ".." + 996 = 998 after unstuffing */
    {false, RJ, "", "...", 996, ".."},
    {false, RJ, "", "...", 997, NULL},
    /* a leading dot that was not duplicated is removed and not counted either */
    {false, RJ, "", ".", 998, ""},
    {false, RJ, "", ".", 999, NULL},
    /* after a normalised bare LF the line goes on mid-line: the dot is content and counts */
    {false, NM, "a\n", "..", 996, ".."},
    {false, NM, "a\n", "..", 997, NULL},
    /* BDAT: nothing is stuffed, every octet counts */
    {true, RJ, "", "", 998, ""},
    {true, RJ, "", "", 999, NULL},
    {true, RJ, "", ".", 997, "."},
    {true, RJ, "", ".", 998, NULL},
    {true, RJ, "", "..", 996, ".."},
    {true, RJ, "", "..", 997, NULL},
    {true, NM, "Subject: t\r\n", "", 998, ""},
    {true, NM, "Subject: t\r\n", "", 999, NULL},
};

static void test_text_line_boundary(void **state)
{
    char *in = malloc(BUF_MAX);
    char *want = malloc(BUF_MAX);
    struct result *r = malloc(sizeof(*r));

    (void)state;
    assert_non_null(in);
    assert_non_null(want);
    assert_non_null(r);
    for (size_t i = 0; i < sizeof(boundary_cases) / sizeof(boundary_cases[0]); i++) {
        const struct boundary_case *c = &boundary_cases[i];
        size_t n = 0, w = 0;

        /* The first line as it comes out: a bare LF is normalised to CRLF. */
        for (const char *p = c->first; *p; p++) {
            in[n++] = *p;
            if (*p == '\n' && (p == c->first || p[-1] != '\r')) {
                want[w++] = '\r';
            }
            want[w++] = *p;
        }
        memcpy(in + n, c->lead, strlen(c->lead));
        n += strlen(c->lead);
        memset(in + n, 'x', c->nx);
        n += c->nx;
        memcpy(in + n, "\r\n", 2);
        n += 2;
        if (c->want_lead != NULL) {
            memcpy(want + w, c->want_lead, strlen(c->want_lead));
            w += strlen(c->want_lead);
            memset(want + w, 'x', c->nx);
            w += c->nx;
            memcpy(want + w, "\r\n", 2);
            w += 2;
        }
        if (!c->raw) {
            memcpy(in + n, ".\r\n", 3);
            n += 3;
        }
        raw_mode = c->raw;
        check_splits(in, n, SMTP_TEXT_LINE_MAX, c->bare, r);
        raw_mode = false;
        if (!r->done || r->consumed != n || r->err != (c->want_lead != NULL ? 0 : HF_ELONGLINE) ||
            (c->want_lead != NULL && (r->out_len != w || memcmp(r->out, want, w) != 0))) {
            print_error("boundary case %zu: done %d err %d consumed %zu/%zu out %zu/%zu\n", i,
                        r->done, r->err, r->consumed, n, r->out_len, w);
            fail();
        }
    }
    free(r);
    free(want);
    free(in);
}

/* Raw mode (BDAT chunks, RFC 3030 2): every octet is content. A dot line, CRLF.CRLF and
 * commands after it are stored, never acted on; bare CR / LF are judged as in DATA; a last
 * line without CRLF is kept as it is. */
static const struct data_case raw_cases[] = {
    {"", RJ, 1000, "", ALL, true, 0, false},
    {"abc", RJ, 1000, "abc", ALL, true, 0, false},
    {"a\r\n.\r\nMAIL FROM:<x@evil.test>\r\n", RJ, 1000, "a\r\n.\r\nMAIL FROM:<x@evil.test>\r\n",
     ALL, true, 0, false},
    {".\r\n", RJ, 1000, ".\r\n", ALL, true, 0, false},
    {"..\r\n..x\r\n", RJ, 1000, "..\r\n..x\r\n", ALL, true, 0, false},
    {"\r\n.\r\n", RJ, 1000, "\r\n.\r\n", ALL, true, 0, false},
    {"a\nb\r\n", RJ, 1000, NULL, ALL, true, HF_EBARELF, false},
    {"a\nb\r\n", NM, 1000, "a\r\nb\r\n", ALL, true, 0, false},
    {"a\rb", RJ, 1000, NULL, ALL, true, HF_EBARELF, false},
    {"a\rb", NM, 1000, "a\r\nb", ALL, true, 0, false},
    {"abc\r", RJ, 1000, NULL, ALL, true, HF_EBARELF, false}, /* a CR ends the content */
    {"abc\r", NM, 1000, "abc\r\n", ALL, true, 0, false},
    {"\r", NM, 1000, "\r\n", ALL, true, 0, false},
    {"a\r\r\n", NM, 1000, "a\r\n\r\n", ALL, true, 0, false},
    {"a\n.\nMAIL FROM:<x@evil.test>\r\n", RJ, 1000, NULL, ALL, true, HF_EBARELF, false},
    {"a\n.\nb\r\n", NM, 1000, "a\r\n.\r\nb\r\n", ALL, true, 0, false},
    {"caf\xc3\xa9\r\n", RJ, 1000, "caf\xc3\xa9\r\n", ALL, true, 0, true},
    {"12345678\r\n", RJ, 10, "12345678\r\n", ALL, true, 0, false},
    {"123456789\r\n", RJ, 10, NULL, ALL, true, HF_ELONGLINE, false},
    {".2345678\r\n", RJ, 10, ".2345678\r\n", ALL, true, 0, false},
    {"..2345678\r\n", RJ, 10, NULL, ALL, true, HF_ELONGLINE, false},
    {"1234567890", RJ, 10, "1234567890", ALL, true, 0, false}, /* no CRLF: 10 octets so far */
    {"12345678901", RJ, 10, NULL, ALL, true, HF_ELONGLINE, false},
};

static void test_raw_cases(void **state)
{
    struct result *whole = malloc(sizeof(*whole));

    (void)state;
    assert_non_null(whole);
    raw_mode = true;
    for (size_t i = 0; i < sizeof(raw_cases) / sizeof(raw_cases[0]); i++) {
        const struct data_case *c = &raw_cases[i];
        size_t len = strlen(c->in);

        check_splits(c->in, len, c->max_line, c->bare, whole);
        if (whole->done != c->done || whole->err != c->err || whole->consumed != len ||
            whole->eight_bit != c->eight_bit ||
            (c->err == 0 && (whole->out_len != strlen(c->out) ||
                             memcmp(whole->out, c->out, whole->out_len) != 0))) {
            print_error("raw case %zu: done %d err %d consumed %zu eight %d out_len %zu\n", i,
                        whole->done, whole->err, whole->consumed, whole->eight_bit, whole->out_len);
            fail();
        }
    }
    raw_mode = false;
    free(whole);
}

/* A NUL passes through raw mode too. */
static void test_raw_nul(void **state)
{
    static const char in[] = "a\0b\r\n\0";
    struct result *r = malloc(sizeof(*r));

    (void)state;
    assert_non_null(r);
    raw_mode = true;
    check_splits(in, sizeof(in) - 1, 1000, RJ, r);
    raw_mode = false;
    assert_int_equal(r->err, 0);
    assert_int_equal(r->out_len, 6);
    assert_memory_equal(r->out, "a\0b\r\n\0", 6);
    free(r);
}

/* ---- Reference decoder, whole buffer at once, written from the RFC's line view ---- */

struct ref {
    char out[256];
    size_t out_len;
    size_t consumed;
    bool done;
    bool err;
    bool eight_bit;
};

static void ref_decode(const char *in, size_t len, size_t max_line, enum smtp_data_bare bare,
                       struct ref *r)
{
    size_t body_end = len;
    size_t start = 0;

    memset(r, 0, sizeof(*r));
    r->consumed = len;
    for (size_t p = 0; p + 3 <= len; p++) {
        if (memcmp(in + p, ".\r\n", 3) == 0 &&
            (p == 0 || (p >= 2 && in[p - 2] == '\r' && in[p - 1] == '\n'))) {
            r->done = true;
            body_end = p;
            r->consumed = p + 3;
            break;
        }
    }
    for (size_t i = 0; i < r->consumed; i++) {
        if ((unsigned char)in[i] >= 0x80) {
            r->eight_bit = true;
        }
    }
    if (!r->done) {
        return; /* only complete messages are compared with the reference */
    }
    while (start < body_end) {
        /* Every CR LF pair is a real line end. */
        size_t e = start;
        while (!(in[e] == '\r' && in[e + 1] == '\n')) {
            e++;
        }
        size_t seg = 0; /* octets of the counted line, CRLF included */
        size_t c = start;
        if (in[c] == '.') {
            c++; /* RFC 5321 4.5.2 */
        }
        for (size_t k = start; k < e + 2; k++) {
            if (k == start && in[k] == '.') {
                continue; /* RFC 5321 4.5.3.1.6: the transparency dot is not counted */
            }
            seg++;
            if (max_line != 0 && seg > max_line) {
                r->err = true;
            }
            if (k < e && (in[k] == '\r' || in[k] == '\n')) {
                if (bare == SMTP_DATA_BARE_REJECT) {
                    r->err = true;
                } else {
                    seg = 0;
                }
            }
        }
        for (; c < e; c++) {
            if (in[c] == '\r' || in[c] == '\n') {
                r->out[r->out_len++] = '\r';
                r->out[r->out_len++] = '\n';
            } else {
                r->out[r->out_len++] = in[c];
            }
        }
        r->out[r->out_len++] = '\r';
        r->out[r->out_len++] = '\n';
        start = e + 2;
    }
}

/* The raw-mode reference: every CR LF pair is a line end, any other CR or LF is bare. */
static void ref_decode_raw(const char *in, size_t len, size_t max_line, enum smtp_data_bare bare,
                           struct ref *r)
{
    size_t seg = 0;

    memset(r, 0, sizeof(*r));
    r->consumed = len;
    r->done = true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x80) {
            r->eight_bit = true;
        }
        if (c == '\r' && i + 1 < len && in[i + 1] == '\n') {
            seg += 2;
            if (max_line != 0 && seg > max_line) {
                r->err = true;
            }
            r->out[r->out_len++] = '\r';
            r->out[r->out_len++] = '\n';
            seg = 0;
            i++;
            continue;
        }
        seg++;
        if (max_line != 0 && seg > max_line) {
            r->err = true;
        }
        if (c == '\r' || c == '\n') {
            if (bare == SMTP_DATA_BARE_REJECT) {
                r->err = true;
            }
            r->out[r->out_len++] = '\r';
            r->out[r->out_len++] = '\n';
            seg = 0;
        } else {
            r->out[r->out_len++] = (char)c;
        }
    }
}

/* Every string of up to 7 octets over {CR, LF, '.', 0x80}, as is and followed by a real
 * end and a next command; whole, byte by byte, at every split point and every pair of
 * split points; both bare modes, DATA and raw (BDAT); with and without a tight line limit. */
static void test_exhaustive(void **state)
{
    static const char alpha[4] = {'\r', '\n', '.', '\x80'};
    struct result *whole = malloc(sizeof(*whole));
    struct result *r = malloc(sizeof(*r));
    struct ref ref;
    char in[32];
    unsigned long runs = 0;

    (void)state;
    assert_non_null(whole);
    assert_non_null(r);
    for (size_t len = 0; len <= 7; len++) {
        size_t count = 1;
        for (size_t k = 0; k < len; k++) {
            count *= 4;
        }
        for (size_t idx = 0; idx < count; idx++) {
            size_t v = idx;
            for (size_t k = 0; k < len; k++) {
                in[k] = alpha[v % 4];
                v /= 4;
            }
            for (int tail = 0; tail < 2; tail++) {
                size_t n = len;
                if (tail) {
                    memcpy(in + len, "\r\n.\r\nQ", 6);
                    n += 6;
                }
                for (int mode = 0; mode < 4; mode++) {
                    enum smtp_data_bare bare = (mode & 1) ? NM : RJ;
                    raw_mode = (mode & 2) != 0;
                    for (int lim = 0; lim < 2; lim++) {
                        size_t max_line = lim ? 4 : 0;
                        check_splits(in, n, max_line, bare, whole);
                        if (raw_mode) {
                            ref_decode_raw(in, n, max_line, bare, &ref);
                        } else {
                            ref_decode(in, n, max_line, bare, &ref);
                        }
                        if (whole->done != ref.done || whole->consumed != ref.consumed ||
                            whole->eight_bit != ref.eight_bit ||
                            (ref.done &&
                             ((whole->err != 0) != ref.err ||
                              (!ref.err && (whole->out_len != ref.out_len ||
                                            memcmp(whole->out, ref.out, ref.out_len) != 0))))) {
                            print_error("len %zu idx %zu tail %d mode %d lim %d: reference "
                                        "differs (done %d/%d consumed %zu/%zu err %d/%d)\n",
                                        len, idx, tail, mode, lim, whole->done, ref.done,
                                        whole->consumed, ref.consumed, whole->err, ref.err);
                            fail();
                        }
                        if (tail || raw_mode) {
                            assert_true(whole->done);
                        }
                        /* Three pieces. */
                        for (size_t a = 0; a <= n && n <= 8; a++) {
                            for (size_t b = a; b <= n; b++) {
                                size_t cuts[2] = {a, b};
                                run_split(in, n, max_line, bare, cuts, 2, r);
                                assert_same(whole, r, "three pieces", a * 100 + b);
                                runs++;
                            }
                        }
                        runs += n + 2;
                    }
                    raw_mode = false;
                }
            }
        }
    }
    assert_true(runs > 100000);
    free(r);
    free(whole);
}

static void test_init_and_empty(void **state)
{
    struct smtp_data d;
    char out[8];
    size_t olen = 99;

    (void)state;
    smtp_data_init(&d, 1000, NM);
    assert_false(d.done);
    assert_int_equal(d.err, 0);
    assert_int_equal(d.bytes_out, 0);
    assert_false(d.eight_bit);
    assert_int_equal(smtp_data_feed(&d, "", 0, out, &olen), 0);
    assert_int_equal(olen, 0);
    /* The worst case for the output bound: ".CR" held back, then a bare CR. */
    assert_int_equal(smtp_data_feed(&d, ".\r", 2, out, &olen), 2);
    assert_int_equal(olen, 0);
    assert_int_equal(smtp_data_feed(&d, "\r", 1, out, &olen), 1);
    assert_int_equal(olen, SMTP_DATA_OUT_MAX(1));
    assert_memory_equal(out, "\r\n\r", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),          cmocka_unit_test(test_nul),
        cmocka_unit_test(test_long_lines),     cmocka_unit_test(test_exhaustive),
        cmocka_unit_test(test_init_and_empty), cmocka_unit_test(test_text_line_boundary),
        cmocka_unit_test(test_raw_cases),      cmocka_unit_test(test_raw_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
