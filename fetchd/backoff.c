/* The retry schedule (see backoff.h): exponential with a ceiling and a downward jitter.
 * The doubling stops as soon as the ceiling is reached, so a huge attempt number costs
 * nothing and cannot overflow. */
#include "backoff.h"

uint64_t backoff_delay_ms(const struct backoff *b, unsigned attempt, uint32_t rnd)
{
    uint64_t base = b->base_ms ? b->base_ms : 1;
    uint64_t max = b->max_ms > base ? b->max_ms : base;
    unsigned jitter = b->jitter_pct > 100 ? 100 : b->jitter_pct;
    uint64_t d = base;
    for (unsigned i = 1; i < attempt && d < max; i++)
        d = d > max / 2 ? max : d * 2;
    if (d > max)
        d = max;
    /* d <= max <= UINT64_MAX; d / 100 * jitter avoids overflowing d * jitter. */
    uint64_t spread = d / 100 * jitter + d % 100 * jitter / 100;
    /* rnd < 2^32: past that spread the modulo is rnd itself (and spread + 1 may wrap). */
    uint64_t cut = spread >= UINT32_MAX ? rnd : (uint64_t)rnd % (spread + 1);
    d -= cut;
    return d ? d : 1;
}
