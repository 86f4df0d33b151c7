/* When to try a deferred recipient again. Pure. */
#ifndef HF_RETRY_H
#define HF_RETRY_H

#include <stdint.h>

#define RETRY_FIRST 300   /* seconds after the first failure */
#define RETRY_MAX   14400 /* never more than 4 hours apart */

/* Returns the unix time of the next attempt for a recipient that has failed attempts times
 * (attempts >= 1, counting the one that just failed) at time now: RETRY_FIRST doubled per
 * further failure, capped at RETRY_MAX (5m, 10m, 20m, 40m, 80m, 160m, 4h, 4h, ...). */
int64_t retry_next(uint32_t attempts, int64_t now);

#endif
