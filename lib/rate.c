/* Fixed-window rate limiting in a direct-mapped table (see rate.h). */
#include "rate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int rate_init(struct rate *r, size_t cap)
{
    size_t c = 16;
    while (c < cap)
        c *= 2;
    r->keys = calloc(c, sizeof(*r->keys));
    r->window = calloc(c, sizeof(*r->window));
    r->count = calloc(c, sizeof(*r->count));
    r->cap = c;
    if (!r->keys || !r->window || !r->count) {
        rate_close(r);
        return -ENOMEM;
    }
    return 0;
}

void rate_close(struct rate *r)
{
    free(r->keys);
    free(r->window);
    free(r->count);
    memset(r, 0, sizeof(*r));
}

static size_t rate_slot(const struct rate *r, uint64_t key)
{
    return (size_t)(key * 0x9e3779b97f4a7c15ULL >> 32) & (r->cap - 1);
}

bool rate_exceeded(const struct rate *r, uint64_t key, int64_t now, uint32_t limit)
{
    if (!r->cap)
        return false;
    size_t i = rate_slot(r, key);
    return r->keys[i] == key && r->window[i] == now / 60 && r->count[i] >= limit;
}

bool rate_take(struct rate *r, uint64_t key, int64_t now, uint32_t limit)
{
    if (!r->cap)
        return true;
    size_t i = rate_slot(r, key);
    int64_t win = now / 60;
    if (r->keys[i] != key || r->window[i] != win) {
        r->keys[i] = key;
        r->window[i] = win;
        r->count[i] = 0;
    }
    if (r->count[i] >= limit)
        return false;
    r->count[i]++;
    return true;
}

uint64_t rate_key(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h == 0 || h == UINT64_MAX ? 1 : h;
}
