/* Unit tests for msghdr.c: finding one header field of a stored message for the log
 * (message-id=): case-insensitive names, the header section ending at the first empty line,
 * folded values unfolded (RFC 5322 2.2.3), whitespace trimmed, CRLF and bare LF line ends,
 * names that only start alike, the first of two fields, and values cut at the buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "msghdr.h"

struct hdr_case {
    const char *msg;
    const char *name;
    int rc;
    const char *value; /* when rc >= 0 */
};

static const struct hdr_case cases[] = {
    /* { message, name, rc, value } */
    {"Subject: a\r\nMessage-ID: <1@x.test>\r\n\r\nbody\r\n", "Message-ID", 10, "<1@x.test>"},
    {"message-id:   <1@x.test>  \r\n\r\n", "Message-ID", 10, "<1@x.test>"}, /* any case, trim */
    {"MESSAGE-ID:<1@x.test>\r\n", "message-id", 10, "<1@x.test>"},          /* no space */
    {"Message-ID:\r\n <1@x.test>\r\n\r\n", "Message-ID", 10, "<1@x.test>"}, /* folded */
    {"Message-ID: <1@\r\n\tx.test>\r\nTo: b\r\n", "Message-ID", 11, "<1@ x.test>"},
    {"Subject: a\r\n  b\r\n\tc\r\n\r\n", "Subject", 5, "a b c"}, /* two folds */
    {"Subject: a \t b\r\n", "Subject", 3, "a b"},                /* one space */
    {"Message-ID: <1@x.test>\nSubject: b\n\nbody\n", "Message-ID", 10, "<1@x.test>"}, /* LF */
    {"Message-ID: <1@x.test>", "Message-ID", 10, "<1@x.test>"}, /* no line end at all */
    {"Message-ID:\r\n\r\n", "Message-ID", 0, ""},               /* empty value */
    {"Message-ID: <a@x>\r\nMessage-ID: <b@x>\r\n\r\n", "Message-ID", 5, "<a@x>"}, /* first */
    {"X-Message-ID: <1@x>\r\nMessage-ID: <2@x>\r\n\r\n", "Message-ID", 5, "<2@x>"},
    {"Subject: a\r\n\r\nMessage-ID: <1@x.test>\r\n", "Message-ID", -1, NULL}, /* in the body */
    {"\r\nMessage-ID: <1@x.test>\r\n", "Message-ID", -1, NULL},  /* empty header section */
    {"Message-IDX: <1@x.test>\r\n\r\n", "Message-ID", -1, NULL}, /* a longer name */
    {"Message-I: <1@x.test>\r\n\r\n", "Message-ID", -1, NULL},   /* a shorter name */
    {"Message-ID <1@x.test>\r\n\r\n", "Message-ID", -1, NULL},   /* no colon */
    {"", "Message-ID", -1, NULL},
};

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct hdr_case *c = &cases[i];
        char out[64];
        memset(out, 'Z', sizeof(out));
        int rc = msghdr_find(c->msg, strlen(c->msg), c->name, out, sizeof(out));
        if (rc != c->rc)
            fail_msg("case %zu (%s): rc %d, want %d", i, c->msg, rc, c->rc);
        if (c->value)
            assert_string_equal(out, c->value);
        else
            assert_string_equal(out, ""); /* not found: out is the empty string */
    }
}

/* A value longer than the buffer is cut, NUL-terminated, and the cut length returned; the
 * bytes after the terminator are untouched. */
static void test_cut_at_cap(void **state)
{
    (void)state;
    const char *m = "Message-ID: <0123456789@x.test>\r\n\r\n";
    char out[8];
    memset(out, 'Z', sizeof(out));
    assert_int_equal(msghdr_find(m, strlen(m), "Message-ID", out, 5), 4);
    assert_string_equal(out, "<012");
    assert_int_equal(out[5], 'Z');
    assert_int_equal(msghdr_find(m, strlen(m), "Message-ID", out, 1), 0);
    assert_string_equal(out, "");
}

/* The length given is obeyed: a field past it is not seen. */
static void test_length_bounds_the_search(void **state)
{
    (void)state;
    const char *m = "Subject: a\r\nMessage-ID: <1@x.test>\r\n\r\n";
    char out[32];
    assert_int_equal(msghdr_find(m, strlen("Subject: a\r\n"), "Message-ID", out, sizeof(out)), -1);
    assert_int_equal(
        msghdr_find(m, strlen("Subject: a\r\nMessage-ID: <1@x"), "Message-ID", out, sizeof(out)),
        4);
    assert_string_equal(out, "<1@x");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_cut_at_cap),
        cmocka_unit_test(test_length_bounds_the_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
