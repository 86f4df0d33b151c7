/* Unit tests of the queue's due index (queue.h: queue_set_due_fn, queue_scan_due,
 * QUEUE_OP_RESCHEDULE) and of queue_commit (new messages and updates in one transaction),
 * on a real LMDB environment in a mkdtemp() directory: the index follows every change of a
 * recipient, survives a reopen (a restart resumes the schedule), drops stale entries, and a
 * tick with nothing due among 100,000 held recipients is timed (printed, not asserted). */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hf_err.h"
#include "queue.h"
#include "queue_rec.h"

#define T0 1796608382 /* arrival of every message here */

struct fx {
    char dir[64];
    struct queue *q;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The due function of these tests: the next attempt when one is set, else a "lifecycle"
 * event 1000 s after arrival (2000 s once warned), and now for a failed recipient. */
static int64_t test_due(const struct queue_rcpt *r, int64_t arrival, void *arg)
{
    (void)arg;
    if (r->state == QUEUE_RS_FAILED)
        return 0;
    int64_t ev = arrival + (r->warned ? 2000 : 1000);
    return r->next_attempt && r->next_attempt < ev ? r->next_attempt : ev;
}

static void fx_open(struct fx *f)
{
    queue_close(f->q);
    f->q = NULL;
    assert_int_equal(queue_open(f->dir, 0, 64u << 20, 0, &f->q), 0);
    queue_set_due_fn(f->q, test_due, NULL);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/hf-test-due-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    fx_open(f);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    queue_close(f->q);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static struct queue_new_msg *mk_msg(struct queue *q, size_t nrcpt, const char *domain)
{
    struct queue_new_msg *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->env.id = queue_id_next(q);
    m->env.arrival = T0;
    m->env.size = 16;
    snprintf(m->env.sender, sizeof(m->env.sender), "s@sender.test");
    m->nrcpt = nrcpt;
    m->env.nrcpt = (uint32_t)nrcpt;
    m->rcpts = calloc(nrcpt, sizeof(*m->rcpts));
    assert_non_null(m->rcpts);
    for (size_t i = 0; i < nrcpt; i++) {
        snprintf(m->rcpts[i].addr, sizeof(m->rcpts[i].addr), "u%zu@%s", i, domain);
        snprintf(m->rcpts[i].domain, sizeof(m->rcpts[i].domain), "%s", domain);
    }
    m->body_len = 16;
    m->body = malloc(16);
    assert_non_null(m->body);
    memcpy(m->body, "Subject: x\r\n\r\nx\n", 16);
    return m;
}

static uint64_t put(struct queue *q, size_t nrcpt, const char *domain)
{
    struct queue_new_msg *m = mk_msg(q, nrcpt, domain);
    assert_int_equal(queue_put_batch(q, &m, 1), 0);
    uint64_t id = m->env.id;
    queue_new_msg_free(m);
    return id;
}

struct due_ent {
    int64_t due;
    uint64_t id;
    uint32_t idx;
    bool have;
};

struct due_list {
    size_t n;
    struct due_ent v[64];
};

static int collect_due(int64_t due, uint64_t id, uint32_t idx, const struct queue_rcpt *r,
                       void *arg)
{
    struct due_list *l = arg;
    assert_true(l->n < 64);
    if (r) {
        assert_int_equal(r->id, id);
        assert_int_equal(r->idx, idx);
        assert_int_equal(r->due, due);
    }
    l->v[l->n++] = (struct due_ent){due, id, idx, r != NULL};
    return 0;
}

static struct due_list scan(struct queue *q, int64_t now)
{
    struct due_list l = {0};
    assert_int_equal(queue_scan_due(q, now, 1000, collect_due, &l), 0);
    return l;
}

static void apply1(struct queue *q, enum queue_op op, uint64_t id, uint32_t idx, int64_t when,
                   int64_t next, int want)
{
    struct queue_update u;
    memset(&u, 0, sizeof(u));
    u.op = op;
    u.id = id;
    u.idx = idx;
    u.when = when;
    u.next_attempt = next;
    assert_int_equal(queue_apply(q, &u, 1), 0);
    assert_int_equal(u.result, want);
}

/* ---- cases ------------------------------------------------------------------------------ */

static void test_index_follows_changes(void **state)
{
    struct fx *f = *state;
    uint64_t a = put(f->q, 2, "a.test");
    uint64_t b = put(f->q, 1, "b.test");
    /* All three at arrival + 1000, in (time, id, idx) order; nothing before. */
    assert_int_equal(scan(f->q, T0 + 999).n, 0);
    struct due_list l = scan(f->q, T0 + 1000);
    assert_int_equal(l.n, 3);
    static const struct {
        int k;
        uint32_t idx;
    } order[] = {{0, 0}, {0, 1}, {1, 0}};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(l.v[i].due, T0 + 1000);
        assert_int_equal(l.v[i].id, order[i].k ? b : a);
        assert_int_equal(l.v[i].idx, order[i].idx);
        assert_true(l.v[i].have);
    }

    /* Each kind of change moves (or removes) exactly its recipient's entry. */
    static const struct {
        enum queue_op op;
        uint32_t idx;
        int64_t next;
        int64_t want_due; /* -1: gone */
    } steps[] = {
        {QUEUE_OP_DEFERRED, 0, T0 + 300, T0 + 300},   /* a retry before the event */
        {QUEUE_OP_DEFERRED, 0, T0 + 5000, T0 + 1000}, /* the event comes first */
        {QUEUE_OP_WARNED, 0, 0, T0 + 2000},           /* warned: the next event */
        {QUEUE_OP_REQUEUE_MSG, 0, 0, T0 + 2000},      /* next_attempt 0: the event */
        {QUEUE_OP_FAILED, 0, 0, 0},                   /* failed: now */
        {QUEUE_OP_BOUNCED, 0, 0, -1},                 /* gone */
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        apply1(f->q, steps[i].op, a, steps[i].idx, T0, steps[i].next, 0);
        l = scan(f->q, INT64_MAX);
        bool found = false;
        for (size_t j = 0; j < l.n; j++)
            if (l.v[j].id == a && l.v[j].idx == 0) {
                assert_false(found); /* one entry per recipient */
                found = true;
                if (l.v[j].due != steps[i].want_due)
                    fail_msg("step %zu: due %" PRId64 ", want %" PRId64, i, l.v[j].due - T0,
                             steps[i].want_due - T0);
            }
        assert_int_equal(found, steps[i].want_due >= 0);
        assert_int_equal(l.n, steps[i].want_due >= 0 ? 3 : 2);
    }
    /* A whole message deleted takes its entries; delivering the last one too. */
    apply1(f->q, QUEUE_OP_DELETE_MSG, b, 0, 0, 0, 0);
    apply1(f->q, QUEUE_OP_DELIVERED, a, 1, 0, 0, 0);
    assert_int_equal(scan(f->q, INT64_MAX).n, 0);
    /* Rescheduling something gone drops the entry it names, and says so. */
    apply1(f->q, QUEUE_OP_RESCHEDULE, a, 1, T0 + 1000, 0, -ENOENT);
}

/* A restart resumes the schedule: the index is on disk, not rebuilt to "now". */
static void test_reopen_keeps_schedule(void **state)
{
    struct fx *f = *state;
    uint64_t a = put(f->q, 3, "a.test");
    apply1(f->q, QUEUE_OP_DEFERRED, a, 1, T0, T0 + 600, 0);
    struct due_list before = scan(f->q, INT64_MAX);
    fx_open(f);
    struct due_list after = scan(f->q, INT64_MAX);
    assert_int_equal(before.n, 3);
    assert_int_equal(after.n, 3);
    assert_memory_equal(before.v, after.v, 3 * sizeof(before.v[0]));
    assert_int_equal(after.v[0].due, T0 + 600); /* the deferred one first */
    assert_int_equal(scan(f->q, T0 + 599).n, 0);
    /* Read-only readers (relayctl) see it too. */
    struct queue *ro;
    assert_int_equal(queue_open(f->dir, QUEUE_O_RDONLY, 0, 0, &ro), 0);
    struct due_list l = {0};
    assert_int_equal(queue_scan_due(ro, INT64_MAX, 1000, collect_due, &l), 0);
    assert_int_equal(l.n, 3);
    queue_close(ro);
    /* max bounds a tick's work. */
    l.n = 0;
    assert_int_equal(queue_scan_due(f->q, INT64_MAX, 2, collect_due, &l), 0);
    assert_int_equal(l.n, 2);
}

/* queue_commit: a DSN and the removal of what it reports on, together or not at all. */
static void test_commit_together(void **state)
{
    struct fx *f = *state;
    uint64_t a = put(f->q, 2, "a.test");
    struct queue_new_msg *dsn = mk_msg(f->q, 1, "sender.test");
    struct queue_update u[2];
    memset(u, 0, sizeof(u));
    u[0].op = QUEUE_OP_BOUNCED;
    u[0].id = a;
    u[0].idx = 0;
    u[1] = u[0];
    u[1].idx = 1;
    /* A message the store refuses (no recipients): nothing of the commit happens. */
    struct queue_new_msg *bad = mk_msg(f->q, 1, "sender.test");
    bad->nrcpt = 0;
    struct queue_new_msg *msgs[2] = {dsn, bad};
    assert_int_equal(queue_commit(f->q, msgs, 2, u, 2), -EINVAL);
    struct queue_totals t;
    assert_int_equal(queue_totals(f->q, &t), 0);
    assert_int_equal(t.messages, 1);
    assert_int_equal(t.rcpts, 2);
    queue_new_msg_free(bad);
    /* Good: both recipients gone, the DSN stored and indexed, in one transaction. */
    assert_int_equal(queue_commit(f->q, msgs, 1, u, 2), 0);
    assert_int_equal(u[0].result, 0);
    assert_int_equal(u[1].result, 0);
    assert_int_equal(queue_totals(f->q, &t), 0);
    assert_int_equal(t.messages, 1);
    assert_int_equal(t.rcpts, 1);
    struct queue_env env;
    assert_int_equal(queue_get_env(f->q, a, &env), -ENOENT);
    assert_int_equal(queue_get_env(f->q, dsn->env.id, &env), 0);
    struct due_list l = scan(f->q, INT64_MAX);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].id, dsn->env.id);
    queue_new_msg_free(dsn);
}

