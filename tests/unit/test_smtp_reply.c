/* Unit tests for smtp_reply.c: reply formatting (enhanced codes, continuation lines,
 * CR/LF injection, buffer sizes), multi-line reply parsing (mismatched codes, malformed
 * lines, enhanced codes, truncation) and EHLO keyword lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include "smtp_reply.h"
#include "hf_err.h"

static void test_fmt(void **state)
{
    char buf[256];

    (void)state;
    assert_int_equal(smtp_reply_fmt(buf, sizeof(buf), 250, "2.0.0", false, "OK"), 14);
    assert_string_equal(buf, "250 2.0.0 OK\r\n");
    assert_int_equal(smtp_reply_fmt(buf, sizeof(buf), 220, NULL, false, "relay.test ESMTP"), 22);
    assert_string_equal(buf, "220 relay.test ESMTP\r\n");
    assert_true(smtp_reply_fmt(buf, sizeof(buf), 250, NULL, true, "relay.test") > 0);
    assert_string_equal(buf, "250-relay.test\r\n");
    assert_true(smtp_reply_fmt(buf, sizeof(buf), 250, "", true, "PIPELINING") > 0);
    assert_string_equal(buf, "250-PIPELINING\r\n");
    assert_true(smtp_reply_fmt(buf, sizeof(buf), 550, "5.7.1", false, "<%s> relay denied",
                               "a@evil.test") > 0);
    assert_string_equal(buf, "550 5.7.1 <a@evil.test> relay denied\r\n");
    assert_true(smtp_reply_fmt(buf, sizeof(buf), 452, "4.5.3", true, "%d recipients", 100) > 0);
    assert_string_equal(buf, "452-4.5.3 100 recipients\r\n");
    /* Empty text: "Reply-code [ SP textstring ]". */
    assert_int_equal(smtp_reply_fmt(buf, sizeof(buf), 250, NULL, false, "%s", ""), 5);
    assert_string_equal(buf, "250\r\n");
    assert_int_equal(smtp_reply_fmt(buf, sizeof(buf), 250, NULL, true, "%s", ""), 6);
    assert_string_equal(buf, "250-\r\n");
    assert_int_equal(smtp_reply_fmt(buf, sizeof(buf), 250, "2.0.0", false, "%s", ""), 11);
    assert_string_equal(buf, "250 2.0.0\r\n");
}

static void test_fmt_injection(void **state)
{
    char buf[256];

    (void)state;
    /* A peer's string with CR LF cannot add a line of its own. */
    assert_true(
        smtp_reply_fmt(buf, sizeof(buf), 250, "2.1.0", false, "<%s> ok", "x>\r\n250 2.0.0 <y") > 0);
    assert_string_equal(buf, "250 2.1.0 <x>??250 2.0.0 <y> ok\r\n");
    assert_true(smtp_reply_fmt(buf, sizeof(buf), 501, NULL, false, "%s", "a\nb\rc\x01\x7f\td") > 0);
    assert_string_equal(buf, "501 a?b?c??\td\r\n");
    assert_null(memchr(buf, '\n', strlen(buf) - 1));
}

static void test_fmt_space(void **state)
{
    static const char want[] = "250 2.0.0 Queued as 4F2A9C01D3E5\r\n";
    char buf[64];

    (void)state;
    /* Every size below the full line (with its NUL) is -ENOSPC, exactly enough fits. */
    for (size_t sz = 0; sz < sizeof(want); sz++) {
        int rc = smtp_reply_fmt(buf, sz, 250, "2.0.0", false, "Queued as %s", "4F2A9C01D3E5");
        if (rc != -ENOSPC) {
            print_error("size %zu: %d\n", sz, rc);
            fail();
        }
    }
    assert_int_equal(
        smtp_reply_fmt(buf, sizeof(want), 250, "2.0.0", false, "Queued as %s", "4F2A9C01D3E5"),
        (int)sizeof(want) - 1);
    assert_string_equal(buf, want);
    /* Same without an enhanced code, and with empty text. */
    assert_int_equal(smtp_reply_fmt(buf, 5, 250, NULL, false, "%s", ""), -ENOSPC);
    assert_int_equal(smtp_reply_fmt(buf, 6, 250, NULL, false, "%s", ""), 5);
    assert_int_equal(smtp_reply_fmt(buf, 10, 250, "2.0.0", false, "%s", ""), -ENOSPC);
    assert_int_equal(smtp_reply_fmt(buf, 11, 250, "2.0.0", false, "%s", ""), -ENOSPC);
    assert_int_equal(smtp_reply_fmt(buf, 12, 250, "2.0.0", false, "%s", ""), 11);
}

