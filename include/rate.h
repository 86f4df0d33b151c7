/* A fixed-window rate limiter: at most `limit` events per key per 60-second window, in a
 * table of bounded size. Used for ETRN (per client, per domain) and for failed AUTH (per
 * client). Pure: the caller passes the time.
 *
 * The table is direct-mapped: a key whose slot another key took starts a fresh window, so
 * under pressure the limiter errs towards allowing, never towards refusing a stranger. */
#ifndef HF_RATE_H
#define HF_RATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rate {
    uint64_t *keys;
    int64_t *window;
    uint32_t *count;
    size_t cap; /* slots, a power of two */
};

/* Allocates at least cap slots (rounded up to a power of two, at least 16). Returns 0 or
 * -ENOMEM (then r is empty and rate_take always allows). */
int rate_init(struct rate *r, size_t cap);
void rate_close(struct rate *r);

/* Counts one event for key at time now (unix seconds). Returns true if it is within the
 * limit; false (and nothing counted) once limit events were counted in this window. */
bool rate_take(struct rate *r, uint64_t key, int64_t now, uint32_t limit);

/* True if key has used up its limit in the current window; counts nothing. */
bool rate_exceeded(const struct rate *r, uint64_t key, int64_t now, uint32_t limit);

/* The key of a string (FNV-1a), never 0 or UINT64_MAX, so it is also a valid idmap key. */
uint64_t rate_key(const char *s);

#endif
