/* Expiry, delay warnings and operator bounces (see expire.h). The sweep reads the queue on
 * the loop (read transactions on the memory map), decides each recipient with retry.h's
 * pure rules on the lifecycle clock, and commits one bounce_set per message. */
#include "expire.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "bounce.h"
#include "clock.h"
#include "dsn.h"
#include "hf_err.h"
#include "log.h"
#include "pmwarn.h"
#include "relayd.h"
#include "retry.h"
#include "snap.h"

#define EXPIRE_BATCH_MAX 10000 /* recipients decided per sweep; the rest wait a tick */

struct expire {
    struct relayd *rd;
    /* The configuration the due function reads on the writer thread: a snapshot this
     * module holds a reference to, swapped under lock when a reload installed another
     * (snapshots never change; references are taken and dropped on the loop only). */
    pthread_mutex_t due_lock;
    struct relayd_snap *due_snap;
    uv_timer_t timer;
    bool armed;
    uint64_t *busy; /* messages with a lifecycle commit outstanding */
    size_t nbusy, capbusy;
};

enum expire_kind { EXPIRE_K_EXPIRE, EXPIRE_K_WARN, EXPIRE_K_FAILED, EXPIRE_K_OPERATOR };

struct expire_cand {
    struct queue_rcpt r;
    enum expire_kind kind;
};

struct expire_collect {
    struct expire *ex;
    int64_t now;
    bool sweep; /* the timer's sweep (decide), or an operator bounce (take all) */
    struct expire_cand *v;
    size_t n, cap;
    int err;
    uint64_t env_id; /* the envelope cache */
    struct queue_env env;
    int env_rc;
    char run_dom[256]; /* the last domain checked for a running flush */
    bool run_busy;
};

struct expire_req {
    expire_done_cb done;
    void *arg;
    uint64_t token;
    size_t pending;
    size_t count;
    int status;
};

static struct expire *expire_of(struct relayd *rd)
{
    return rd->expire;
}

bool expire_is_busy(struct relayd *rd, uint64_t id)
{
    struct expire *ex = expire_of(rd);
    for (size_t i = 0; ex && i < ex->nbusy; i++)
        if (ex->busy[i] == id)
            return true;
    return false;
}

