/* Unit tests for idmap.c: put/get/del, replacing a value, the reserved keys, growth past
 * thousands of keys, tombstone reuse (long put/del cycles must not make the table grow
 * without bound), and random operations checked against a plain array (fixed seed, so a
 * failure is reproducible). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "idmap.h"

/* Distinct non-NULL values that are never dereferenced. */
static char vals[4];
#define V(i) ((void *)&vals[i])

/* Values derived from the key and a generation: odd, so never NULL; never dereferenced. */
static void *val_of(uint64_t k, unsigned gen)
{
    return (void *)(uintptr_t)((k << 4) | ((gen & 7u) << 1) | 1u);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, good enough to pick keys and operations. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static void test_empty(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    assert_int_equal(m.cap, 0);
    assert_int_equal(m.n, 0);
    assert_null(idmap_get(&m, 1));
    assert_null(idmap_get(&m, 0));
    assert_null(idmap_get(&m, UINT64_MAX));
    assert_null(idmap_del(&m, 1));
    assert_null(idmap_del(&m, 0));
    assert_null(idmap_del(&m, UINT64_MAX));
    idmap_close(&m);
    idmap_close(&m); /* closing twice is harmless: close zeroes the struct */
}

static void test_put_get_del(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    assert_int_equal(idmap_put(&m, 1, V(0)), 0);
    assert_int_equal(idmap_put(&m, 2, V(1)), 0);
    assert_int_equal(idmap_put(&m, UINT64_MAX - 1, V(2)), 0);
    assert_int_equal(m.n, 3);
    assert_ptr_equal(idmap_get(&m, 1), V(0));
    assert_ptr_equal(idmap_get(&m, 2), V(1));
    assert_ptr_equal(idmap_get(&m, UINT64_MAX - 1), V(2));
    assert_null(idmap_get(&m, 3));

    /* Replace: same key, new value, no new entry. */
    assert_int_equal(idmap_put(&m, 2, V(3)), 0);
    assert_int_equal(m.n, 3);
    assert_ptr_equal(idmap_get(&m, 2), V(3));
    /* A NULL value is stored like any other (get cannot tell it from absent). */
    assert_int_equal(idmap_put(&m, 7, NULL), 0);
    assert_int_equal(m.n, 4);
    assert_null(idmap_del(&m, 7));
    assert_int_equal(m.n, 3);

    assert_ptr_equal(idmap_del(&m, 2), V(3));
    assert_int_equal(m.n, 2);
    assert_null(idmap_get(&m, 2));
    assert_null(idmap_del(&m, 2)); /* already gone */
    assert_int_equal(m.n, 2);
    assert_ptr_equal(idmap_get(&m, 1), V(0));

    /* Put again after delete. */
    assert_int_equal(idmap_put(&m, 2, V(1)), 0);
    assert_ptr_equal(idmap_get(&m, 2), V(1));
    assert_int_equal(m.n, 3);
    idmap_close(&m);
    assert_int_equal(m.cap, 0);
    assert_null(m.keys);
}

static void test_reserved_keys(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    /* Refused before any allocation. */
    assert_int_equal(idmap_put(&m, 0, V(0)), -EINVAL);
    assert_int_equal(idmap_put(&m, UINT64_MAX, V(0)), -EINVAL);
    assert_int_equal(m.n, 0);
    assert_int_equal(idmap_put(&m, 5, V(1)), 0);
    assert_int_equal(idmap_put(&m, 0, V(0)), -EINVAL);
    assert_int_equal(idmap_put(&m, UINT64_MAX, V(0)), -EINVAL);
    assert_int_equal(m.n, 1);
    /* The reserved keys are the empty and tombstone markers: looking them up must not
     * find a free or deleted slot. */
    assert_null(idmap_get(&m, 0));
    assert_null(idmap_get(&m, UINT64_MAX));
    assert_ptr_equal(idmap_del(&m, 5), V(1));
    assert_null(idmap_get(&m, UINT64_MAX));
    assert_null(idmap_del(&m, UINT64_MAX));
    assert_null(idmap_del(&m, 0));
    assert_int_equal(m.n, 0);
    idmap_close(&m);
}

static void test_growth(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    const uint64_t N = 20000;
    /* Sequential ids (what the daemon uses) and ids that differ only in high bits. */
    for (uint64_t k = 1; k <= N; k++) {
        assert_int_equal(idmap_put(&m, k, val_of(k, 0)), 0);
        assert_int_equal(idmap_put(&m, k << 40, val_of(k << 40, 0)), 0);
        assert_true(m.n * 2 <= m.cap); /* at most half full */
        assert_true((m.cap & (m.cap - 1)) == 0);
    }
    assert_int_equal(m.n, 2 * N);
    for (uint64_t k = 1; k <= N; k++) {
        assert_ptr_equal(idmap_get(&m, k), val_of(k, 0));
        assert_ptr_equal(idmap_get(&m, k << 40), val_of(k << 40, 0));
    }
    assert_null(idmap_get(&m, N + 1));
    /* Delete the odd ones; the even ones stay reachable across the tombstones. */
    for (uint64_t k = 1; k <= N; k += 2)
        assert_ptr_equal(idmap_del(&m, k), val_of(k, 0));
    for (uint64_t k = 1; k <= N; k++)
        if (k % 2)
            assert_null(idmap_get(&m, k));
        else
            assert_ptr_equal(idmap_get(&m, k), val_of(k, 0));
    assert_int_equal(m.n, 2 * N - N / 2);
    idmap_close(&m);
}

/* One live key at a time, 100k different keys: the tombstones left behind must be reused or
 * swept, so the table stays at its smallest size rather than doubling again and again. */
static void test_tombstones_single(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    size_t max_cap = 0;
    for (uint64_t k = 1; k <= 100000; k++) {
        assert_int_equal(idmap_put(&m, k, val_of(k, 0)), 0);
        assert_ptr_equal(idmap_get(&m, k), val_of(k, 0));
        assert_ptr_equal(idmap_del(&m, k), val_of(k, 0));
        assert_int_equal(m.n, 0);
        if (m.cap > max_cap)
            max_cap = m.cap;
    }
    idmap_close(&m);
    print_message("single-key put/del cycles: largest cap %zu\n", max_cap);
    assert_true(max_cap <= 128);
}

/* Batches of 1000 live keys, each batch new keys, 100 rounds (100k keys in all): the
 * capacity needed for 1000 keys is 2048 or 4096; it must not keep doubling. */
static void test_tombstones_batches(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    size_t cap_after_first = 0, max_cap = 0;
    uint64_t next = 1;
    for (int round = 0; round < 100; round++) {
        uint64_t first = next;
        for (int i = 0; i < 1000; i++, next++)
            assert_int_equal(idmap_put(&m, next, val_of(next, 0)), 0);
        assert_int_equal(m.n, 1000);
        for (uint64_t k = first; k < next; k++)
            assert_ptr_equal(idmap_del(&m, k), val_of(k, 0));
        assert_int_equal(m.n, 0);
        if (round == 0)
            cap_after_first = m.cap;
        if (m.cap > max_cap)
            max_cap = m.cap;
    }
    idmap_close(&m);
    print_message("batch put/del cycles: cap after first round %zu, largest %zu\n", cap_after_first,
                  max_cap);
    assert_true(max_cap <= 2 * cap_after_first);
}

/* The same key put and deleted repeatedly reuses its own tombstone. */
static void test_tombstone_same_key(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    assert_int_equal(idmap_put(&m, 42, V(0)), 0);
    size_t cap = m.cap, used = m.used;
    for (int i = 0; i < 100000; i++) {
        assert_ptr_equal(idmap_del(&m, 42), i ? V(1) : V(0));
        assert_int_equal(idmap_put(&m, 42, V(1)), 0);
    }
    assert_int_equal(m.cap, cap);
    assert_int_equal(m.used, used);
    assert_int_equal(m.n, 1);
    idmap_close(&m);
}

/* Reference: a plain array of live (key, value) pairs searched linearly. */
struct ref {
    uint64_t key[4096];
    void *val[4096];
    size_t n;
};

static ssize_t ref_find(const struct ref *r, uint64_t k)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->key[i] == k)
            return (ssize_t)i;
    return -1;
}