/* One reply: its lines, what each feed returns, and the result. */
struct reply_case {
    const char *lines[5];
    int rcs[5];
    int code;
    const char *enh;
    const char *text;
    size_t nlines;
    bool done;
};

static const struct reply_case reply_cases[] = {
    {{"250 OK"}, {1}, 250, "", "OK", 1, true},
    {{"250 2.1.0 Sender ok"}, {1}, 250, "2.1.0", "2.1.0 Sender ok", 1, true},
    {{"550 5.1.1 <x@y> no such user"}, {1}, 550, "5.1.1", "5.1.1 <x@y> no such user", 1, true},
    {{"451 4.3.0 try later"}, {1}, 451, "4.3.0", "4.3.0 try later", 1, true},
    {{"250 2.1.0"}, {1}, 250, "2.1.0", "2.1.0", 1, true},
    {{"250 2.123.456 x"}, {1}, 250, "2.123.456", "2.123.456 x", 1, true},
    {{"250 5.1.1 wrong class"}, {1}, 250, "", "5.1.1 wrong class", 1, true},
    {{"250 3.1.1 x"}, {1}, 250, "", "3.1.1 x", 1, true},
    {{"250 2.1 x"}, {1}, 250, "", "2.1 x", 1, true},
    {{"250 2.1.0x"}, {1}, 250, "", "2.1.0x", 1, true},
    {{"250 2.1000.0 x"}, {1}, 250, "", "2.1000.0 x", 1, true},
    {{"250 2..0 x"}, {1}, 250, "", "2..0 x", 1, true},
    {{"250"}, {1}, 250, "", "", 1, true},
    {{"250 "}, {1}, 250, "", "", 1, true},
    {{"220 relay.test ESMTP ready"}, {1}, 220, "", "relay.test ESMTP ready", 1, true},
    {{"354 go ahead"}, {1}, 354, "", "go ahead", 1, true},
    {{"599 x"}, {1}, 599, "", "x", 1, true},
    {{"200 x"}, {1}, 200, "", "x", 1, true},
    {{"250 a\x01"
      "b\tc\x7f"},
     {1},
     250,
     "",
     "a?b\tc?",
     1,
     true},
    /* multi-line */
    {{"250-relay.test", "250-PIPELINING", "250 SIZE 1000"},
     {0, 0, 1},
     250,
     "",
     "relay.test\nPIPELINING\nSIZE 1000",
     3,
     true},
    {{"550-5.7.1 first", "550-5.7.1 second", "550 5.7.1 third"},
     {0, 0, 1},
     550,
     "5.7.1",
     "5.7.1 first\n5.7.1 second\n5.7.1 third",
     3,
     true},
    {{"250-", "250 x"}, {0, 1}, 250, "", "\nx", 2, true},
    {{"250-a", "250-b"}, {0, 0}, 250, "", "a\nb", 2, false},
    /* malformed lines and mismatched codes: HF_EPROTO, and the reply so far is kept */
    {{"250-a", "251 b"}, {0, HF_EPROTO}, 250, "", "a", 1, false},
    {{"250-a", "550 b"}, {0, HF_EPROTO}, 250, "", "a", 1, false},
    {{"250-a", "250x"}, {0, HF_EPROTO}, 250, "", "a", 1, false},
    {{"250-a", "", "250 b"}, {0, HF_EPROTO, 1}, 250, "", "a\nb", 2, true},
    {{""}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"25"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"2500 x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"250x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"250_x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"250\tx"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"abc def"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"2a0 x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{" 250 x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"199 x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"100 x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"600 x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"099 x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"-250 x"}, {HF_EPROTO}, 0, "", "", 0, false},
    {{"HTTP/1.1 400 Bad Request"}, {HF_EPROTO}, 0, "", "", 0, false},
};

static void test_feed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
        const struct reply_case *c = &reply_cases[i];
        struct smtp_reply r;
        smtp_reply_init(&r);
        for (size_t k = 0; k < 5 && c->lines[k] != NULL; k++) {
            int rc = smtp_reply_feed(&r, c->lines[k], strlen(c->lines[k]));
            if (rc != c->rcs[k]) {
                print_error("case %zu line %zu \"%s\": %d want %d\n", i, k, c->lines[k], rc,
                            c->rcs[k]);
                fail();
            }
        }
        if (r.code != c->code || r.nlines != c->nlines || r.done != c->done ||
            strcmp(r.enh, c->enh) != 0 || strcmp(r.text, c->text) != 0) {
            print_error("case %zu: code %d nlines %zu done %d enh \"%s\" text \"%s\"\n", i, r.code,
                        r.nlines, r.done, r.enh, r.text);
            fail();
        }
    }
}

