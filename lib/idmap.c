/* Open-addressing id map with linear probing; grows at 50% load including tombstones. */
#include "idmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define IDMAP_EMPTY 0
#define IDMAP_TOMB  UINT64_MAX

static size_t idmap_hash(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

void idmap_init(struct idmap *m)
{
    memset(m, 0, sizeof(*m));
}

void idmap_close(struct idmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

/* Rebuilds the table at the smallest power of two (>= 64) that keeps the live entries at
 * most half full: it doubles when the entries grew, and only clears tombstones (same or
 * smaller size) when deletions left them behind, so put/del cycles stay bounded. */
static int idmap_grow(struct idmap *m)
{
    size_t cap = 64;
    while ((m->n + 1) * 2 > cap)
        cap *= 2;
    uint64_t *keys = calloc(cap, sizeof(*keys));
    void **vals = calloc(cap, sizeof(*vals));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t k = m->keys[i];
        if (k == IDMAP_EMPTY || k == IDMAP_TOMB)
            continue;
        size_t j = idmap_hash(k, cap);
        while (keys[j] != IDMAP_EMPTY)
            j = (j + 1) & (cap - 1);
        keys[j] = k;
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->used = m->n;
    return 0;
}

int idmap_put(struct idmap *m, uint64_t key, void *val)
{
    if (key == IDMAP_EMPTY || key == IDMAP_TOMB)
        return -EINVAL;
    if ((m->used + 1) * 2 > m->cap) {
        int rc = idmap_grow(m);
        if (rc < 0)
            return rc;
    }
    size_t i = idmap_hash(key, m->cap);
    size_t tomb = SIZE_MAX;
    while (m->keys[i] != IDMAP_EMPTY) {
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return 0;
        }
        if (m->keys[i] == IDMAP_TOMB && tomb == SIZE_MAX)
            tomb = i;
        i = (i + 1) & (m->cap - 1);
    }
    if (tomb != SIZE_MAX)
        i = tomb;
    else
        m->used++;
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return 0;
}

static size_t idmap_find(const struct idmap *m, uint64_t key)
{
    if (!m->cap || key == IDMAP_EMPTY || key == IDMAP_TOMB)
        return SIZE_MAX;
    size_t i = idmap_hash(key, m->cap);
    while (m->keys[i] != IDMAP_EMPTY) {
        if (m->keys[i] == key)
            return i;
        i = (i + 1) & (m->cap - 1);
    }
    return SIZE_MAX;
}

void *idmap_get(const struct idmap *m, uint64_t key)
{
    size_t i = idmap_find(m, key);
    return i == SIZE_MAX ? NULL : m->vals[i];
}

void *idmap_del(struct idmap *m, uint64_t key)
{
    size_t i = idmap_find(m, key);
    if (i == SIZE_MAX)
        return NULL;
    void *v = m->vals[i];
    m->keys[i] = IDMAP_TOMB;
    m->vals[i] = NULL;
    m->n--;
    return v;
}

void idmap_each(struct idmap *m, void (*fn)(uint64_t key, void *val, void *arg), void *arg)
{
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t k = m->keys[i];
        if (k != IDMAP_EMPTY && k != IDMAP_TOMB)
            fn(k, m->vals[i], arg);
    }
}
