/* Unit tests for fetchd/backoff.c: the retry schedule (30 s doubling to 15 min), its
 * ceiling, the deterministic downward jitter and the edges (attempt 0, huge attempts,
 * base 0, ceiling below base, jitter over 100 %). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>

#include <cmocka.h>

#include "backoff.h"

static const struct backoff sched = {.base_ms = 30000, .max_ms = 900000, .jitter_pct = 20};

static void test_schedule_without_jitter(void **state)
{
    (void)state;
    static const struct {
        unsigned attempt;
        uint64_t ms;
    } cases[] = {
        /* { attempt, delay with rnd = 0 } */
        {0, 30000},  {1, 30000},   {2, 60000},   {3, 120000},
        {4, 240000}, {5, 480000},  {6, 900000}, /* 960000 capped */
        {7, 900000}, {64, 900000}, {65, 900000}, {UINT_MAX, 900000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(backoff_delay_ms(&sched, cases[i].attempt, 0), cases[i].ms);
}

static void test_jitter_is_deterministic_and_downward(void **state)
{
    (void)state;
    static const struct {
        unsigned attempt;
        uint32_t rnd;
        uint64_t ms;
    } cases[] = {
        /* attempt 1: delay 30000, spread 6000, cut = rnd % 6001 */
        {1, 6000, 24000},
        {1, 6001, 30000},
        {1, 1, 29999},
        {1, 12003, 29999},
        /* attempt 6: delay 900000 (the ceiling), spread 180000 */
        {6, 180000, 720000},
        {6, 180001, 900000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(backoff_delay_ms(&sched, cases[i].attempt, cases[i].rnd), cases[i].ms);
}

static void test_bounds_hold_for_any_rnd(void **state)
{
    (void)state;
    uint32_t x = 12345;
    for (unsigned a = 1; a < 80; a++) {
        uint64_t full = backoff_delay_ms(&sched, a, 0);
        for (int k = 0; k < 200; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            uint64_t d = backoff_delay_ms(&sched, a, x);
            assert_true(d <= full);
            assert_true(d >= full - full / 5);
            assert_true(d <= sched.max_ms);
        }
    }
}

static void test_edges(void **state)
{
    (void)state;
    /* base 0 is taken as 1 ms; the result is never 0. */
    struct backoff b = {.base_ms = 0, .max_ms = 0, .jitter_pct = 100};
    assert_int_equal(backoff_delay_ms(&b, 1, 0), 1);
    assert_int_equal(backoff_delay_ms(&b, 1, UINT32_MAX), 1);
    /* A ceiling below the base: the base is the ceiling. */
    b = (struct backoff){.base_ms = 5000, .max_ms = 1000, .jitter_pct = 0};
    assert_int_equal(backoff_delay_ms(&b, 1, 77), 5000);
    assert_int_equal(backoff_delay_ms(&b, 9, 77), 5000);
    /* Jitter above 100 % is 100 %: never 0, never above the delay. */
    b = (struct backoff){.base_ms = 1000, .max_ms = 8000, .jitter_pct = 250};
    assert_int_equal(backoff_delay_ms(&b, 2, 2000), 1); /* cut 2000 of 2000 -> 0 -> 1 */
    assert_int_equal(backoff_delay_ms(&b, 2, 2001), 2000);
    /* Huge values do not overflow. */
    b = (struct backoff){.base_ms = UINT64_MAX / 3, .max_ms = UINT64_MAX, .jitter_pct = 0};
    assert_int_equal(backoff_delay_ms(&b, 1, 0), UINT64_MAX / 3);
    assert_int_equal(backoff_delay_ms(&b, 2, 0), UINT64_MAX / 3 * 2);
    assert_int_equal(backoff_delay_ms(&b, 3, 0), UINT64_MAX);
    assert_int_equal(backoff_delay_ms(&b, UINT_MAX, 0), UINT64_MAX);
    b.jitter_pct = 100;
    assert_true(backoff_delay_ms(&b, 3, UINT32_MAX) >= UINT64_MAX - UINT32_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_without_jitter),
        cmocka_unit_test(test_jitter_is_deterministic_and_downward),
        cmocka_unit_test(test_bounds_hold_for_any_rnd),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