static void test_random_vs_reference(void **state)
{
    (void)state;
    static struct ref r;
    struct idmap m;
    idmap_init(&m);
    r.n = 0;
    rng_state = 0x9e3779b97f4a7c15ULL;
    for (unsigned op = 0; op < 200000; op++) {
        uint64_t x = rng();
        /* Keys from a small range so puts, replaces and deletes meet often; some keys
         * share their low bits (k << 32) to make long probe runs. */
        uint64_t k = (x >> 8) % 1500 + 1;
        if ((x >> 20) % 4 == 0)
            k <<= 32;
        unsigned what = (unsigned)(x & 0xff);
        ssize_t i = ref_find(&r, k);
        if (what < 110) { /* put or replace */
            void *v = val_of(k, op);
            assert_int_equal(idmap_put(&m, k, v), 0);
            if (i >= 0) {
                r.val[i] = v;
            } else {
                assert_true(r.n < 4096);
                r.key[r.n] = k;
                r.val[r.n++] = v;
            }
        } else if (what < 200) { /* delete */
            void *got = idmap_del(&m, k);
            if (i >= 0) {
                assert_ptr_equal(got, r.val[i]);
                r.key[i] = r.key[r.n - 1];
                r.val[i] = r.val[r.n - 1];
                r.n--;
            } else {
                assert_null(got);
            }
        } else { /* get */
            void *got = idmap_get(&m, k);
            if (i >= 0)
                assert_ptr_equal(got, r.val[i]);
            else
                assert_null(got);
        }
        assert_int_equal(m.n, r.n);
        assert_true(m.used >= m.n);
        assert_true(m.used * 2 <= m.cap);
        if (op % 20000 == 0) /* every live entry is reachable */
            for (size_t j = 0; j < r.n; j++)
                assert_ptr_equal(idmap_get(&m, r.key[j]), r.val[j]);
    }
    for (size_t j = 0; j < r.n; j++)
        assert_ptr_equal(idmap_get(&m, r.key[j]), r.val[j]);
    idmap_close(&m);
}