static void test_feed_next_reply(void **state)
{
    struct smtp_reply r;

    (void)state;
    smtp_reply_init(&r);
    assert_int_equal(smtp_reply_feed(&r, "250-a", 5), 0);
    assert_int_equal(smtp_reply_feed(&r, "250 b", 5), 1);
    /* A malformed line after a complete reply leaves it intact. */
    assert_int_equal(smtp_reply_feed(&r, "xyz", 3), HF_EPROTO);
    assert_true(r.done);
    assert_string_equal(r.text, "a\nb");
    /* The next line starts the next reply, whatever its code. */
    assert_int_equal(smtp_reply_feed(&r, "354 go ahead", 12), 1);
    assert_int_equal(r.code, 354);
    assert_int_equal(r.nlines, 1);
    assert_string_equal(r.text, "go ahead");
    /* len bounds the line. */
    assert_int_equal(smtp_reply_feed(&r, "221 2.0.0 Bye\r\nJUNK", 13), 1);
    assert_string_equal(r.text, "2.0.0 Bye");
    assert_string_equal(r.enh, "2.0.0");
}

static void test_feed_truncation(void **state)
{
    struct smtp_reply r;
    char line[600];

    (void)state;
    smtp_reply_init(&r);
    /* 100 continuation lines of 400 octets: text is cut at the buffer, silently. */
    memcpy(line, "250-", 4);
    memset(line + 4, 'x', 396);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(smtp_reply_feed(&r, line, 400), 0);
    }
    assert_int_equal(smtp_reply_feed(&r, "250 last", 8), 1);
    assert_int_equal(r.nlines, 101);
    assert_int_equal(strlen(r.text), sizeof(r.text) - 1);
    assert_false(smtp_reply_has_ext(&r, "last", NULL));
    /* One very long line (longer than the text buffer). */
    smtp_reply_init(&r);
    char big[3000];
    memcpy(big, "250 ", 4);
    memset(big + 4, 'y', sizeof(big) - 4);
    assert_int_equal(smtp_reply_feed(&r, big, sizeof(big)), 1);
    assert_int_equal(strlen(r.text), sizeof(r.text) - 1);
}

static const char *const ehlo[] = {
    "250-relay.test Hello client.test [192.0.2.1]",
    "250-PIPELINING",
    "250-SIZE 10240000",
    "250-8BITMIME",
    "250-AUTH PLAIN LOGIN",
    "250-ETRN",
    "250-enhancedstatuscodes",
    "250-X-EXT  spaced  params",
    "250-STARTTLS",
    "250 SMTPUTF8",
};

static void feed_ehlo(struct smtp_reply *r)
{
    size_t n = sizeof(ehlo) / sizeof(ehlo[0]);

    smtp_reply_init(r);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(smtp_reply_feed(r, ehlo[i], strlen(ehlo[i])), i + 1 == n ? 1 : 0);
    }
}

