/* The writer thread: group commit of new messages and recipient updates.
 *
 * The loop appends jobs to a list under a mutex and signals a condition variable. The
 * thread takes every waiting job at once, stores all new messages in one queue_put_batch()
 * and all updates in one queue_apply() (two transactions, each synced once), moves the
 * finished jobs to a done list and wakes the loop with uv_async_send(); the async callback
 * runs the jobs' callbacks on the loop thread. libuv coalesces async sends, so the callback
 * always drains the whole done list.
 *
 * If a batch fails for a reason that belongs to one message (the map cannot hold it, a bad
 * field), the jobs are retried one by one so that message fails alone. Deciding what a
 * status means for the client (250, 452, 451) is left to the callers. */
#include "queue_wr.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "hf_err.h"
#include "log.h"

enum queue_wr_kind { QUEUE_WR_PUT, QUEUE_WR_UPDATE, QUEUE_WR_COMMIT };

struct queue_wr_job {
    struct queue_wr_job *next;
    enum queue_wr_kind kind;
    struct queue_new_msg *msg; /* PUT: owned, freed by the thread after the commit */
    struct queue_update *ups;  /* UPDATE: owned, freed after the callback */
    size_t n;
    queue_wr_cb put_cb;
    queue_wr_update_cb update_cb;
    queue_wr_build_cb build; /* COMMIT: makes the messages stored with ups */
    uint64_t token;
    void *arg;
    int status;
    uint64_t id;
};

struct queue_wr_list {
    struct queue_wr_job *head, *tail;
};

struct queue_wr {
    uv_loop_t *loop;
    struct queue *q;
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    struct queue_wr_list pending;
    struct queue_wr_list done;
    bool stopping;
    struct queue_wr_stats stats;
};

