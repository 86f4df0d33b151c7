/* Unit tests of the LMDB queue (relayd/queue/queue_lmdb*.c) on a real environment in a mkdtemp()
 * directory: round trips, ids, domain scans on label boundaries, counters, updates,
 * reopening, damaged and foreign files, read-only opens, a full map and map growth.
 * Hand-made foreign environments are written with mdb_load (lmdb-utils); those cases are
 * skipped when it is not installed. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hf_err.h"
#include "queue.h"

#define MIB (1024u * 1024u)

/* ---- fixtures ------------------------------------------------------------------------- */

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

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/hf-test-queue-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
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

/* A path inside the fixture directory. */
static const char *fx_path(const struct fx *f, const char *name)
{
    static char buf[128];
    snprintf(buf, sizeof(buf), "%s/%s", f->dir, name);
    return buf;
}

static void fx_open(struct fx *f, size_t map, size_t max)
{
    queue_close(f->q);
    f->q = NULL;
    assert_int_equal(queue_open(f->dir, 0, map, max, &f->q), 0);
}

/* Deterministic body octets: message-specific, so a mix-up between bodies shows. */
static char body_octet(uint64_t seed, size_t i)
{
    uint64_t x = (seed + i) * UINT64_C(0x9E3779B97F4A7C15);
    return (char)(x >> 56);
}

/* A message with one recipient per address in rcpts (NULL-terminated). */
static struct queue_new_msg *mk_msg(struct queue *q, const char *sender, const char *const *rcpts,
                                    size_t body_len, int64_t arrival)
{
    struct queue_new_msg *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->env.id = queue_id_next(q);
    m->env.arrival = arrival;
    m->env.size = body_len;
    m->env.flags = QUEUE_F_8BITMIME;
    m->env.ret = SMTP_RET_HDRS;
    snprintf(m->env.envid, sizeof(m->env.envid), "env+2Bid-%" PRIu64, m->env.id);
    snprintf(m->env.sender, sizeof(m->env.sender), "%s", sender);
    snprintf(m->env.client_name, sizeof(m->env.client_name), "mx.sender.test");
    snprintf(m->env.client_addr, sizeof(m->env.client_addr), "192.0.2.7");
    while (rcpts[m->nrcpt])
        m->nrcpt++;
    m->env.nrcpt = (uint32_t)m->nrcpt;
    m->rcpts = calloc(m->nrcpt, sizeof(*m->rcpts));
    assert_non_null(m->rcpts);
    for (size_t i = 0; i < m->nrcpt; i++) {
        struct queue_rcpt *r = &m->rcpts[i];
        r->id = m->env.id;
        r->idx = (uint32_t)i;
        snprintf(r->addr, sizeof(r->addr), "%s", rcpts[i]);
        snprintf(r->domain, sizeof(r->domain), "%s", strchr(rcpts[i], '@') + 1);
        snprintf(r->orcpt, sizeof(r->orcpt), "rfc822;%s", rcpts[i]);
        r->notify = SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
    }
    m->body_len = body_len;
    m->body = malloc(body_len ? body_len : 1);
    assert_non_null(m->body);
    for (size_t i = 0; i < body_len; i++)
        m->body[i] = body_octet(m->env.id, i);
    return m;
}

static int put1(struct queue *q, struct queue_new_msg *m)
{
    return queue_put_batch(q, &m, 1);
}

/* Puts a message and returns its id; the message is freed. */
static uint64_t put_simple(struct queue *q, const char *const *rcpts, size_t body_len,
                           int64_t arrival)
{
    struct queue_new_msg *m = mk_msg(q, "s@sender.test", rcpts, body_len, arrival);
    assert_int_equal(put1(q, m), 0);
    uint64_t id = m->env.id;
    queue_new_msg_free(m);
    return id;
}

/* ---- collectors ----------------------------------------------------------------------- */

struct rcpt_list {
    size_t n;
    struct queue_rcpt r[64];
};

static int collect_rcpt(const struct queue_rcpt *r, void *arg)
{
    struct rcpt_list *l = arg;
    assert_true(l->n < 64);
    l->r[l->n++] = *r;
    return 0;
}

struct body_acc {
    char *buf;
    size_t len, cap;
    size_t calls;
};

static int collect_body(const char *data, size_t len, void *arg)
{
    struct body_acc *b = arg;
    assert_true(b->len + len <= b->cap);
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    b->calls++;
    return 0;
}

/* Checks that id's stored body is exactly the one mk_msg generated. */
static void check_body(struct queue *q, uint64_t id, size_t len)
{
    struct body_acc b = {malloc(len + 1), 0, len, 0};
    assert_non_null(b.buf);
    assert_int_equal(queue_read_body(q, id, collect_body, &b), 0);
    assert_int_equal(b.len, len);
    assert_int_equal(b.calls, (len + QUEUE_CHUNK - 1) / QUEUE_CHUNK);
    for (size_t i = 0; i < len; i++)
        if (b.buf[i] != body_octet(id, i))
            fail_msg("body of %" PRIx64 " differs at %zu", id, i);
    free(b.buf);
}