struct each_seen {
    struct idmap *m;
    size_t n;
    uint64_t sum;
};

static void each_cb(uint64_t key, void *val, void *arg)
{
    struct each_seen *e = arg;
    assert_int_equal((uintptr_t)val, key * 2);
    e->n++;
    e->sum += key;
    if (key % 2 == 0) /* deleting during the walk is allowed */
        assert_ptr_equal(idmap_del(e->m, key), val);
}

/* idmap_each visits every live entry once, and entries may be removed meanwhile. */
static void test_each(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    struct each_seen e = {&m, 0, 0};
    idmap_each(&m, each_cb, &e); /* empty: nothing */
    assert_int_equal(e.n, 0);
    for (uint64_t k = 1; k <= 500; k++)
        assert_int_equal(idmap_put(&m, k, (void *)(uintptr_t)(k * 2)), 0);
    for (uint64_t k = 1; k <= 100; k++)
        idmap_del(&m, k * 5); /* tombstones are skipped */
    idmap_each(&m, each_cb, &e);
    assert_int_equal(e.n, 400);
    assert_int_equal(e.sum, 500 * 501 / 2 - 5 * 100 * 101 / 2);
    assert_int_equal(m.n, 200); /* the even ones are gone */
    idmap_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_reserved_keys),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_tombstones_single),
        cmocka_unit_test(test_tombstones_batches),
        cmocka_unit_test(test_tombstone_same_key),
        cmocka_unit_test(test_random_vs_reference),
        cmocka_unit_test(test_each),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