static int expire_busy_add(struct expire *ex, uint64_t id)
{
    if (ex->nbusy == ex->capbusy) {
        size_t cap = ex->capbusy ? ex->capbusy * 2 : 16;
        uint64_t *v = realloc(ex->busy, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        ex->busy = v;
        ex->capbusy = cap;
    }
    ex->busy[ex->nbusy++] = id;
    return 0;
}

static void expire_busy_del(struct expire *ex, uint64_t id)
{
    for (size_t i = 0; i < ex->nbusy; i++)
        if (ex->busy[i] == id) {
            ex->busy[i] = ex->busy[--ex->nbusy];
            return;
        }
}

/* The lifetime policy of a recipient domain: its section's keys, else the global ones. */
static struct retry_policy expire_policy(const struct cfg *c, const char *domain)
{
    const struct cfg_domain *cd = cfg_find_domain(c, domain);
    struct retry_policy p = {(int64_t)c->max_queue_lifetime, (int64_t)c->delay_warning_time};
    if (cd && cd->max_queue_lifetime != CFG_INHERIT)
        p.lifetime = (int64_t)cd->max_queue_lifetime;
    if (cd && cd->delay_warning_time != CFG_INHERIT)
        p.warn_after = (int64_t)cd->delay_warning_time;
    return p;
}

static int expire_collect_rcpt(const struct queue_rcpt *r, void *arg)
{
    struct expire_collect *ec = arg;
    struct relayd *rd = ec->ex->rd;
    if (ec->n >= EXPIRE_BATCH_MAX)
        return 1;
    if (strcmp(ec->run_dom, r->domain) != 0) {
        snprintf(ec->run_dom, sizeof(ec->run_dom), "%s", r->domain);
        ec->run_busy = rd->flush_busy && rd->flush_busy(rd, r->domain);
    }
    if (ec->run_busy || expire_is_busy(rd, r->id))
        return 0; /* decided after the run, or already being committed */
    if (ec->env_id != r->id) {
        ec->env_id = r->id;
        ec->env_rc = queue_get_env(rd->q, r->id, &ec->env);
    }
    if (ec->env_rc < 0)
        return 0;
    enum expire_kind kind = EXPIRE_K_OPERATOR;
    if (ec->sweep) {
        if (ec->env.flags & QUEUE_F_HELD)
            return 0; /* the operator holds it: the operator decides */
        struct retry_policy p = expire_policy(rd->cfg, r->domain);
        enum retry_verdict v = retry_decide(ec->env.arrival, r->warned, &p, ec->now, NULL);
        if (r->state == QUEUE_RS_FAILED)
            kind = EXPIRE_K_FAILED; /* left by an older version: its bounce is owed */
        else if (v == RETRY_EXPIRE)
            kind = EXPIRE_K_EXPIRE;
        else if (v == RETRY_WARN)
            kind = EXPIRE_K_WARN;
        else
            return 0;
    }
    if (ec->n == ec->cap) {
        size_t cap = ec->cap ? ec->cap * 2 : 64;
        struct expire_cand *nv = realloc(ec->v, cap * sizeof(*nv));
        if (!nv) {
            ec->err = -ENOMEM;
            return 1;
        }
        ec->v = nv;
        ec->cap = cap;
    }
    ec->v[ec->n].r = *r;
    ec->v[ec->n].kind = kind;
    ec->n++;
    return 0;
}

static int expire_cand_cmp(const void *a, const void *b)
{
    const struct expire_cand *x = a, *y = b;
    if (x->r.id != y->r.id)
        return x->r.id < y->r.id ? -1 : 1;
    return x->r.idx < y->r.idx ? -1 : x->r.idx > y->r.idx;
}

/* "4d 3h" for a DSN's words. */
static void expire_span(int64_t s, char *out, size_t outsz)
{
    if (s >= 86400)
        snprintf(out, outsz, "%lldd %lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
    else if (s >= 3600)
        snprintf(out, outsz, "%lldh %lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else
        snprintf(out, outsz, "%llds", (long long)s);
}

/* The status a stored reply text ("451 4.3.0 text") carries, else dflt. */
static const char *expire_status_of(const char *last_error, const char *dflt, char out[16])
{
    int code = 0;
    char enh[16] = "";
    if (sscanf(last_error, "%3d %15s", &code, enh) < 1)
        code = 0;
    if (code < 200 || code > 599)
        code = 0;
    return dsn_status_of(code, enh, dflt, out);
}

/* What a lifecycle commit's callback needs. */
struct expire_job {
    struct relayd *rd;
    struct expire_req *req; /* relayctl bounce, or NULL for the sweep */
};

static void expire_committed(int status, uint64_t token, struct queue_update *ups, size_t n,
                             void *arg)
{
    struct expire_job *job = arg;
    struct expire *ex = expire_of(job->rd);
    struct expire_req *req = job->req;
    free(job);
    if (ex)
        expire_busy_del(ex, token);
    if (req) {
        if (status < 0)
            req->status = status;
        else
            for (size_t i = 0; i < n; i++)
                req->count += ups[i].result == 0 && ups[i].op == QUEUE_OP_BOUNCED;
        if (--req->pending == 0) {
            req->done(req->arg, req->token, req->status, req->count);
            free(req);
        }
    }
}

/* Commits the decisions v[0..n) about one message (envelope env). */
static int expire_submit(struct expire *ex, const struct queue_env *env, struct expire_cand *v,
                         size_t n, int64_t now, const char *reason, struct expire_req *req)
{
    struct relayd *rd = ex->rd;
    struct queue_update *ups = calloc(n, sizeof(*ups));
    struct bounce_set *bs = bounce_set_new(env);
    struct expire_job *job = malloc(sizeof(*job));
    if (!ups || !bs || !job) {
        free(ups);
        free(job);
        bounce_set_free(bs);
        return -ENOMEM;
    }
    job->rd = rd;
    job->req = req;
    char qid[QUEUE_ID_STR], to[300];
    queue_id_str(env->id, qid);
    for (size_t i = 0; i < n; i++) {
        const struct queue_rcpt *r = &v[i].r;
        struct retry_policy p = expire_policy(rd->cfg, r->domain);
        char span[32], diag[QUEUE_ERR_MAX + 200], st[16];
        expire_span(now - env->arrival, span, sizeof(span));
        struct bounce_fact f = {
            .kind = RETRY_DSN_FAILURE, .diag = diag, .last_attempt = r->last_attempt};
        const char *logst = "expired";
        ups[i].id = r->id;
        ups[i].idx = r->idx;
        ups[i].when = now;
        switch (v[i].kind) {
        case EXPIRE_K_WARN:
            ups[i].op = QUEUE_OP_WARNED;
            f.kind = RETRY_DSN_DELAY;
            f.retry_until = env->arrival + p.lifetime;
            f.status = expire_status_of(r->last_error, "4.0.0", st);
            if (st[0] != '4')
                f.status = "4.0.0";
            snprintf(diag, sizeof(diag), "not delivered for %s%s%s", span,
                     r->last_error[0] ? "; last error: " : " (held for release)", r->last_error);
            logst = "delayed";
            break;
        case EXPIRE_K_EXPIRE:
            ups[i].op = QUEUE_OP_BOUNCED;
            f.status = "5.4.7"; /* RFC 3463: delivery time expired */
            snprintf(diag, sizeof(diag), "delivery time expired: queued for %s%s%s", span,
                     r->last_error[0] ? "; last error: " : ", never released", r->last_error);
            break;
        case EXPIRE_K_FAILED:
            ups[i].op = QUEUE_OP_BOUNCED;
            f.status = expire_status_of(r->last_error, "5.0.0", st);
            snprintf(diag, sizeof(diag), "%s", r->last_error);
            f.diag_smtp = st[0] == '5' && r->last_error[0] >= '2' && r->last_error[0] <= '5';
            logst = "bounced";
            break;
        case EXPIRE_K_OPERATOR:
            ups[i].op = QUEUE_OP_BOUNCED;
            f.status = "5.0.0";
            snprintf(diag, sizeof(diag), "returned to the sender by the mail administrator%s%s",
                     reason && *reason ? ": " : "", reason && *reason ? reason : "");
            logst = "bounced";
            break;
        }
        snprintf(ups[i].error, sizeof(ups[i].error), "%s", diag);
        log_svc(LOG_LVL_INFO, "qmgr", "%s: to=<%s>, relay=none, delay=%lld, dsn=%s, status=%s (%s)",
                qid, log_safe(r->addr, to, sizeof(to)), (long long)(now - env->arrival),
                f.status ? f.status : "4.0.0", logst, diag);
        if (ups[i].op == QUEUE_OP_BOUNCED)
            rd->stats.failed++;
        bounce_set_add(rd, bs, r, &f);
    }
    int rc = expire_busy_add(ex, env->id);
    if (rc == 0) {
        rc = bounce_commit(rd, bs, ups, n, expire_committed, env->id, job);
        if (rc < 0) {
            expire_busy_del(ex, env->id);
            free(job);
        }
    } else {
        bounce_set_free(bs);
        free(ups);
        free(job);
    }
    return rc;
}

/* Commits the collected candidates, one transaction per message. Returns how many
 * messages were submitted, or a negative code when none could be. */
static long expire_commit_all(struct expire *ex, struct expire_collect *ec, const char *reason,
                              struct expire_req *req)
{
    qsort(ec->v, ec->n, sizeof(*ec->v), expire_cand_cmp);
    long submitted = 0;
    int last = 0;
    for (size_t i = 0; i < ec->n;) {
        size_t j = i;
        while (j < ec->n && ec->v[j].r.id == ec->v[i].r.id)
            j++;
        struct queue_env env;
        int rc = queue_get_env(ex->rd->q, ec->v[i].r.id, &env);
        if (rc == 0) {
            if (req)
                req->pending++;
            rc = expire_submit(ex, &env, ec->v + i, j - i, ec->now, reason, req);
            if (rc < 0 && req)
                req->pending--;
        }
        if (rc == 0)
            submitted++;
        else
            last = rc;
        i = j;
    }
    return submitted > 0 || last == 0 ? submitted : last;
}

int64_t expire_due(const struct queue_rcpt *r, int64_t arrival, void *arg)
{
    struct expire *ex = arg;
    if (r->state == QUEUE_RS_FAILED)
        return 0; /* its bounce is owed now */
    pthread_mutex_lock(&ex->due_lock);
    const struct cfg *c = &ex->due_snap->cfg;
    struct retry_policy p = expire_policy(c, r->domain);
    int64_t due = retry_next_event(arrival, r->warned, &p);
    const struct cfg_domain *cd = cfg_find_domain(c, r->domain);
    if (c->retry_interval > 0 && !(cd && cd->hold) && r->next_attempt < due)
        due = r->next_attempt;
    pthread_mutex_unlock(&ex->due_lock);
    return due;
}

/* After a reload, the due function follows the new configuration. Loop thread. */
static void expire_follow_snap(struct expire *ex);

void expire_follow(struct relayd *rd)
{
    struct expire *ex = expire_of(rd);
    if (ex)
        expire_follow_snap(ex);
}

static void expire_follow_snap(struct expire *ex)
{
    struct relayd_snap *cur = ex->rd->snap;
    if (!cur || cur == ex->due_snap)
        return;
    relayd_snap_ref(cur);
    pthread_mutex_lock(&ex->due_lock);
    struct relayd_snap *old = ex->due_snap;
    ex->due_snap = cur;
    pthread_mutex_unlock(&ex->due_lock);
    relayd_snap_unref(old);
}

/* One tick's reading of the due index. */
struct expire_scan {
    struct expire_collect ec; /* lifecycle candidates */
    char (*retry)[256];       /* domains with a retry due */
    size_t nretry;
    struct queue_update *resched; /* entries due with nothing to do */
    size_t nresched;
    size_t seen;
};

static void expire_scan_retry(struct expire_scan *sc, const char *domain)
{
    for (size_t i = 0; i < sc->nretry; i++)
        if (strcmp(sc->retry[i], domain) == 0)
            return;
    char(*v)[256] = realloc(sc->retry, (sc->nretry + 1) * sizeof(*v));
    if (!v)
        return; /* it stays due: the next tick tries again */
    sc->retry = v;
    snprintf(v[sc->nretry++], 256, "%s", domain);
}

static void expire_scan_resched(struct expire_scan *sc, int64_t due, uint64_t id, uint32_t idx)
{
    struct queue_update *v = realloc(sc->resched, (sc->nresched + 1) * sizeof(*v));
    if (!v)
        return;
    sc->resched = v;
    memset(&v[sc->nresched], 0, sizeof(*v));
    v[sc->nresched].op = QUEUE_OP_RESCHEDULE;
    v[sc->nresched].id = id;
    v[sc->nresched].idx = idx;
    v[sc->nresched].when = due;
    sc->nresched++;
}

static int expire_scan_due(int64_t due, uint64_t id, uint32_t idx, const struct queue_rcpt *r,
                           void *arg)
{
    struct expire_scan *sc = arg;
    struct expire_collect *ec = &sc->ec;
    struct relayd *rd = ec->ex->rd;
    sc->seen++;
    if (!r) {
        expire_scan_resched(sc, due, id, idx); /* a stale entry */
        return 0;
    }
    size_t before = ec->n;
    int rc = expire_collect_rcpt(r, ec);
    if (rc || ec->n > before || ec->run_busy || expire_is_busy(rd, id))
        return rc; /* decided now, or after the run that holds it */
    if (ec->env_rc < 0) {
        expire_scan_resched(sc, due, id, idx);
        return 0;
    }
    if (ec->env.flags & QUEUE_F_HELD)
        return 0; /* the operator holds it: looked at again next tick */
    const struct cfg_domain *cd = cfg_find_domain(rd->cfg, r->domain);
    if (rd->cfg->retry_interval > 0 && !(cd && cd->hold) && r->next_attempt <= ec->now)
        expire_scan_retry(sc, r->domain);
    else
        expire_scan_resched(sc, due, id, idx); /* nothing due after all: moved on */
    return 0;
}

static void expire_resched_done(int status, uint64_t token, struct queue_update *ups, size_t n,
                                void *arg)
{
    (void)token;
    (void)ups;
    (void)arg;
    if (status < 0)
        log_warn("due index: rescheduling %zu entries failed err=%s", n, hf_errname(status));
}

void expire_tick(struct relayd *rd)
{
    struct expire *ex = expire_of(rd);
    if (!ex || rd->stopping)
        return;
    expire_follow_snap(ex);
    struct expire_scan sc = {.ec = {.ex = ex, .now = clock_now(), .sweep = true}};
    int rc = queue_scan_due(rd->q, sc.ec.now, EXPIRE_BATCH_MAX, expire_scan_due, &sc);
    if (rc < 0 || sc.ec.err < 0)
        log_warn("due index scan err=%s: the rest waits for the next tick",
                 hf_errname(rc < 0 ? rc : sc.ec.err));
    if (sc.ec.n)
        expire_commit_all(ex, &sc.ec, NULL, NULL);
    for (size_t i = 0; i < sc.nretry; i++) {
        int frc = rd->flush_due ? rd->flush_due(rd, sc.retry[i]) : -ESHUTDOWN;
        if (frc < 0 && frc != -ENOENT && frc != -EBUSY && frc != -EPERM)
            log_warn("flush domain=%s retry not started err=%s", sc.retry[i], hf_errname(frc));
    }
    if (sc.nresched) {
        rc = queue_wr_update(rd->wr, sc.resched, sc.nresched, expire_resched_done, 0, NULL);
        if (rc < 0)
            log_warn("due index: cannot queue %zu reschedules err=%s", sc.nresched, hf_errname(rc));
        sc.resched = NULL; /* taken, even on error */
    }
    pmwarn_tick(rd);
    if (sc.seen)
        log_debug("due index tick now=%lld due=%zu lifecycle=%zu retry_domains=%zu "
                  "rescheduled=%zu",
                  (long long)sc.ec.now, sc.seen, sc.ec.n, sc.nretry, sc.nresched);
    free(sc.resched);
    free(sc.retry);
    free(sc.ec.v);
}

static void expire_on_timer(uv_timer_t *t)
{
    expire_tick(t->data);
}

int expire_bounce(struct relayd *rd, const uint64_t *ids, size_t n, const char *domain,
                  const char *reason, expire_done_cb done, void *arg, uint64_t token)
{
    struct expire *ex = expire_of(rd);
    if (!ex || rd->stopping)
        return -ESHUTDOWN;
    if (domain && rd->flush_busy && rd->flush_busy(rd, domain))
        return -EBUSY;
    struct expire_collect ec = {.ex = ex, .now = clock_now(), .sweep = false};
    if (domain) {
        queue_scan_rcpts(rd->q, domain, false, expire_collect_rcpt, &ec);
    } else {
        for (size_t i = 0; i < n && ec.err == 0; i++)
            queue_get_rcpts(rd->q, ids[i], expire_collect_rcpt, &ec);
    }
    if (ec.err < 0 || ec.n == 0) {
        free(ec.v);
        return ec.err < 0 ? ec.err : -ENOENT;
    }
    struct expire_req *req = calloc(1, sizeof(*req));
    if (!req) {
        free(ec.v);
        return -ENOMEM;
    }
    req->done = done;
    req->arg = arg;
    req->token = token;
    req->pending = 1; /* held until every message is submitted */
    long rc = expire_commit_all(ex, &ec, reason, req);
    free(ec.v);
    if (rc <= 0 && req->pending == 1) {
        free(req);
        return rc < 0 ? (int)rc : -ENOENT;
    }
    if (--req->pending == 0) {
        req->done(req->arg, req->token, req->status, req->count);
        free(req);
    }
    return 0;
}

int expire_init(struct relayd *rd)
{
    struct expire *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return -ENOMEM;
    if (pthread_mutex_init(&ex->due_lock, NULL) != 0) {
        free(ex);
        return -ENOMEM;
    }
    ex->rd = rd;
    ex->due_snap = relayd_snap_ref(rd->snap);
    /* Before the writer thread starts (main calls this first): the due index orders
     * recipients by their next retry, warning or expiry. */
    queue_set_due_fn(rd->q, expire_due, ex);
    uv_timer_init(rd->loop, &ex->timer);
    ex->timer.data = rd;
    ex->armed = true;
    uint64_t ms = (rd->cfg->retry_interval ? rd->cfg->retry_interval : 60) * 1000;
    uv_timer_start(&ex->timer, expire_on_timer, ms, ms);
    rd->expire = ex;
    return 0;
}

void expire_shutdown(struct relayd *rd)
{
    struct expire *ex = expire_of(rd);
    if (!ex || !ex->armed)
        return;
    uv_timer_stop(&ex->timer);
    uv_close((uv_handle_t *)&ex->timer, NULL);
    ex->armed = false;
}

void expire_free(struct relayd *rd)
{
    struct expire *ex = expire_of(rd);
    if (!ex)
        return;
    queue_set_due_fn(rd->q, NULL, NULL);
    relayd_snap_unref(ex->due_snap);
    pthread_mutex_destroy(&ex->due_lock);
    free(ex->busy);
    free(ex);
    rd->expire = NULL;
}