static void queue_wr_list_add(struct queue_wr_list *l, struct queue_wr_job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static void queue_wr_list_splice(struct queue_wr_list *to, struct queue_wr_list *from)
{
    if (!from->head)
        return;
    if (to->tail)
        to->tail->next = from->head;
    else
        to->head = from->head;
    to->tail = from->tail;
    from->head = from->tail = NULL;
}

static bool queue_wr_split_worthy(int rc)
{
    /* Failures that may belong to a single job; a failing disk (-EIO) fails them all. */
    return rc == -ENOSPC || rc == -EINVAL || rc == -EEXIST || rc == -EFBIG || rc == HF_ECORRUPT;
}

/* Stores the batch's new messages: one transaction, or one per message after a failure
 * that may belong to one of them. Frees the messages. Returns how many commits were made. */
static uint64_t queue_wr_do_puts(struct queue_wr *w, struct queue_wr_job **jobs, size_t n)
{
    if (n == 0)
        return 0;
    uint64_t commits = 0;
    for (size_t i = 0; i < n; i++) {
        struct queue_new_msg *m = jobs[i]->msg;
        if (m->env.id == 0)
            m->env.id = queue_id_next(w->q);
        jobs[i]->id = m->env.id;
    }
    int rc = -ENOMEM;
    struct queue_new_msg **msgs = calloc(n, sizeof(*msgs));
    if (msgs) {
        for (size_t i = 0; i < n; i++)
            msgs[i] = jobs[i]->msg;
        rc = queue_put_batch(w->q, msgs, n);
        commits++;
        free(msgs);
    }
    if (rc != 0 && (rc == -ENOMEM || (n > 1 && queue_wr_split_worthy(rc)))) {
        for (size_t i = 0; i < n; i++) {
            jobs[i]->status = queue_put_batch(w->q, &jobs[i]->msg, 1);
            commits++;
        }
    } else {
        for (size_t i = 0; i < n; i++)
            jobs[i]->status = rc;
    }
    for (size_t i = 0; i < n; i++) {
        queue_new_msg_free(jobs[i]->msg);
        jobs[i]->msg = NULL;
    }
    return commits;
}

/* Applies the batch's updates in one transaction (copied into one array and back), or job
 * by job after a failure that may belong to one of them. Returns the number of commits. */
static uint64_t queue_wr_do_updates(struct queue_wr *w, struct queue_wr_job **jobs, size_t n)
{
    if (n == 0)
        return 0;
    if (n == 1) {
        jobs[0]->status = queue_apply(w->q, jobs[0]->ups, jobs[0]->n);
        return 1;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += jobs[i]->n;
    struct queue_update *all = malloc(total * sizeof(*all));
    uint64_t commits = 0;
    int rc = -ENOMEM;
    if (all) {
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(all + off, jobs[i]->ups, jobs[i]->n * sizeof(*all));
            off += jobs[i]->n;
        }
        rc = queue_apply(w->q, all, total);
        commits++;
        off = 0;
        for (size_t i = 0; i < n; i++) {
            if (rc == 0)
                memcpy(jobs[i]->ups, all + off, jobs[i]->n * sizeof(*all));
            off += jobs[i]->n;
            jobs[i]->status = rc;
        }
        free(all);
    }
    if (rc != 0 && (rc == -ENOMEM || queue_wr_split_worthy(rc))) {
        for (size_t i = 0; i < n; i++) {
            jobs[i]->status = queue_apply(w->q, jobs[i]->ups, jobs[i]->n);
            commits++;
        }
    }
    return commits;
}

/* A COMMIT job: its messages are built here, on the writer thread (they may read the queue),
 * and stored with its updates in one transaction of their own. */
static uint64_t queue_wr_do_commit(struct queue_wr *w, struct queue_wr_job *j)
{
    struct queue_new_msg **msgs = NULL;
    size_t nmsgs = 0;
    int rc = j->build(w->q, (const struct queue_update *)j->ups, j->n, j->arg, &msgs, &nmsgs);
    if (rc == 0)
        rc = queue_commit(w->q, msgs, nmsgs, j->ups, j->n);
    for (size_t i = 0; i < nmsgs; i++)
        queue_new_msg_free(msgs[i]);
    free(msgs);
    j->status = rc;
    return 1;
}

/* Writes one batch taken from the pending list; every job gets its status. */
static void queue_wr_commit(struct queue_wr *w, struct queue_wr_list *batch)
{
    size_t n = 0, nput = 0, ncommit = 0;
    for (struct queue_wr_job *j = batch->head; j; j = j->next) {
        n++;
        nput += j->kind == QUEUE_WR_PUT;
        ncommit += j->kind == QUEUE_WR_COMMIT;
    }
    struct queue_wr_job **jobs = malloc(n * sizeof(*jobs));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t commits = 0;
    if (jobs) {
        /* Puts first, then updates: an update may name a message of the same batch. */
        /* Puts first, then updates, then combined commits (each alone). */
        size_t p = 0, u = nput, c = n - ncommit;
        for (struct queue_wr_job *j = batch->head; j; j = j->next)
            jobs[j->kind == QUEUE_WR_PUT ? p++ : j->kind == QUEUE_WR_UPDATE ? u++ : c++] = j;
        commits += queue_wr_do_puts(w, jobs, nput);
        commits += queue_wr_do_updates(w, jobs + nput, n - nput - ncommit);
        for (size_t i = n - ncommit; i < n; i++)
            commits += queue_wr_do_commit(w, jobs[i]);
        free(jobs);
    } else {
        /* No memory for the index: one commit per job still keeps every promise. */
        for (struct queue_wr_job *j = batch->head; j; j = j->next) {
            commits += j->kind == QUEUE_WR_PUT      ? queue_wr_do_puts(w, &j, 1)
                       : j->kind == QUEUE_WR_COMMIT ? queue_wr_do_commit(w, j)
                                                    : queue_wr_do_updates(w, &j, 1);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
    log_debug("commit jobs=%zu ms=%ld", n, ms);

    uint64_t failures = 0;
    for (struct queue_wr_job *j = batch->head; j; j = j->next)
        failures += j->status != 0;
    pthread_mutex_lock(&w->mu);
    w->stats.commits += commits;
    w->stats.jobs += n;
    if (n > w->stats.max_batch)
        w->stats.max_batch = n;
    w->stats.failures += failures;
    pthread_mutex_unlock(&w->mu);
}

static void *queue_wr_main(void *arg)
{
    struct queue_wr *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->pending.head && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->pending.head)
            break; /* stopping, and nothing left to write */
        struct queue_wr_list batch = w->pending;
        w->pending.head = w->pending.tail = NULL;
        pthread_mutex_unlock(&w->mu);

        queue_wr_commit(w, &batch);

        pthread_mutex_lock(&w->mu);
        queue_wr_list_splice(&w->done, &batch);
        uv_async_send(&w->async);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Postfix's "QID: removed" (qmgr), once the commit that took a message's last recipient is
 * durable, whatever took it (delivery, bounce, expiry, relayctl delete). */
static void queue_wr_log_removed(const struct queue_wr_job *j)
{
    if (j->status != 0)
        return;
    char qid[QUEUE_ID_STR];
    for (size_t i = 0; i < j->n; i++)
        if (j->ups[i].removed)
            log_svc(LOG_LVL_INFO, "qmgr", "%s: removed", queue_id_str(j->ups[i].id, qid));
}

/* Runs the callbacks of every finished job, on the loop thread. */
static void queue_wr_drain(struct queue_wr *w)
{
    pthread_mutex_lock(&w->mu);
    struct queue_wr_list done = w->done;
    w->done.head = w->done.tail = NULL;
    pthread_mutex_unlock(&w->mu);
    struct queue_wr_job *j = done.head;
    while (j) {
        struct queue_wr_job *next = j->next;
        if (j->kind == QUEUE_WR_PUT)
            j->put_cb(j->status, j->token, j->id, j->arg);
        else {
            queue_wr_log_removed(j);
            j->update_cb(j->status, j->token, j->ups, j->n, j->arg);
        }
        free(j->ups);
        free(j);
        j = next;
    }
}

static void queue_wr_on_async(uv_async_t *h)
{
    queue_wr_drain(h->data);
}

static void queue_wr_on_close(uv_handle_t *h)
{
    struct queue_wr *w = h->data;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int queue_wr_new(uv_loop_t *loop, struct queue *q, struct queue_wr **out)
{
    *out = NULL;
    struct queue_wr *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->loop = loop;
    w->q = q;
    int rc = -pthread_mutex_init(&w->mu, NULL);
    if (rc)
        goto fail_free;
    rc = -pthread_cond_init(&w->cv, NULL);
    if (rc)
        goto fail_mutex;
    rc = uv_async_init(loop, &w->async, queue_wr_on_async);
    if (rc)
        goto fail_cond;
    w->async.data = w;
    /* The thread blocks every signal: they belong to the loop thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&w->thread, NULL, queue_wr_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        goto fail_async;
    *out = w;
    return 0;

fail_async:
    /* The handle is freed in its close callback, with the rest of w. */
    uv_close((uv_handle_t *)&w->async, queue_wr_on_close);
    return rc;
fail_cond:
    pthread_cond_destroy(&w->cv);
fail_mutex:
    pthread_mutex_destroy(&w->mu);
fail_free:
    free(w);
    return rc;
}

/* Queues j unless the writer is stopping. Returns 0 or -ESHUTDOWN. */
static int queue_wr_submit(struct queue_wr *w, struct queue_wr_job *j)
{
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        return -ESHUTDOWN;
    }
    queue_wr_list_add(&w->pending, j);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int queue_wr_put(struct queue_wr *w, struct queue_new_msg *msg, queue_wr_cb cb, uint64_t token,
                 void *arg)
{
    struct queue_wr_job *j = calloc(1, sizeof(*j));
    if (!j) {
        queue_new_msg_free(msg);
        return -ENOMEM;
    }
    j->kind = QUEUE_WR_PUT;
    j->msg = msg;
    j->put_cb = cb;
    j->token = token;
    j->arg = arg;
    int rc = queue_wr_submit(w, j);
    if (rc) {
        queue_new_msg_free(msg);
        free(j);
    }
    return rc;
}

/* Queues a job that carries recipient updates (kind UPDATE, or COMMIT with its build
 * callback). Takes ups: it is freed here when the job cannot be queued. */
static int queue_wr_submit_ups(struct queue_wr *w, enum queue_wr_kind kind,
                               struct queue_update *ups, size_t n, queue_wr_build_cb build,
                               queue_wr_update_cb cb, uint64_t token, void *arg)
{
    struct queue_wr_job *j = calloc(1, sizeof(*j));
    if (!j) {
        free(ups);
        return -ENOMEM;
    }
    j->kind = kind;
    j->ups = ups;
    j->n = n;
    j->build = build;
    j->update_cb = cb;
    j->token = token;
    j->arg = arg;
    int rc = queue_wr_submit(w, j);
    if (rc) {
        free(ups);
        free(j);
    }
    return rc;
}

int queue_wr_update(struct queue_wr *w, struct queue_update *ups, size_t n, queue_wr_update_cb cb,
                    uint64_t token, void *arg)
{
    return queue_wr_submit_ups(w, QUEUE_WR_UPDATE, ups, n, NULL, cb, token, arg);
}

int queue_wr_commit_job(struct queue_wr *w, struct queue_update *ups, size_t n,
                        queue_wr_build_cb build, queue_wr_update_cb cb, uint64_t token, void *arg)
{
    return queue_wr_submit_ups(w, QUEUE_WR_COMMIT, ups, n, build, cb, token, arg);
}

void queue_wr_get_stats(struct queue_wr *w, struct queue_wr_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}

void queue_wr_stop(struct queue_wr *w)
{
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    /* A pending async callback does not run once the handle is closing: run the last
     * callbacks here. New submissions from inside them get -ESHUTDOWN. */
    queue_wr_drain(w);
    uv_close((uv_handle_t *)&w->async, queue_wr_on_close);
}
