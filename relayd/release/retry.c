/* Retry schedule: exponential backoff with a ceiling, like Postfix's
 * minimal_backoff_time/maximal_backoff_time. ETRN and relayctl flush ignore it: an explicit
 * request means now. */
#include "retry.h"

int64_t retry_next(uint32_t attempts, int64_t now)
{
    int64_t delay = RETRY_FIRST;
    for (uint32_t i = 1; i < attempts && delay < RETRY_MAX; i++)
        delay *= 2;
    if (delay > RETRY_MAX)
        delay = RETRY_MAX;
    return now + delay;
}
