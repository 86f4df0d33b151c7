/* fetchd's retry schedule for a relay that is down or answers 4xx: a first delay that
 * doubles on every retry up to a ceiling, spread downward by a jitter so that many branch
 * offices whose links came up together do not knock on the relay in step.
 *
 * Pure: no clock and no random source; the caller passes the random value, so tests pin
 * the schedule exactly. The runner (runner.c) arms its timer with the result. */
#ifndef HF_FETCHD_BACKOFF_H
#define HF_FETCHD_BACKOFF_H

#include <stdint.h>

#define BACKOFF_JITTER_PCT 20 /* the default spread: up to 20 % shorter */

struct backoff {
    uint64_t base_ms;    /* the first retry's delay; 0 is taken as 1 */
    uint64_t max_ms;     /* the ceiling; below base_ms, base_ms is the ceiling */
    unsigned jitter_pct; /* 0..100: the delay is cut by up to this share (above 100: 100) */
};

/* Returns the delay before retry number attempt (1 for the first retry; 0 is taken as 1):
 * base_ms * 2^(attempt-1), capped at the ceiling, then shortened by
 * (rnd mod (spread + 1)) where spread = delay * jitter_pct / 100. The result lies in
 * [delay - spread, delay], never 0, never above the ceiling; rnd = 0 gives the unjittered
 * delay. Never overflows, whatever attempt is. */
uint64_t backoff_delay_ms(const struct backoff *b, unsigned attempt, uint32_t rnd);

#endif
