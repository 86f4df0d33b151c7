/* Retry schedule: exponential backoff with a ceiling, like Postfix's
 * minimal_backoff_time/maximal_backoff_time, plus jitter; queue lifetime and the delay
 * warning; which reports NOTIFY asks for. ETRN and relayctl flush ignore the retry
 * schedule: an explicit request means now. */
#include "retry.h"

#include "smtp_cmd.h"

static int64_t retry_delay(uint32_t attempts)
{
    int64_t delay = RETRY_FIRST;
    for (uint32_t i = 1; i < attempts && delay < RETRY_MAX; i++)
        delay *= 2;
    if (delay > RETRY_MAX)
        delay = RETRY_MAX;
    return delay;
}

int64_t retry_next(uint32_t attempts, int64_t now)
{
    return now + retry_delay(attempts);
}

int64_t retry_next_jittered(uint32_t attempts, int64_t now, uint32_t rnd)
{
    int64_t delay = retry_delay(attempts);
    int64_t span = delay * RETRY_JITTER / 100; /* +-span */
    int64_t off = span > 0 ? (int64_t)(rnd % (uint32_t)(2 * span + 1)) - span : 0;
    int64_t d = delay + off;
    return now + (d < 1 ? 1 : d);
}

enum retry_verdict retry_decide(int64_t arrival, bool warned, const struct retry_policy *p,
                                int64_t now, int64_t *next_event)
{
    int64_t expire_at = arrival + p->lifetime;
    bool warn_on = p->warn_after > 0 && p->warn_after < p->lifetime && !warned;
    int64_t warn_at = arrival + p->warn_after;
    if (next_event)
        *next_event = warn_on && warn_at < expire_at && now < warn_at ? warn_at : expire_at;
    if (now >= expire_at)
        return RETRY_EXPIRE;
    if (warn_on && now >= warn_at) {
        if (next_event)
            *next_event = expire_at;
        return RETRY_WARN;
    }
    return RETRY_KEEP;
}

int64_t retry_next_event(int64_t arrival, bool warned, const struct retry_policy *p)
{
    bool warn_on = p->warn_after > 0 && p->warn_after < p->lifetime && !warned;
    return arrival + (warn_on ? p->warn_after : p->lifetime);
}

bool retry_expiry_warning_due(int64_t oldest, const struct retry_policy *p, int64_t period,
                              int64_t warned_at, int64_t now)
{
    if (period <= 0 || oldest <= 0)
        return false;
    int64_t left = oldest + p->lifetime - now;
    if (left > period || left <= 0)
        return false; /* not yet; or expired, and being returned to the senders */
    return warned_at <= 0 || warned_at > now || now - warned_at >= period;
}

bool retry_dsn_wanted(unsigned notify, bool sender_null, enum retry_dsn kind)
{
    if (sender_null || (notify & SMTP_NOTIFY_NEVER))
        return false;
    switch (kind) {
    case RETRY_DSN_FAILURE:
        return notify == 0 || (notify & SMTP_NOTIFY_FAILURE);
    case RETRY_DSN_DELAY:
        return notify == 0 || (notify & SMTP_NOTIFY_DELAY);
    case RETRY_DSN_SUCCESS:
        return (notify & SMTP_NOTIFY_SUCCESS) != 0;
    }
    return false;
}
