/* Unit tests of the writer thread (relayd/queue_wr.c) on a real libuv loop and a real
 * queue: group commit of many puts, updates, per-job status when one message does not fit,
 * and draining on stop. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <uv.h>

#include "log.h"
#include "queue.h"
#include "queue_wr.h"

#define MIB   (1024u * 1024u)
#define NJOBS 200

struct fx {
    char dir[64];
    struct queue *q;
    uv_loop_t loop;
    uv_timer_t guard;
    bool timed_out;
    struct queue_wr *w;
    /* Per token. */
    int calls[NJOBS];
    int status[NJOBS];
    uint64_t id[NJOBS];
    size_t ncalls;
    size_t want;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void on_guard(uv_timer_t *t)
{
    struct fx *f = t->data;
    f->timed_out = true;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/hf-test-queue-wr-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->guard), 0);
    f->guard.data = f;
    uv_unref((uv_handle_t *)&f->guard);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    queue_close(f->q);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Runs the loop until want callbacks ran, at most 30 s. */
static void run_until(struct fx *f, size_t want)
{
    f->timed_out = false;
    uv_timer_start(&f->guard, on_guard, 30000, 0);
    while (f->ncalls < want && !f->timed_out)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->guard);
    assert_false(f->timed_out);
    assert_int_equal(f->ncalls, want);
}

static struct queue_new_msg *mk_msg(const char *rcpt, size_t body_len)
{
    struct queue_new_msg *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->env.arrival = 1700000000;
    m->env.size = body_len;
    snprintf(m->env.sender, sizeof(m->env.sender), "s@sender.test");
    m->nrcpt = 1;
    m->env.nrcpt = 1;
    m->rcpts = calloc(1, sizeof(*m->rcpts));
    assert_non_null(m->rcpts);
    snprintf(m->rcpts[0].addr, sizeof(m->rcpts[0].addr), "%s", rcpt);
    snprintf(m->rcpts[0].domain, sizeof(m->rcpts[0].domain), "%s", strchr(rcpt, '@') + 1);
    m->body_len = body_len;
    m->body = malloc(body_len ? body_len : 1);
    assert_non_null(m->body);
    memset(m->body, 'x', body_len);
    return m;
}

static void on_put(int status, uint64_t token, uint64_t id, void *arg)
{
    struct fx *f = arg;
    assert_true(token < NJOBS);
    f->calls[token]++;
    f->status[token] = status;
    f->id[token] = id;
    f->ncalls++;
}

static void on_update(int status, uint64_t token, struct queue_update *ups, size_t n, void *arg)
{
    struct fx *f = arg;
    assert_true(token < NJOBS);
    f->calls[token]++;
    f->status[token] = status;
    /* The results are readable through the array until the callback returns. */
    for (size_t i = 0; i < n; i++)
        if (ups[i].result != 0)
            f->status[token] = ups[i].result;
    f->ncalls++;
}

static void reset_calls(struct fx *f)
{
    memset(f->calls, 0, sizeof(f->calls));
    memset(f->status, 0, sizeof(f->status));
    f->ncalls = 0;
}

static void stop_writer(struct fx *f)
{
    queue_wr_stop(f->w);
    f->w = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the async handle's close callback frees it */
}

