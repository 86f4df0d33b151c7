/* A map from 64-bit ids to pointers (open addressing, linear probing, tombstones).
 * Used to match late answers (queue commits, DNS, flush results) to the session that asked:
 * a session that has gone away is simply not found. Pure. */
#ifndef HF_IDMAP_H
#define HF_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap {
    uint64_t *keys;
    void **vals;
    size_t cap;  /* power of two, or 0 */
    size_t n;    /* live entries */
    size_t used; /* live + tombstones */
};

void idmap_init(struct idmap *m);
void idmap_close(struct idmap *m);
/* Inserts or replaces key (key 0 and UINT64_MAX are reserved). Returns 0 or -ENOMEM. */
int idmap_put(struct idmap *m, uint64_t key, void *val);
/* Returns the value or NULL. */
void *idmap_get(const struct idmap *m, uint64_t key);
/* Removes key; returns its value or NULL. */
void *idmap_del(struct idmap *m, uint64_t key);
/* Calls fn for every entry. fn may idmap_del() entries (the table is not rebuilt meanwhile)
 * but must not idmap_put(). */
void idmap_each(struct idmap *m, void (*fn)(uint64_t key, void *val, void *arg), void *arg);

#endif