static struct queue_update upd(enum queue_op op, uint64_t id, uint32_t idx)
{
    struct queue_update u;
    memset(&u, 0, sizeof(u));
    u.op = op;
    u.id = id;
    u.idx = idx;
    u.result = 12345;
    return u;
}

/* ---- round trip ----------------------------------------------------------------------- */

static void test_put_get_roundtrip(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    const char *const rc2[] = {"Alice@Branch.test", "bob@other.test", NULL};
    const char *const rc1[] = {"carol@branch.test", NULL};
    struct queue_new_msg *big = mk_msg(f->q, "s@sender.test", rc2, MIB, 1700000000);
    struct queue_new_msg *zero = mk_msg(f->q, "", rc1, 0, 1700000001);
    struct queue_new_msg *one = mk_msg(f->q, "s@sender.test", rc1, 1, 1700000002);
    struct queue_new_msg *edge = mk_msg(f->q, "s@sender.test", rc1, QUEUE_CHUNK, 1700000003);
    snprintf(big->rcpts[1].last_error, sizeof(big->rcpts[1].last_error), "none yet");
    memset(zero->env.envid, 0, sizeof(zero->env.envid));
    zero->env.flags = QUEUE_F_SMTPUTF8 | QUEUE_F_HELD;
    zero->env.ret = SMTP_RET_NONE;
    struct queue_new_msg *batch[] = {big, zero, one, edge};
    assert_int_equal(queue_put_batch(f->q, batch, 4), 0);

    for (size_t i = 0; i < 4; i++) {
        struct queue_env e;
        assert_int_equal(queue_get_env(f->q, batch[i]->env.id, &e), 0);
        assert_int_equal(e.id, batch[i]->env.id);
        assert_int_equal(e.arrival, batch[i]->env.arrival);
        assert_int_equal(e.size, batch[i]->env.size);
        assert_int_equal(e.flags, batch[i]->env.flags);
        assert_int_equal(e.ret, batch[i]->env.ret);
        assert_string_equal(e.envid, batch[i]->env.envid);
        assert_string_equal(e.sender, batch[i]->env.sender);
        assert_string_equal(e.client_name, batch[i]->env.client_name);
        assert_string_equal(e.client_addr, batch[i]->env.client_addr);
        assert_int_equal(e.nrcpt, batch[i]->nrcpt);
        check_body(f->q, batch[i]->env.id, batch[i]->body_len);

        struct rcpt_list l = {0};
        assert_int_equal(queue_get_rcpts(f->q, batch[i]->env.id, collect_rcpt, &l), 0);
        assert_int_equal(l.n, batch[i]->nrcpt);
        for (size_t j = 0; j < l.n; j++) {
            const struct queue_rcpt *want = &batch[i]->rcpts[j];
            assert_int_equal(l.r[j].id, batch[i]->env.id);
            assert_int_equal(l.r[j].idx, j);
            assert_string_equal(l.r[j].addr, want->addr);
            assert_string_equal(l.r[j].orcpt, want->orcpt);
            assert_int_equal(l.r[j].notify, want->notify);
            assert_int_equal(l.r[j].state, QUEUE_RS_PENDING);
            assert_int_equal(l.r[j].attempts, 0);
            assert_string_equal(l.r[j].last_error, want->last_error);
        }
    }
    /* The domain is stored lower-cased. */
    struct rcpt_list l = {0};
    assert_int_equal(queue_get_rcpts(f->q, big->env.id, collect_rcpt, &l), 0);
    assert_string_equal(l.r[0].domain, "branch.test");
    assert_string_equal(l.r[1].domain, "other.test");

    struct queue_env e;
    assert_int_equal(queue_get_env(f->q, 42, &e), -ENOENT);
    assert_int_equal(queue_get_rcpts(f->q, 42, collect_rcpt, &l), -ENOENT);
    assert_int_equal(queue_read_body(f->q, 42, collect_body, NULL), -ENOENT);
    for (size_t i = 0; i < 4; i++)
        queue_new_msg_free(batch[i]);
}

static int stop_at_first(const char *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    (*(int *)arg)++;
    return 77;
}

static void test_callback_stops_walk(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    const char *const rc[] = {"a@branch.test", NULL};
    uint64_t id = put_simple(f->q, rc, 3 * QUEUE_CHUNK, 1);
    int calls = 0;
    assert_int_equal(queue_read_body(f->q, id, stop_at_first, &calls), 77);
    assert_int_equal(calls, 1);
}

/* ---- ids ------------------------------------------------------------------------------ */