static void test_group_commit_and_updates(void **state)
{
    struct fx *f = *state;
    assert_int_equal(queue_open(f->dir, 0, 0, 0, &f->q), 0);
    assert_int_equal(queue_wr_new(&f->loop, f->q, &f->w), 0);

    /* Everything is submitted before the loop runs, and the first message is large: while
     * the thread commits it, the other 199 wait and go into one later transaction. */
    for (uint64_t t = 0; t < NJOBS; t++) {
        struct queue_new_msg *m =
            mk_msg(t % 2 ? "a@branch.test" : "b@other.test", t == 0 ? 4 * MIB : 2000);
        assert_int_equal(queue_wr_put(f->w, m, on_put, t, f), 0);
    }
    run_until(f, NJOBS);
    for (size_t t = 0; t < NJOBS; t++) {
        assert_int_equal(f->calls[t], 1);
        assert_int_equal(f->status[t], 0);
        assert_true(f->id[t] != 0);
        for (size_t u = 0; u < t; u++)
            assert_true(f->id[u] != f->id[t]);
        struct queue_env e;
        assert_int_equal(queue_get_env(f->q, f->id[t], &e), 0);
    }
    struct queue_wr_stats st;
    queue_wr_get_stats(f->w, &st);
    assert_int_equal(st.jobs, NJOBS);
    assert_true(st.commits < st.jobs);
    assert_true(st.max_batch > 1);
    assert_int_equal(st.failures, 0);
    struct queue_totals tot;
    assert_int_equal(queue_totals(f->q, &tot), 0);
    assert_int_equal(tot.messages, NJOBS);

    /* Updates: one job per message, delivering the first half and deferring the rest. */
    uint64_t ids[NJOBS];
    memcpy(ids, f->id, sizeof(ids));
    reset_calls(f);
    for (uint64_t t = 0; t < NJOBS; t++) {
        struct queue_update *u = calloc(1, sizeof(*u));
        assert_non_null(u);
        u->op = t < NJOBS / 2 ? QUEUE_OP_DELIVERED : QUEUE_OP_DEFERRED;
        u->id = ids[t];
        u->when = 1700000100;
        u->next_attempt = 1700000700;
        snprintf(u->error, sizeof(u->error), "421 4.4.2 timeout");
        u->result = 99;
        assert_int_equal(queue_wr_update(f->w, u, 1, on_update, t, f), 0);
    }
    run_until(f, NJOBS);
    for (size_t t = 0; t < NJOBS; t++) {
        assert_int_equal(f->calls[t], 1);
        assert_int_equal(f->status[t], 0);
    }
    assert_int_equal(queue_totals(f->q, &tot), 0);
    assert_int_equal(tot.messages, NJOBS / 2);
    struct queue_domain_stats ds;
    assert_int_equal(queue_domain_stats(f->q, "branch.test", &ds), 0);
    assert_int_equal(ds.messages, NJOBS / 4);

    /* A job whose target is gone reports it; its batch neighbours are unaffected. */
    reset_calls(f);
    struct queue_update *u = calloc(2, sizeof(*u));
    assert_non_null(u);
    u[0].op = QUEUE_OP_DELIVERED;
    u[0].id = ids[0];
    u[1].op = QUEUE_OP_HOLD_MSG;
    u[1].id = ids[NJOBS - 1];
    assert_int_equal(queue_wr_update(f->w, u, 2, on_update, 0, f), 0);
    run_until(f, 1);
    assert_int_equal(f->status[0], -ENOENT);
    struct queue_env e;
    assert_int_equal(queue_get_env(f->q, ids[NJOBS - 1], &e), 0);
    assert_true(e.flags & QUEUE_F_HELD);

    queue_wr_get_stats(f->w, &st);
    assert_int_equal(st.jobs, 2 * NJOBS + 1);
    stop_writer(f);
}

/* One message too large for the map fails alone; the others in its batch are stored. */
static void test_enospc_fails_one_job(void **state)
{
    struct fx *f = *state;
    assert_int_equal(queue_open(f->dir, 0, MIB, 2 * MIB, &f->q), 0);
    assert_int_equal(queue_wr_new(&f->loop, f->q, &f->w), 0);
    for (uint64_t t = 0; t < 20; t++) {
        struct queue_new_msg *m = mk_msg("a@branch.test", t == 7 ? 4 * MIB : 1000);
        assert_int_equal(queue_wr_put(f->w, m, on_put, t, f), 0);
    }
    run_until(f, 20);
    for (size_t t = 0; t < 20; t++)
        assert_int_equal(f->status[t], t == 7 ? -ENOSPC : 0);
    struct queue_totals tot;
    assert_int_equal(queue_totals(f->q, &tot), 0);
    assert_int_equal(tot.messages, 19);
    struct queue_wr_stats st;
    queue_wr_get_stats(f->w, &st);
    assert_int_equal(st.failures, 1);
    stop_writer(f);
}

/* Stop finishes every queued job and runs its callback before returning. */
static void test_stop_drains(void **state)
{
    struct fx *f = *state;
    assert_int_equal(queue_open(f->dir, 0, 0, 0, &f->q), 0);
    assert_int_equal(queue_wr_new(&f->loop, f->q, &f->w), 0);
    for (uint64_t t = 0; t < 50; t++)
        assert_int_equal(queue_wr_put(f->w, mk_msg("a@branch.test", 100), on_put, t, f), 0);
    queue_wr_stop(f->w);
    assert_int_equal(f->ncalls, 50);
    for (size_t t = 0; t < 50; t++)
        assert_int_equal(f->status[t], 0);
    f->w = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    struct queue_totals tot;
    assert_int_equal(queue_totals(f->q, &tot), 0);
    assert_int_equal(tot.messages, 50);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    /* The commit lines are part of what is exercised; HF_TEST_VERBOSE shows them. */
    log_init("test_queue_wr", false, getenv("HF_TEST_VERBOSE") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
    const struct CMUnitTest tests[] = {
        T(test_group_commit_and_updates),
        T(test_enospc_fails_one_job),
        T(test_stop_drains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
