/* Moving the due index after a reload (see expire_reload.h). */
#include "expire_reload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "expire.h"
#include "hf_err.h"
#include "log.h"
#include "queue.h"
#include "queue_wr.h"
#include "relayd.h"
#include "snap.h"

#define EXPIRE_RELOAD_BATCH 1000 /* updates per writer job */

static bool str_same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool domain_same(const struct cfg_domain *a, const struct cfg_domain *b)
{
    if (!a || !b)
        return a == b;
    return a->max_queue_lifetime == b->max_queue_lifetime &&
           a->delay_warning_time == b->delay_warning_time && a->hold == b->hold &&
           a->subdomains == b->subdomains;
}

bool expire_policy_changed(const struct cfg *old, const struct cfg *new)
{
    if (old->max_queue_lifetime != new->max_queue_lifetime ||
        old->delay_warning_time != new->delay_warning_time ||
        old->retry_interval != new->retry_interval)
        return true;
    /* A domain added, removed or changed: each side's sections looked up in the other. */
    for (size_t i = 0; i < new->ndomains; i++) {
        const struct cfg_domain *o = NULL;
        for (size_t j = 0; j < old->ndomains && !o; j++)
            if (str_same(old->domains[j].name, new->domains[i].name))
                o = &old->domains[j];
        if (!domain_same(o, &new->domains[i]))
            return true;
    }
    for (size_t j = 0; j < old->ndomains; j++) {
        bool found = false;
        for (size_t i = 0; i < new->ndomains && !found; i++)
            found = str_same(old->domains[j].name, new->domains[i].name);
        if (!found)
            return true;
    }
    return false;
}

struct expire_reload_scan {
    struct relayd *rd;
    uint64_t env_id;
    int env_rc;
    struct queue_env env;
    struct queue_update *v;
    size_t n, cap;
    size_t seen;
    long queued;
    int err;
};

static void expire_reload_done(int status, uint64_t token, struct queue_update *ups, size_t n,
                               void *arg)
{
    (void)token;
    (void)ups;
    (void)arg;
    if (status < 0)
        log_warn("reload: moving %zu due index entries failed err=%s; they move when they come "
                 "due",
                 n, hf_errname(status));
}

static void expire_reload_flush(struct expire_reload_scan *sc)
{
    if (!sc->n)
        return;
    int rc = queue_wr_update(sc->rd->wr, sc->v, sc->n, expire_reload_done, 0, NULL);
    if (rc < 0) {
        sc->err = rc;
        log_warn("reload: cannot queue %zu due index moves err=%s", sc->n, hf_errname(rc));
    } else {
        sc->queued += (long)sc->n;
    }
    sc->v = NULL; /* taken, even on error */
    sc->n = sc->cap = 0;
}

static int expire_reload_rcpt(const struct queue_rcpt *r, void *arg)
{
    struct expire_reload_scan *sc = arg;
    sc->seen++;
    if (sc->env_id != r->id) {
        sc->env_id = r->id;
        sc->env_rc = queue_get_env(sc->rd->q, r->id, &sc->env);
    }
    if (sc->env_rc < 0)
        return 0; /* a damaged envelope: the sweep reports it */
    int64_t due = expire_due(r, sc->env.arrival, sc->rd->expire);
    if (due == r->due)
        return 0;
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        if (cap > EXPIRE_RELOAD_BATCH)
            cap = EXPIRE_RELOAD_BATCH;
        struct queue_update *nv = realloc(sc->v, cap * sizeof(*nv));
        if (!nv) {
            sc->err = -ENOMEM;
            return 1;
        }
        sc->v = nv;
        sc->cap = cap;
    }
    struct queue_update *u = &sc->v[sc->n++];
    memset(u, 0, sizeof(*u));
    u->op = QUEUE_OP_RESCHEDULE;
    u->id = r->id;
    u->idx = r->idx;
    u->when = r->due;
    if (sc->n == EXPIRE_RELOAD_BATCH)
        expire_reload_flush(sc);
    return sc->err ? 1 : 0;
}

long expire_reload(struct relayd *rd, const struct cfg *old)
{
    if (!rd->expire || !rd->snap || !expire_policy_changed(old, &rd->snap->cfg))
        return 0;
    expire_follow(rd);
    struct expire_reload_scan sc = {.rd = rd};
    int rc = queue_scan_rcpts(rd->q, NULL, false, expire_reload_rcpt, &sc);
    if (rc == 0 && sc.err == 0)
        expire_reload_flush(&sc);
    free(sc.v);
    if (rc < 0 || sc.err < 0) {
        rc = rc < 0 ? rc : sc.err;
        log_warn("reload: lifetimes changed; the due index was not fully moved err=%s (the rest "
                 "moves as it comes due)",
                 hf_errname(rc));
        return rc;
    }
    if (sc.queued == 0) {
        log_debug("reload: lifetimes or retries changed: %zu queued recipients read, none "
                  "moved",
                  sc.seen);
        return 0;
    }
    log_info("reload: lifetimes or retries changed: %zu queued recipient%s read, %ld due "
             "time%s moved",
             sc.seen, sc.seen == 1 ? "" : "s", sc.queued, sc.queued == 1 ? "" : "s");
    return sc.queued;
}
