/* Unit tests for tls_cram.c: RFC 2195's own example, the response form, splitting a
 * client's response, and what a bad response is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>

#include <cmocka.h>

#include "cram.h"

/* RFC 2195 section 2: user tim, secret tanstaaftanstaaf. */
static const char CHAL[] = "<1896.697170952@postoffice.reston.mci.net>";
static const char SECRET[] = "tanstaaftanstaaf";
static const char DIGEST[] = "b913a602c7eda7a495b4e6e7334d3890";

static void test_rfc2195_example(void **state)
{
    (void)state;
    char hex[CRAM_HEX_LEN];
    assert_int_equal(cram_md5_hex(SECRET, strlen(SECRET), CHAL, strlen(CHAL), hex), 0);
    assert_string_equal(hex, DIGEST);

    char resp[128];
    assert_int_equal(cram_md5_response("tim", SECRET, strlen(SECRET), CHAL, strlen(CHAL),
                                       resp, sizeof(resp)),
                     0);
    assert_string_equal(resp, "tim b913a602c7eda7a495b4e6e7334d3890");
}

static void test_response_errors(void **state)
{
    (void)state;
    char resp[64];
    assert_int_equal(cram_md5_response("", "s", 1, "c", 1, resp, sizeof(resp)), -EINVAL);
    assert_int_equal(cram_md5_response("a b", "s", 1, "c", 1, resp, sizeof(resp)), -EINVAL);
    assert_int_equal(cram_md5_response("a\tb", "s", 1, "c", 1, resp, sizeof(resp)), -EINVAL);
    /* "tim" + SP + 32 + NUL = 37: 36 octets is one too few. */
    assert_int_equal(cram_md5_response("tim", "s", 1, "c", 1, resp, 36), -ENOSPC);
    assert_int_equal(cram_md5_response("tim", "s", 1, "c", 1, resp, 37), 0);
}

static void test_split_and_check(void **state)
{
    (void)state;
    const char *r = "tim b913a602c7eda7a495b4e6e7334d3890";
    const char *user, *hex;
    size_t ulen;
    assert_int_equal(cram_md5_split(r, strlen(r), &user, &ulen, &hex), 0);
    assert_int_equal(ulen, 3);
    assert_memory_equal(user, "tim", 3);
    assert_true(cram_md5_check(hex, SECRET, strlen(SECRET), CHAL, strlen(CHAL)));
    /* Upper-case hex is the same digest. */
    assert_true(cram_md5_check("B913A602C7EDA7A495B4E6E7334D3890", SECRET, strlen(SECRET),
                               CHAL, strlen(CHAL)));
    /* The wrong secret, another challenge, one digit changed: no. */
    assert_false(cram_md5_check(hex, "tanstaaftanstaag", 16, CHAL, strlen(CHAL)));
    assert_false(cram_md5_check(hex, SECRET, strlen(SECRET), "<1@x>", 5));
    assert_false(cram_md5_check("b913a602c7eda7a495b4e6e7334d3891", SECRET, strlen(SECRET),
                                CHAL, strlen(CHAL)));
    /* A user name may itself hold spaces: the digest follows the last one. */
    const char *r2 = "tim smith b913a602c7eda7a495b4e6e7334d3890";
    assert_int_equal(cram_md5_split(r2, strlen(r2), &user, &ulen, &hex), 0);
    assert_int_equal(ulen, 9);
}

static void test_split_refuses(void **state)
{
    (void)state;
    const char *user, *hex;
    size_t ulen;
    static const char *bad[] = {
        "",
        "tim",                                   /* no space */
        " b913a602c7eda7a495b4e6e7334d3890",     /* empty user */
        "tim b913a602c7eda7a495b4e6e7334d389",   /* 31 digits */
        "tim b913a602c7eda7a495b4e6e7334d38900", /* 33 digits */
        "tim b913a602c7eda7a495b4e6e7334d389g",  /* not hex */
        "tim b913a602c7eda7a495b4e6e7334d3890 ", /* trailing space */
        "t\x01m b913a602c7eda7a495b4e6e7334d3890", /* control octet in the user */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(cram_md5_split(bad[i], strlen(bad[i]), &user, &ulen, &hex), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc2195_example),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_split_and_check),
        cmocka_unit_test(test_split_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
