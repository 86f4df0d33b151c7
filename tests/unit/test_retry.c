/* Unit tests for retry.c: the backoff sequence and its ceiling, jitter bounds, expiry and
 * delay-warning decisions driven by a clock of the test's own, and which reports NOTIFY
 * asks for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "retry.h"
#include "smtp_cmd.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

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
    for (size_t i = 0; i < N(cases); i++)
        assert_int_equal(retry_next(cases[i].attempts, 1000000) - 1000000, cases[i].delay);
}

/* Jitter stays within +-10 %, reaches both ends, and spreads values. */
static void test_jitter(void **state)
{
    (void)state;
    static const struct {
        uint32_t attempts, rnd;
        int64_t delay;
    } cases[] = {
        {1, 0, 270},      /* -30 s */
        {1, 60, 330},     /* 2*30: the top */
        {1, 30, 300},     /* the middle */
        {1, 61, 270},     /* wraps */
        {7, 0, 12960},    /* 14400 - 1440 */
        {7, 2880, 15840}, /* 14400 + 1440 */
        {2, UINT32_MAX, 600 - 60 + (int64_t)(UINT32_MAX % 121)},
    };
    for (size_t i = 0; i < N(cases); i++)
        assert_int_equal(retry_next_jittered(cases[i].attempts, 5000, cases[i].rnd) - 5000,
                         cases[i].delay);
    int64_t lo = INT64_MAX, hi = 0;
    for (uint32_t r = 0; r < 100000; r += 7) {
        int64_t d = retry_next_jittered(3, 0, r * 2654435761u);
        assert_true(d >= 1080 && d <= 1320);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_int_equal(lo, 1080);
    assert_int_equal(hi, 1320);
}

/* Expiry and the one delay warning, on a clock the test moves. */
static void test_decide(void **state)
{
    (void)state;
    const int64_t A = 1796608382; /* arrival */
    static const struct {
        int64_t lifetime, warn_after, age;
        bool warned;
        enum retry_verdict want;
        int64_t next; /* relative to arrival */
    } cases[] = {
        /* 5 days, warn at 4 h */
        {432000, 14400, 0, false, RETRY_KEEP, 14400},
        {432000, 14400, 14399, false, RETRY_KEEP, 14400},
        {432000, 14400, 14400, false, RETRY_WARN, 432000}, /* the boundary: warn */
        {432000, 14400, 14400, true, RETRY_KEEP, 432000},  /* once only */
        {432000, 14400, 431999, true, RETRY_KEEP, 432000},
        {432000, 14400, 432000, true, RETRY_EXPIRE, 432000},  /* the boundary: expire */
        {432000, 14400, 432000, false, RETRY_EXPIRE, 432000}, /* expiry wins */
        {432000, 14400, 999999, false, RETRY_EXPIRE, 432000},
        /* warnings off */
        {432000, 0, 14400, false, RETRY_KEEP, 432000},
        {432000, 0, 432000, false, RETRY_EXPIRE, 432000},
        /* a warning time at or past the lifetime never warns */
        {3600, 3600, 3599, false, RETRY_KEEP, 3600},
        {3600, 7200, 3600, false, RETRY_EXPIRE, 3600},
        /* 28 days for a hold domain */
        {2419200, 14400, 432000, true, RETRY_KEEP, 2419200},
        /* clock behind the arrival (stepped back) */
        {432000, 14400, -100, false, RETRY_KEEP, 14400},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct retry_policy p = {cases[i].lifetime, cases[i].warn_after};
        int64_t next = 0;
        enum retry_verdict v = retry_decide(A, cases[i].warned, &p, A + cases[i].age, &next);
        if (v != cases[i].want || next != A + cases[i].next)
            fail_msg("case %zu: verdict %d next %lld, want %d %lld", i, (int)v,
                     (long long)(next - A), (int)cases[i].want, (long long)cases[i].next);
        assert_int_equal(retry_decide(A, cases[i].warned, &p, A + cases[i].age, NULL), v);
        /* The due index's time: the warning while it is owed, else the expiry. */
        int64_t ev = retry_next_event(A, cases[i].warned, &p);
        bool warn_owed =
            !cases[i].warned && cases[i].warn_after > 0 && cases[i].warn_after < cases[i].lifetime;
        assert_int_equal(ev - A, warn_owed ? cases[i].warn_after : cases[i].lifetime);
    }
}

/* The postmaster's expiry warning: within the period before the oldest expires, once per
 * period. */
static void test_expiry_warning_due(void **state)
{
    (void)state;
    const int64_t O = 1796608382;              /* the oldest arrival */
    const struct retry_policy p = {432000, 0}; /* 5 days */
    static const struct {
        int64_t oldest_rel, period, warned_rel, now_rel; /* relative to O; warned 0: never */
        bool want;
    } cases[] = {
        {0, 86400, 0, 345599, false},      /* 1 s before the window */
        {0, 86400, 0, 345600, true},       /* the window opens: 4 days in */
        {0, 86400, 0, 431999, true},       /* 1 s before expiry, not yet warned */
        {0, 86400, 0, 432000, false},      /* expired: being bounced, no warning */
        {0, 86400, 345600, 345600, false}, /* just warned */
        {0, 86400, 345600, 431999, false}, /* within the period */
        {0, 172800, 259199, 431999, true}, /* 2-day period, a period later */
        {0, 86400, 999999, 400000, true},  /* warned "in the future": clock stepped back */
        {0, 0, 0, 431999, false},          /* period 0: never */
        {-O, 86400, 0, 345600, false},     /* nothing held (oldest 0) */
        {100000, 86400, 0, 345600, false}, /* a younger oldest: not yet */
    };
    for (size_t i = 0; i < N(cases); i++) {
        int64_t warned = cases[i].warned_rel ? O + cases[i].warned_rel : 0;
        bool got = retry_expiry_warning_due(O + cases[i].oldest_rel, &p, cases[i].period, warned,
                                            O + cases[i].now_rel);
        if (got != cases[i].want)
            fail_msg("case %zu: %d", i, got);
    }
}

static void test_dsn_wanted(void **state)
{
    (void)state;
    static const struct {
        unsigned notify;
        bool null_sender;
        bool failure, delay, success;
    } cases[] = {
        {0, false, true, true, false}, /* absent: FAILURE,DELAY */
        {SMTP_NOTIFY_NEVER, false, false, false, false},
        {SMTP_NOTIFY_SUCCESS, false, false, false, true},
        {SMTP_NOTIFY_FAILURE, false, true, false, false},
        {SMTP_NOTIFY_DELAY, false, false, true, false},
        {SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, false, true, false, true},
        {SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, false, true, true, true},
        {0, true, false, false, false}, /* null sender: never */
        {SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, true, false, false, false},
    };
    for (size_t i = 0; i < N(cases); i++) {
        assert_int_equal(retry_dsn_wanted(cases[i].notify, cases[i].null_sender, RETRY_DSN_FAILURE),
                         cases[i].failure);
        assert_int_equal(retry_dsn_wanted(cases[i].notify, cases[i].null_sender, RETRY_DSN_DELAY),
                         cases[i].delay);
        assert_int_equal(retry_dsn_wanted(cases[i].notify, cases[i].null_sender, RETRY_DSN_SUCCESS),
                         cases[i].success);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule),   cmocka_unit_test(test_jitter),
        cmocka_unit_test(test_decide),     cmocka_unit_test(test_expiry_warning_due),
        cmocka_unit_test(test_dsn_wanted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