static void test_ids(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    uint64_t prev = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t id = queue_id_next(f->q);
        if (id <= prev)
            fail_msg("id %" PRIx64 " after %" PRIx64 " at call %d", id, prev, i);
        prev = id;
    }
    /* 48 bits of milliseconds: the top of the id is close to the clock. */
    uint64_t now_ms = (uint64_t)time(NULL) * 1000u;
    assert_true((prev >> 16) + 60000 > now_ms && (prev >> 16) < now_ms + 60000);

    /* After a reopen, ids continue above the largest stored one, even one from the future. */
    const char *const rc[] = {"a@branch.test", NULL};
    struct queue_new_msg *m = mk_msg(f->q, "", rc, 10, 1);
    m->env.id = prev + (UINT64_C(3600000) << 16); /* an hour ahead */
    assert_int_equal(put1(f->q, m), 0);
    fx_open(f, 0, 0);
    assert_true(queue_id_next(f->q) > m->env.id);
    queue_new_msg_free(m);
}

static void test_id_text(void **state)
{
    (void)state;
    char buf[QUEUE_ID_STR];
    assert_string_equal(queue_id_str(UINT64_C(0x0123456789ABCDEF), buf), "0123456789ABCDEF");
    assert_string_equal(queue_id_str(0, buf), "0000000000000000");
    static const struct {
        const char *s;
        int rc;
        uint64_t v;
    } cases[] = {
        {"0123456789ABCDEF", 0, UINT64_C(0x0123456789ABCDEF)},
        {"0123456789abcdef", 0, UINT64_C(0x0123456789ABCDEF)},
        {"FFFFFFFFFFFFFFFF", 0, UINT64_MAX},
        {"0123456789ABCDE", -EINVAL, 0},   /* 15 digits */
        {"0123456789ABCDEF0", -EINVAL, 0}, /* 17 digits */
        {"0123456789ABCDEG", -EINVAL, 0},  /* not hex */
        {" 123456789ABCDEF", -EINVAL, 0},  /* blank */
        {"", -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 0;
        assert_int_equal(queue_id_parse(cases[i].s, &v), cases[i].rc);
        if (cases[i].rc == 0)
            assert_int_equal(v, cases[i].v);
    }
}

/* ---- scans ---------------------------------------------------------------------------- */

static void test_scan_domains_and_boundaries(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    const char *const r1[] = {"a@branch.test", "b@sub.branch.test", "c@badbranch.test", NULL};
    const char *const r2[] = {"d@BRANCH.test", "e@other.test", "f@deep.sub.branch.test", NULL};
    uint64_t id1 = put_simple(f->q, r1, 100, 10);
    uint64_t id2 = put_simple(f->q, r2, 100, 20);

    static const struct {
        const char *domain;
        bool sub;
        const char *want; /* addresses in scan order */
    } cases[] = {
        {"branch.test", false, "a@branch.test d@BRANCH.test"},
        {"Branch.Test", false, "a@branch.test d@BRANCH.test"},
        {"branch.test", true,
         "a@branch.test d@BRANCH.test b@sub.branch.test f@deep.sub.branch.test"},
        {"sub.branch.test", true, "b@sub.branch.test f@deep.sub.branch.test"},
        {"sub.branch.test", false, "b@sub.branch.test"},
        {"badbranch.test", true, "c@badbranch.test"},
        {"test", true,
         "c@badbranch.test a@branch.test d@BRANCH.test b@sub.branch.test "
         "f@deep.sub.branch.test e@other.test"},
        {"test", false, ""},
        {"ranch.test", true, ""}, /* a suffix that is not a label */
        {"nowhere.test", true, ""},
        {NULL, false,
         "c@badbranch.test a@branch.test d@BRANCH.test b@sub.branch.test "
         "f@deep.sub.branch.test e@other.test"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rcpt_list l = {0};
        assert_int_equal(queue_scan_rcpts(f->q, cases[i].domain, cases[i].sub, collect_rcpt, &l),
                         0);
        char got[512] = "";
        for (size_t j = 0; j < l.n; j++) {
            assert_true(l.r[j].id == id1 || l.r[j].id == id2);
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", j ? " " : "",
                     l.r[j].addr);
        }
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("scan %s sub=%d: got \"%s\" want \"%s\"", cases[i].domain, cases[i].sub, got,
                     cases[i].want);
    }
    struct rcpt_list l = {0};
    assert_int_equal(queue_scan_rcpts(f->q, "bad..domain", false, collect_rcpt, &l), HF_EADDR);
}

struct dom_list {
    size_t n;
    struct queue_domain_stats d[16];
};

static int collect_dom(const struct queue_domain_stats *s, void *arg)
{
    struct dom_list *l = arg;
    assert_true(l->n < 16);
    l->d[l->n++] = *s;
    return 0;
}

static void check_stats(struct queue *q, const char *domain, int rc, uint64_t messages,
                        uint64_t rcpts, uint64_t bytes, int64_t oldest)
{
    struct queue_domain_stats s;
    assert_int_equal(queue_domain_stats(q, domain, &s), rc);
    assert_int_equal(s.messages, messages);
    assert_int_equal(s.rcpts, rcpts);
    assert_int_equal(s.bytes, bytes);
    assert_int_equal(s.oldest, oldest);
}

static void check_totals(struct queue *q, uint64_t messages, uint64_t rcpts, uint64_t bytes)
{
    struct queue_totals t;
    assert_int_equal(queue_totals(q, &t), 0);
    assert_int_equal(t.messages, messages);
    assert_int_equal(t.rcpts, rcpts);
    assert_int_equal(t.bytes, bytes);
    assert_true(t.map_used > 0 && t.map_used <= t.map_size);
}

/* ---- counters ------------------------------------------------------------------------- */

static void test_counters(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    const char *const r1[] = {"a@branch.test", "b@branch.test", "c@other.test", "d@Branch.Test",
                              NULL};
    const char *const r2[] = {"e@branch.test", NULL};
    uint64_t id1 = put_simple(f->q, r1, 1000, 100);
    uint64_t id2 = put_simple(f->q, r2, 300, 200);
    check_stats(f->q, "branch.test", 0, 2, 4, 1300, 100);
    check_stats(f->q, "other.test", 0, 1, 1, 1000, 100);
    check_stats(f->q, "nowhere.test", -ENOENT, 0, 0, 0, 0);
    check_totals(f->q, 2, 5, 1300);

    struct dom_list dl = {0};
    assert_int_equal(queue_scan_domains(f->q, collect_dom, &dl), 0);
    assert_int_equal(dl.n, 2);
    assert_string_equal(dl.d[0].domain, "branch.test"); /* "test.branch." < "test.other." */
    assert_string_equal(dl.d[1].domain, "other.test");

    /* Delivering two of id1's three branch.test recipients: id1 still counts there. */
    struct queue_update u[3] = {upd(QUEUE_OP_DELIVERED, id1, 0), upd(QUEUE_OP_DELIVERED, id1, 3),
                                upd(QUEUE_OP_DELIVERED, id1, 3)};
    assert_int_equal(queue_apply(f->q, u, 3), 0);
    assert_int_equal(u[0].result, 0);
    assert_int_equal(u[1].result, 0);
    assert_int_equal(u[2].result, -ENOENT); /* already delivered */
    check_stats(f->q, "branch.test", 0, 2, 2, 1300, 100);
    check_totals(f->q, 2, 3, 1300);
    struct queue_env e;
    assert_int_equal(queue_get_env(f->q, id1, &e), 0);
    assert_int_equal(e.nrcpt, 2);

    /* The last one there: id1 leaves branch.test, and the oldest is id2's arrival. */
    u[0] = upd(QUEUE_OP_DELIVERED, id1, 1);
    assert_int_equal(queue_apply(f->q, u, 1), 0);
    assert_int_equal(u[0].result, 0);
    check_stats(f->q, "branch.test", 0, 1, 1, 300, 200);
    check_stats(f->q, "other.test", 0, 1, 1, 1000, 100);
    check_totals(f->q, 2, 2, 1300);

    /* The message's last recipient: envelope and body go with it. */
    u[0] = upd(QUEUE_OP_DELIVERED, id1, 2);
    assert_int_equal(queue_apply(f->q, u, 1), 0);
    check_stats(f->q, "other.test", -ENOENT, 0, 0, 0, 0);
    assert_int_equal(queue_get_env(f->q, id1, &e), -ENOENT);
    assert_int_equal(queue_read_body(f->q, id1, collect_body, NULL), -ENOENT);
    check_totals(f->q, 1, 1, 300);

    /* Deleting a whole message, and updates whose target is gone. */
    uint64_t id3 = put_simple(f->q, r1, 50, 300);
    check_stats(f->q, "branch.test", 0, 2, 4, 350, 200);
    u[0] = upd(QUEUE_OP_DELETE_MSG, id3, 0);
    u[1] = upd(QUEUE_OP_DELETE_MSG, id3, 0);
    u[2] = upd(QUEUE_OP_DELIVERED, 999, 0);
    assert_int_equal(queue_apply(f->q, u, 3), 0);
    assert_int_equal(u[0].result, 0);
    assert_int_equal(u[1].result, -ENOENT);
    assert_int_equal(u[2].result, -ENOENT);
    check_stats(f->q, "branch.test", 0, 1, 1, 300, 200);
    check_totals(f->q, 1, 1, 300);
    u[0] = upd(QUEUE_OP_DELETE_MSG, id2, 0);
    assert_int_equal(queue_apply(f->q, u, 1), 0);
    check_totals(f->q, 0, 0, 0);
    dl.n = 0;
    assert_int_equal(queue_scan_domains(f->q, collect_dom, &dl), 0);
    assert_int_equal(dl.n, 0);
}

/* ---- updates -------------------------------------------------------------------------- */

static void test_deferred_failed_persist(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    const char *const rc[] = {"a@branch.test", "b@branch.test", "c@branch.test", NULL};
    uint64_t id = put_simple(f->q, rc, 10, 5);
    struct queue_update u[4] = {upd(QUEUE_OP_DEFERRED, id, 0), upd(QUEUE_OP_FAILED, id, 1),
                                upd(QUEUE_OP_DEFERRED, id, 0), upd(QUEUE_OP_DEFERRED, id, 9)};
    u[0].when = 1000;
    u[0].next_attempt = 1600;
    snprintf(u[0].error, sizeof(u[0].error), "421 4.3.2 first");
    u[1].when = 1001;
    snprintf(u[1].error, sizeof(u[1].error), "550 5.1.1 no such user");
    u[2].when = 2000;
    u[2].next_attempt = 3800;
    snprintf(u[2].error, sizeof(u[2].error), "451 4.4.1 second");
    assert_int_equal(queue_apply(f->q, u, 4), 0);
    assert_int_equal(u[3].result, -ENOENT);
    /* Failed recipients stay queued for the bounce: counters do not move. */
    check_stats(f->q, "branch.test", 0, 1, 3, 10, 5);

    fx_open(f, 0, 0);
    struct rcpt_list l = {0};
    assert_int_equal(queue_get_rcpts(f->q, id, collect_rcpt, &l), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.r[0].state, QUEUE_RS_DEFERRED);
    assert_int_equal(l.r[0].attempts, 2);
    assert_int_equal(l.r[0].last_attempt, 2000);
    assert_int_equal(l.r[0].next_attempt, 3800);
    assert_string_equal(l.r[0].last_error, "451 4.4.1 second");
    assert_int_equal(l.r[1].state, QUEUE_RS_FAILED);
    assert_int_equal(l.r[1].attempts, 1);
    assert_int_equal(l.r[1].last_attempt, 1001);
    assert_string_equal(l.r[1].last_error, "550 5.1.1 no such user");
    assert_int_equal(l.r[2].state, QUEUE_RS_PENDING);
    assert_int_equal(l.r[2].attempts, 0);

    u[0] = upd(QUEUE_OP_REQUEUE_MSG, id, 0);
    assert_int_equal(queue_apply(f->q, u, 1), 0);
    assert_int_equal(u[0].result, 0);
    l.n = 0;
    assert_int_equal(queue_get_rcpts(f->q, id, collect_rcpt, &l), 0);
    assert_int_equal(l.r[0].next_attempt, 0);
    assert_int_equal(l.r[0].attempts, 2);
    check_stats(f->q, "branch.test", 0, 1, 3, 10, 5);
}

static void test_hold_release(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    const char *const rc[] = {"a@branch.test", NULL};
    uint64_t id = put_simple(f->q, rc, 10, 5);
    struct queue_update u[3] = {upd(QUEUE_OP_HOLD_MSG, id, 0), upd(QUEUE_OP_HOLD_DOMAIN, 0, 0),
                                upd(QUEUE_OP_HOLD_DOMAIN, 0, 0)};
    snprintf(u[1].domain, sizeof(u[1].domain), "Branch.Test");
    snprintf(u[2].domain, sizeof(u[2].domain), "empty.test");
    assert_int_equal(queue_apply(f->q, u, 3), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(u[i].result, 0);

    fx_open(f, 0, 0);
    struct queue_env e;
    assert_int_equal(queue_get_env(f->q, id, &e), 0);
    assert_true(e.flags & QUEUE_F_HELD);
    assert_true(e.flags & QUEUE_F_8BITMIME);
    struct queue_domain_stats s;
    assert_int_equal(queue_domain_stats(f->q, "branch.test", &s), 0);
    assert_true(s.held);
    assert_int_equal(s.messages, 1);
    /* A held domain is listed even with nothing queued. */
    assert_int_equal(queue_domain_stats(f->q, "empty.test", &s), 0);
    assert_true(s.held);
    assert_int_equal(s.messages, 0);
    struct dom_list dl = {0};
    assert_int_equal(queue_scan_domains(f->q, collect_dom, &dl), 0);
    assert_int_equal(dl.n, 2);

    /* Delivering the last message of a held domain keeps the hold. */
    u[0] = upd(QUEUE_OP_RELEASE_MSG, id, 0);
    u[1] = upd(QUEUE_OP_RELEASE_DOMAIN, 0, 0);
    snprintf(u[1].domain, sizeof(u[1].domain), "empty.test");
    u[2] = upd(QUEUE_OP_RELEASE_DOMAIN, 0, 0);
    snprintf(u[2].domain, sizeof(u[2].domain), "never.test");
    assert_int_equal(queue_apply(f->q, u, 3), 0);
    assert_int_equal(u[0].result, 0);
    assert_int_equal(u[1].result, 0);
    assert_int_equal(u[2].result, -ENOENT);
    assert_int_equal(queue_get_env(f->q, id, &e), 0);
    assert_false(e.flags & QUEUE_F_HELD);
    assert_int_equal(queue_domain_stats(f->q, "empty.test", &s), -ENOENT);
    assert_string_equal(s.domain, "empty.test");

    u[0] = upd(QUEUE_OP_DELIVERED, id, 0);
    assert_int_equal(queue_apply(f->q, u, 1), 0);
    assert_int_equal(queue_domain_stats(f->q, "branch.test", &s), 0);
    assert_true(s.held);
    assert_int_equal(s.messages, 0);
    u[0] = upd(QUEUE_OP_RELEASE_DOMAIN, 0, 0);
    snprintf(u[0].domain, sizeof(u[0].domain), "branch.test");
    assert_int_equal(queue_apply(f->q, u, 1), 0);
    assert_int_equal(queue_domain_stats(f->q, "branch.test", &s), -ENOENT);
}

/* ---- bad input ------------------------------------------------------------------------ */

static void test_bad_messages(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    const char *const rc[] = {"a@branch.test", NULL};
    const char *const bad[] = {"a@bad..test", NULL};
    struct queue_new_msg *ok = mk_msg(f->q, "", rc, 10, 1);
    struct queue_new_msg *m = mk_msg(f->q, "", rc, 10, 1);

    m->nrcpt = 0; /* no recipient */
    assert_int_equal(put1(f->q, m), -EINVAL);
    m->nrcpt = 1;
    m->env.id = 0; /* no id */
    assert_int_equal(put1(f->q, m), -EINVAL);
    m->env.id = queue_id_next(f->q);
    memset(m->env.sender, 'x', sizeof(m->env.sender)); /* unterminated */
    assert_int_equal(put1(f->q, m), -EINVAL);
    m->env.sender[0] = '\0';
    m->rcpts[0].state = 7;
    assert_int_equal(put1(f->q, m), -EINVAL);
    m->rcpts[0].state = QUEUE_RS_PENDING;
    queue_new_msg_free(m);

    /* A bad domain fails the whole batch: all or nothing. */
    m = mk_msg(f->q, "", bad, 10, 1);
    struct queue_new_msg *b2[] = {ok, m};
    assert_int_equal(queue_put_batch(f->q, b2, 2), -EINVAL);
    check_totals(f->q, 0, 0, 0);
    queue_new_msg_free(m);

    /* A duplicate id fails its batch, and the first copy is untouched. */
    assert_int_equal(put1(f->q, ok), 0);
    m = mk_msg(f->q, "", rc, 20, 1);
    uint64_t fresh = m->env.id;
    struct queue_new_msg *dup = mk_msg(f->q, "", rc, 30, 1);
    dup->env.id = ok->env.id;
    struct queue_new_msg *b3[] = {m, dup};
    assert_int_equal(queue_put_batch(f->q, b3, 2), -EEXIST);
    struct queue_env e;
    assert_int_equal(queue_get_env(f->q, fresh, &e), -ENOENT);
    check_totals(f->q, 1, 1, 10);
    check_body(f->q, ok->env.id, 10);
    queue_new_msg_free(m);
    queue_new_msg_free(dup);
    queue_new_msg_free(ok);
    assert_int_equal(queue_put_batch(f->q, NULL, 0), 0);
}

/* ---- opening -------------------------------------------------------------------------- */

static void test_reopen_keeps_everything(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    const char *const rc[] = {"a@branch.test", "b@other.test", NULL};
    uint64_t ids[20];
    for (int i = 0; i < 20; i++)
        ids[i] = put_simple(f->q, rc, (size_t)i * 5000, 1000 + i);
    struct queue_update u = upd(QUEUE_OP_DELIVERED, ids[3], 1);
    assert_int_equal(queue_apply(f->q, &u, 1), 0);
    uint64_t bytes = 0;
    for (int i = 0; i < 20; i++)
        bytes += (uint64_t)i * 5000;

    queue_close(f->q);
    f->q = NULL;
    /* Read-only first, then read-write. */
    assert_int_equal(queue_open(f->dir, QUEUE_O_RDONLY, 0, 0, &f->q), 0);
    check_totals(f->q, 20, 39, bytes);
    const char *const rc1[] = {"x@branch.test", NULL};
    struct queue_new_msg *m = mk_msg(f->q, "", rc1, 5, 1);
    assert_int_equal(put1(f->q, m), -EROFS);
    struct queue_update h = upd(QUEUE_OP_HOLD_MSG, ids[0], 0);
    assert_int_equal(queue_apply(f->q, &h, 1), -EROFS);
    queue_new_msg_free(m);

    fx_open(f, 0, 0);
    check_totals(f->q, 20, 39, bytes);
    for (int i = 0; i < 20; i++)
        check_body(f->q, ids[i], (size_t)i * 5000);
    check_stats(f->q, "branch.test", 0, 20, 20, bytes, 1000);
    check_stats(f->q, "other.test", 0, 19, 19, bytes - 3 * 5000, 1000);
    struct rcpt_list l = {0};
    assert_int_equal(queue_get_rcpts(f->q, ids[3], collect_rcpt, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(queue_reader_check(f->q), 0);
}

/* Read-only open from another process while this one has the queue open for writing. */
static void test_rdonly_while_writer_open(void **state)
{
    struct fx *f = *state;
    fx_open(f, 0, 0);
    const char *const rc[] = {"a@branch.test", NULL};
    uint64_t id = put_simple(f->q, rc, 70000, 7);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct queue *r = NULL;
        int code = 0;
        if (queue_open(f->dir, QUEUE_O_RDONLY, 0, 0, &r) != 0)
            _exit(10);
        struct queue_env e;
        struct queue_totals t;
        if (queue_get_env(r, id, &e) != 0 || e.size != 70000)
            code = 11;
        else if (queue_totals(r, &t) != 0 || t.messages != 1)
            code = 12;
        queue_close(r);
        _exit(code);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* The writer goes on after the reader is gone. */
    put_simple(f->q, rc, 10, 8);
    check_totals(f->q, 2, 2, 70010);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_garbage_file_is_corrupt(void **state)
{
    struct fx *f = *state;
    static const size_t sizes[] = {100, 16384};
    for (size_t i = 0; i < 2; i++) {
        char *junk = malloc(sizes[i]);
        assert_non_null(junk);
        for (size_t j = 0; j < sizes[i]; j++)
            junk[j] = (char)(j * 31 + 7);
        write_file(fx_path(f, "data.mdb"), junk, sizes[i]);
        free(junk);
        struct queue *q = NULL;
        assert_int_equal(queue_open(f->dir, 0, 0, 0, &q), HF_ECORRUPT);
        assert_null(q);
        assert_int_equal(queue_open(f->dir, QUEUE_O_RDONLY, 0, 0, &q), HF_ECORRUPT);
        assert_null(q);
    }
}

static void test_open_errors(void **state)
{
    struct fx *f = *state;
    struct queue *q = NULL;
    /* Read-only: a missing directory, or a directory without a queue, is -ENOENT, and
     * nothing is created. */
    assert_int_equal(queue_open(fx_path(f, "missing"), QUEUE_O_RDONLY, 0, 0, &q), -ENOENT);
    struct stat st;
    assert_int_equal(stat(fx_path(f, "missing"), &st), -1);
    assert_int_equal(queue_open(f->dir, QUEUE_O_RDONLY, 0, 0, &q), -ENOENT);
    assert_int_equal(stat(fx_path(f, "lock.mdb"), &st), -1);
    /* A file where the directory should be. */
    write_file(fx_path(f, "plain"), "x", 1);
    assert_int_equal(queue_open(fx_path(f, "plain"), 0, 0, 0, &q), -ENOTDIR);
    /* Read-write creates the directory, mode 0700. */
    assert_int_equal(queue_open(fx_path(f, "new"), 0, 0, 0, &q), 0);
    assert_int_equal(stat(fx_path(f, "new"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    queue_close(q);
    q = NULL;
    assert_int_equal(queue_open(fx_path(f, "new"), QUEUE_O_RDONLY, 0, 0, &q), 0);
    check_totals(q, 0, 0, 0);
    queue_close(q);
}

/* Writes sub-database subdb of an environment in dir with mdb_load -T (key and value lines,
 * \xx escapes). Returns false when mdb_load is not available. */
static bool mdb_load_text(const char *dir, const char *subdb, const char *text)
{
    if (access("/usr/bin/mdb_load", X_OK) != 0)
        return false;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "/usr/bin/mdb_load -T %s%s '%s'", subdb ? "-s " : "",
             subdb ? subdb : "", dir);
    FILE *p = popen(cmd, "w");
    assert_non_null(p);
    fputs(text, p);
    assert_int_equal(pclose(p), 0);
    return true;
}

static void test_foreign_layouts(void **state)
{
    struct fx *f = *state;
    struct queue *q = NULL;
    /* Another layout version. */
    mkdir(fx_path(f, "v2"), 0700);
    if (!mdb_load_text(fx_path(f, "v2"), "meta", "version\n\\00\\00\\00\\02\n"))
        skip();
    assert_int_equal(queue_open(fx_path(f, "v2"), 0, 0, 0, &q), HF_EVERSION);
    assert_int_equal(queue_open(fx_path(f, "v2"), QUEUE_O_RDONLY, 0, 0, &q), HF_EVERSION);
    /* Some other program's environment: data, but no meta. */
    mkdir(fx_path(f, "other"), 0700);
    mdb_load_text(fx_path(f, "other"), NULL, "key\nvalue\n");
    assert_int_equal(queue_open(fx_path(f, "other"), 0, 0, 0, &q), HF_ECORRUPT);
    assert_int_equal(queue_open(fx_path(f, "other"), QUEUE_O_RDONLY, 0, 0, &q), -ENOENT);
    /* Our layout with a damaged envelope record and a recipient of it. */
    mkdir(fx_path(f, "bad"), 0700);
    const char *d = fx_path(f, "bad");
    char dir[128];
    snprintf(dir, sizeof(dir), "%s", d);
    mdb_load_text(dir, "meta", "version\n\\00\\00\\00\\01\n");
    mdb_load_text(dir, "msg", "\\00\\00\\00\\00\\00\\00\\00\\01\n\\09junk\n");
    mdb_load_text(dir, "body", "");
    mdb_load_text(dir, "rcpt",
                  "test.branch.\\00\\00\\00\\00\\00\\00\\00\\00\\01\\00\\00\\00\\00\n\\01\n");
    mdb_load_text(dir, "domain", "");
    assert_int_equal(queue_open(dir, 0, 0, 0, &q), 0);
    struct queue_env e;
    assert_int_equal(queue_get_env(q, 1, &e), HF_ECORRUPT);
    struct rcpt_list l = {0};
    assert_int_equal(queue_scan_rcpts(q, NULL, false, collect_rcpt, &l), HF_ECORRUPT);
    /* The damaged message fails its own update only. */
    const char *const rc[] = {"a@other.test", NULL};
    uint64_t id = put_simple(q, rc, 10, 1);
    assert_true(id > 1);
    struct queue_update u[2] = {upd(QUEUE_OP_DELETE_MSG, 1, 0), upd(QUEUE_OP_HOLD_MSG, id, 0)};
    assert_int_equal(queue_apply(q, u, 2), 0);
    assert_int_equal(u[0].result, HF_ECORRUPT);
    assert_int_equal(u[1].result, 0);
    queue_close(q);
}

/* ---- map size ------------------------------------------------------------------------- */

static void test_map_full(void **state)
{
    struct fx *f = *state;
    fx_open(f, MIB, MIB);
    const char *const rc[] = {"a@branch.test", NULL};
    uint64_t ids[64];
    size_t n = 0;
    const size_t len = 64 * 1024;
    int rc_put = 0;
    while (n < 64) {
        struct queue_new_msg *m = mk_msg(f->q, "", rc, len, (int64_t)n + 1);
        rc_put = put1(f->q, m);
        uint64_t id = m->env.id;
        queue_new_msg_free(m);
        if (rc_put != 0) {
            struct queue_env e;
            assert_int_equal(queue_get_env(f->q, id, &e), -ENOENT);
            break;
        }
        ids[n++] = id;
    }
    assert_int_equal(rc_put, -ENOSPC);
    assert_true(n >= 4);
    check_totals(f->q, n, n, n * len);
    for (size_t i = 0; i < n; i++)
        check_body(f->q, ids[i], len);
    struct queue_totals t;
    assert_int_equal(queue_totals(f->q, &t), 0);
    assert_int_equal(t.map_size, MIB);

    /* Freed pages are reused: after deleting half, messages fit again. */
    for (size_t i = 0; i < n / 2; i++) {
        struct queue_update u = upd(QUEUE_OP_DELETE_MSG, ids[i], 0);
        assert_int_equal(queue_apply(f->q, &u, 1), 0);
        assert_int_equal(u.result, 0);
    }
    for (size_t i = 0; i < n / 2 - 1; i++)
        put_simple(f->q, rc, len, 100);
    check_totals(f->q, n - 1, n - 1, (n - 1) * len);
    for (size_t i = n / 2; i < n; i++)
        check_body(f->q, ids[i], len);
}

static void test_map_grows(void **state)
{
    struct fx *f = *state;
    fx_open(f, MIB, 64 * MIB);
    const char *const rc[] = {"a@branch.test", NULL};
    struct queue_new_msg *batch[16];
    for (int i = 0; i < 16; i++)
        batch[i] = mk_msg(f->q, "", rc, 512 * 1024, i);
    assert_int_equal(queue_put_batch(f->q, batch, 16), 0);
    struct queue_totals t;
    assert_int_equal(queue_totals(f->q, &t), 0);
    assert_true(t.map_size > 8 * MIB && t.map_size <= 64 * MIB);
    assert_int_equal(t.messages, 16);
    /* Reopening with the small initial size keeps the grown map. */
    size_t grown = t.map_size;
    fx_open(f, MIB, 64 * MIB);
    assert_int_equal(queue_totals(f->q, &t), 0);
    assert_int_equal(t.map_size, grown);
    for (int i = 0; i < 16; i++) {
        check_body(f->q, batch[i]->env.id, 512 * 1024);
        queue_new_msg_free(batch[i]);
    }
    /* One message larger than the largest map: -ENOSPC, nothing stored. */
    fx_open(f, MIB, 16 * MIB);
    struct queue_new_msg *huge = mk_msg(f->q, "", rc, 20 * MIB, 1);
    assert_int_equal(put1(f->q, huge), -ENOSPC);
    queue_new_msg_free(huge);
    check_totals(f->q, 16, 16, 16 * 512 * 1024);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_put_get_roundtrip),
        T(test_callback_stops_walk),
        T(test_ids),
        cmocka_unit_test(test_id_text),
        T(test_scan_domains_and_boundaries),
        T(test_counters),
        T(test_deferred_failed_persist),
        T(test_hold_release),
        T(test_bad_messages),
        T(test_reopen_keeps_everything),
        T(test_rdonly_while_writer_open),
        T(test_garbage_file_is_corrupt),
        T(test_open_errors),
        T(test_foreign_layouts),
        T(test_map_full),
        T(test_map_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
