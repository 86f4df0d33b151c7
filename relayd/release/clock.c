/* The lifecycle clock (see clock.h): the system clock, shifted in tests only. */
#include "clock.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static bool clock_test;
static int64_t clock_offset;

int clock_init_from_env(void)
{
    const char *s = getenv("HF_TEST_TIME_OFFSET");
    if (!s)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 10LL * 366 * 86400)
        return -EINVAL;
    clock_test = true;
    clock_offset = v;
    return 0;
}

int64_t clock_now(void)
{
    return (int64_t)time(NULL) + clock_offset;
}

bool clock_is_test(void)
{
    return clock_test;
}

int clock_advance(int64_t secs)
{
    if (!clock_test)
        return -EPERM;
    if (secs < 0 || secs > 10LL * 366 * 86400 || clock_offset > 20LL * 366 * 86400)
        return -EINVAL;
    clock_offset += secs;
    return 0;
}