/* The record's optional due field and the index key, at their boundaries. */
static void test_record_due(void **state)
{
    (void)state;
    static const int64_t dues[] = {0, 1, T0, INT64_MAX};
    for (size_t i = 0; i < sizeof(dues) / sizeof(dues[0]); i++) {
        struct queue_rcpt r;
        memset(&r, 0, sizeof(r));
        snprintf(r.addr, sizeof(r.addr), "a@b.test");
        snprintf(r.domain, sizeof(r.domain), "b.test");
        r.due = dues[i];
        r.warned = i % 2;
        struct queue_rec_buf b = {0};
        assert_int_equal(queue_rec_rcpt_encode(&r, &b), 0);
        unsigned char k[QUEUE_REC_RKEY_MAX];
        size_t kl = queue_rec_rcpt_key(k, "test.b.", 7, 5, 6);
        struct queue_rcpt out;
        assert_int_equal(queue_rec_rcpt_decode(k, kl, b.p, b.len, &out), 0);
        assert_int_equal(out.due, dues[i]);
        assert_int_equal(out.warned, r.warned);
        /* Anything but 0 or 8 trailing octets is damage. */
        for (size_t extra = 1; extra < 10; extra++) {
            unsigned char *v = calloc(1, b.len + extra);
            assert_non_null(v);
            memcpy(v, b.p, b.len);
            int want = (dues[i] == 0 && extra == 8) ? 0 : HF_ECORRUPT;
            if (queue_rec_rcpt_decode(k, kl, v, b.len + extra, &out) != want)
                fail_msg("due %zu extra %zu", i, extra);
            free(v);
        }
        queue_rec_buf_free(&b);
        unsigned char dk[QUEUE_REC_DUEKEY_LEN];
        queue_rec_due_key(dk, dues[i], 77, 3);
        int64_t d;
        uint64_t id;
        uint32_t idx;
        assert_int_equal(queue_rec_due_key_parse(dk, sizeof(dk), &d, &id, &idx), 0);
        assert_int_equal(d, dues[i]);
        assert_int_equal(id, 77);
        assert_int_equal(idx, 3);
        assert_int_equal(queue_rec_due_key_parse(dk, sizeof(dk) - 1, &d, &id, &idx), HF_ECORRUPT);
    }
    /* The domain record's optional warned_at (the postmaster's expiry warning). */
    static const int64_t warned[] = {0, 1, T0};
    for (size_t i = 0; i < sizeof(warned) / sizeof(warned[0]); i++) {
        struct queue_domain_stats d = {.messages = 1, .rcpts = 2, .oldest = T0};
        snprintf(d.domain, sizeof(d.domain), "b.test");
        d.warned_at = warned[i];
        struct queue_rec_buf b = {0};
        assert_int_equal(queue_rec_dom_encode(&d, &b), 0);
        struct queue_domain_stats out;
        assert_int_equal(queue_rec_dom_decode(b.p, b.len, &out), 0);
        assert_int_equal(out.warned_at, warned[i]);
        assert_int_equal(queue_rec_dom_decode(b.p, b.len - 1, &out), HF_ECORRUPT);
        queue_rec_buf_free(&b);
    }
    unsigned char dk[QUEUE_REC_DUEKEY_LEN];
    memset(dk, 0xff, sizeof(dk));
    int64_t d;
    uint64_t id;
    uint32_t idx;
    assert_int_equal(queue_rec_due_key_parse(dk, sizeof(dk), &d, &id, &idx), HF_ECORRUPT);
}

