/* Unit tests for retry.c: the backoff sequence and its ceiling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "retry.h"

static void test_schedule(void **state)
{
    (void)state;
    static const struct {
        uint32_t attempts;
        int64_t delay;
    } cases[] = {
        {0, 300},  {1, 300},   {2, 600},   {3, 1200},     {4, 2400},           {5, 4800},
        {6, 9600}, {7, 14400}, {8, 14400}, {1000, 14400}, {UINT32_MAX, 14400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(retry_next(cases[i].attempts, 1000000) - 1000000, cases[i].delay);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_schedule)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
