/* Unit tests for rate.c: windows, limits, keys, peeking without counting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rate.h"

static void test_take(void **state)
{
    (void)state;
    struct rate r;
    assert_int_equal(rate_init(&r, 64), 0);
    uint64_t k = rate_key("127.0.0.1");
    for (int i = 0; i < 3; i++)
        assert_true(rate_take(&r, k, 6000, 3));
    assert_false(rate_take(&r, k, 6010, 3));                    /* 4th in the same minute */
    assert_true(rate_take(&r, rate_key("127.0.0.2"), 6010, 3)); /* other key */
    assert_true(rate_take(&r, k, 6060, 3));                     /* next minute */
    rate_close(&r);
}

static void test_exceeded_counts_nothing(void **state)
{
    (void)state;
    struct rate r;
    assert_int_equal(rate_init(&r, 16), 0);
    uint64_t k = rate_key("192.0.2.1");
    for (int i = 0; i < 10; i++)
        assert_false(rate_exceeded(&r, k, 1000, 2)); /* peeking spends nothing */
    assert_true(rate_take(&r, k, 1000, 2));
    assert_false(rate_exceeded(&r, k, 1000, 2));
    assert_true(rate_take(&r, k, 1000, 2));
    assert_true(rate_exceeded(&r, k, 1000, 2));
    assert_false(rate_take(&r, k, 1001, 2));
    assert_false(rate_exceeded(&r, k, 1060, 2)); /* a new window */
    rate_close(&r);
    /* An empty limiter (allocation failed) allows everything. */
    struct rate none = {0};
    assert_true(rate_take(&none, k, 1000, 0));
    assert_false(rate_exceeded(&none, k, 1000, 0));
}

static void test_keys(void **state)
{
    (void)state;
    assert_int_not_equal(rate_key(""), 0);
    assert_int_not_equal(rate_key("a"), rate_key("b"));
    assert_int_equal(rate_key("10.0.0.1"), rate_key("10.0.0.1"));
    for (int i = 0; i < 1000; i++) {
        char s[16];
        s[0] = (char)('a' + i % 26);
        s[1] = (char)('a' + i / 26 % 26);
        s[2] = '\0';
        uint64_t k = rate_key(s);
        assert_true(k != 0 && k != UINT64_MAX);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take),
        cmocka_unit_test(test_exceeded_counts_nothing),
        cmocka_unit_test(test_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