static int count_due(int64_t due, uint64_t id, uint32_t idx, const struct queue_rcpt *r, void *arg)
{
    (void)due;
    (void)id;
    (void)idx;
    (void)r;
    (*(size_t *)arg)++;
    return 0;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* 100,000 held recipients, none due: a tick is one seek. The figure is printed for README
 * (timing is not asserted); what is asserted is that the tick touches nothing. */
static void test_100k_idle_tick(void **state)
{
    struct fx *f = *state;
    enum { MSGS = 1000, PER = 100 };
    struct queue_new_msg *batch[100];
    for (size_t m = 0; m < MSGS; m += 100) {
        for (size_t i = 0; i < 100; i++)
            batch[i] = mk_msg(f->q, PER, i % 2 ? "held.test" : "backup.test");
        assert_int_equal(queue_put_batch(f->q, batch, 100), 0);
        for (size_t i = 0; i < 100; i++)
            queue_new_msg_free(batch[i]);
    }
    struct queue_totals t;
    assert_int_equal(queue_totals(f->q, &t), 0);
    assert_int_equal(t.rcpts, MSGS * PER);
    enum { TICKS = 2000 };
    size_t touched = 0;
    double best = 1e18, t0 = now_us();
    for (int i = 0; i < TICKS; i++) {
        double s = now_us();
        assert_int_equal(queue_scan_due(f->q, T0 + 999, 10000, count_due, &touched), 0);
        double e = now_us() - s;
        best = e < best ? e : best;
    }
    double avg = (now_us() - t0) / TICKS;
    assert_int_equal(touched, 0);
    printf("due index: idle tick with %d held recipients: %.1f us average, %.1f us best "
           "(%d ticks)\n",
           MSGS * PER, avg, best, TICKS);
    /* And when they all come due, a tick is bounded by max. */
    assert_int_equal(queue_scan_due(f->q, T0 + 1000, 10000, count_due, &touched), 0);
    assert_int_equal(touched, 10000);
}

#define TF(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TF(test_index_follows_changes),    TF(test_reopen_keeps_schedule), TF(test_commit_together),
        cmocka_unit_test(test_record_due), TF(test_100k_idle_tick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