struct ext_case {
    const char *kw;
    bool has;
    const char *param; /* the rest of the line up to '\n' */
};

static const struct ext_case ext_cases[] = {
    {"PIPELINING", true, ""},
    {"pipelining", true, ""},
    {"SIZE", true, "10240000"},
    {"size", true, "10240000"},
    {"8BITMIME", true, ""},
    {"AUTH", true, "PLAIN LOGIN"},
    {"ETRN", true, ""},
    {"ENHANCEDSTATUSCODES", true, ""},
    {"X-EXT", true, "spaced  params"},
    {"STARTTLS", true, ""},
    {"SMTPUTF8", true, ""},
    {"SIZ", false, NULL},
    {"SIZE1", false, NULL},
    {"PLAIN", false, NULL},
    {"LOGIN", false, NULL},
    {"relay.test", false, NULL}, /* the greeting line is not a keyword */
    {"250", false, NULL},
    {"CHUNKING", false, NULL},
    {"", false, NULL},
};

static void test_has_ext(void **state)
{
    struct smtp_reply r;

    (void)state;
    feed_ehlo(&r);
    for (size_t i = 0; i < sizeof(ext_cases) / sizeof(ext_cases[0]); i++) {
        const struct ext_case *c = &ext_cases[i];
        const char *param = NULL;
        bool has = smtp_reply_has_ext(&r, c->kw, &param);
        if (has != c->has) {
            print_error("ext case %zu \"%s\"\n", i, c->kw);
            fail();
        }
        if (has) {
            assert_non_null(param);
            size_t n = strcspn(param, "\n");
            if (n != strlen(c->param) || memcmp(param, c->param, n) != 0) {
                print_error("ext case %zu \"%s\": param \"%.*s\"\n", i, c->kw, (int)n, param);
                fail();
            }
        }
        assert_int_equal(smtp_reply_has_ext(&r, c->kw, NULL), c->has);
    }
}

static void test_has_ext_not_250(void **state)
{
    struct smtp_reply r;

    (void)state;
    smtp_reply_init(&r);
    assert_int_equal(smtp_reply_feed(&r, "550-nope", 8), 0);
    assert_int_equal(smtp_reply_feed(&r, "550 STARTTLS", 12), 1);
    assert_false(smtp_reply_has_ext(&r, "STARTTLS", NULL));
    /* A single-line EHLO reply advertises nothing. */
    smtp_reply_init(&r);
    assert_int_equal(smtp_reply_feed(&r, "250 STARTTLS", 12), 1);
    assert_false(smtp_reply_has_ext(&r, "STARTTLS", NULL));
    /* Only the first 64 lines are looked at. */
    smtp_reply_init(&r);
    for (int i = 0; i < 70; i++) {
        char l[32];
        int n = snprintf(l, sizeof(l), "250-X%d", i);
        assert_int_equal(smtp_reply_feed(&r, l, (size_t)n), 0);
    }
    assert_int_equal(smtp_reply_feed(&r, "250 END", 7), 1);
    assert_true(smtp_reply_has_ext(&r, "X63", NULL));
    assert_false(smtp_reply_has_ext(&r, "X64", NULL));
    assert_false(smtp_reply_has_ext(&r, "END", NULL));
}

static void test_class(void **state)
{
    (void)state;
    assert_int_equal(smtp_reply_class(250), 2);
    assert_int_equal(smtp_reply_class(354), 3);
    assert_int_equal(smtp_reply_class(421), 4);
    assert_int_equal(smtp_reply_class(554), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt),
        cmocka_unit_test(test_fmt_injection),
        cmocka_unit_test(test_fmt_space),
        cmocka_unit_test(test_feed),
        cmocka_unit_test(test_feed_next_reply),
        cmocka_unit_test(test_feed_truncation),
        cmocka_unit_test(test_has_ext),
        cmocka_unit_test(test_has_ext_not_250),
        cmocka_unit_test(test_class),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
