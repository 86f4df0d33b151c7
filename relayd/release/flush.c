/* Queue runs (see flush.h): which recipients a run takes, where they go (DNS MX and the
 * self-MX rule, a static next hop, TLSA for DANE), recording outcomes; the retry timer's
 * runs (expire.c reads the due index and starts them here).
 * flush_conn.c carries out each connection of a run; this file owns the run's state and
 * lends it to the connections through flush_run_conn_owner (flush_conn.h).
 *
 * Reads of the queue (which recipients wait, envelopes, bodies) happen on the loop in LMDB
 * read transactions: they copy from the memory map and never wait for a lock or an fsync.
 * Every change goes through the writer thread. */
#include "flush.h"
#include "flush_conn.h"
#include "flush_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "bounce.h"
#include "clock.h"
#include "conn.h"
#include "dns.h"
#include "dsn.h"
#include "expire.h"
#include "hf_err.h"
#include "log.h"
#include "mx.h"
#include "retry.h"
#include "smtpc.h"
#include "snap.h"
#include "tls.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static uint32_t flush_rand(void *arg);

static int64_t flush_now(void)
{
    return clock_now();
}

void flush_set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)(void *)ss)->sin_port = htons((uint16_t)port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)(void *)ss)->sin6_port = htons((uint16_t)port);
}

struct flush_run *flush_find_active(struct flush *fl, const char *domain)
{
    for (size_t i = 0; i < fl->nactive; i++) {
        struct flush_run *r = fl->active[i];
        if (strcmp(r->domain, domain) == 0)
            return r;
        for (size_t j = 0; j < r->nalso; j++) /* an ATRN run of several domains */
            if (strcmp(r->also[j], domain) == 0)
                return r;
    }
    return NULL;
}

struct dns *flush_dns(struct relayd *rd)
{
    struct flush *fl = rd->flush;
    return fl && !fl->stopping ? fl->dns : NULL;
}

bool flush_running(struct relayd *rd, const char *domain)
{
    struct flush *fl = rd->flush;
    return fl && flush_find_active(fl, domain) != NULL;
}

/* The domain's outbound TLS policy: none, may (default), encrypt, verify, dane. */
static const char *flush_tls_policy(const struct flush_run *run)
{
    const struct cfg_domain *cd = cfg_find_domain(&run->snap->cfg, run->domain);
    return cd && cd->tls ? cd->tls : "may";
}

/* ---- committing results ------------------------------------------------------------------ */

static void flush_run_maybe_finish(struct flush_run *run);

static void flush_committed(int status, uint64_t token, struct queue_update *ups, size_t n,
                            void *arg)
{
    struct flush *fl = arg;
    (void)ups;
    (void)n;
    if (status < 0)
        log_err("flush commit failed err=%s: the results will be retried on the next run",
                hf_errname(status));
    struct flush_run *run = idmap_get(&fl->runs, token);
    if (!run)
        return;
    run->pending_commits--;
    flush_run_maybe_finish(run);
}

/* The host name of a relay string "host[addr]:port" for Remote-MTA; a static next hop has
 * none, so its address is used. */
static void flush_remote_mta(const char *relay, char *out, size_t outsz)
{
    out[0] = '\0';
    if (!relay || !*relay)
        return;
    const char *lb = strchr(relay, '[');
    size_t hl = lb ? (size_t)(lb - relay) : strlen(relay);
    if (lb && hl == 15 && strncmp(relay, "static-next-hop", 15) == 0) {
        const char *rb = strchr(lb, ']');
        snprintf(out, outsz, "%.*s", rb ? (int)(rb - lb - 1) : 0, lb + 1);
    } else {
        snprintf(out, outsz, "%.*s", (int)hl, relay);
    }
}

/* Records the outcome of every recipient of item (results r[i], or one shared result when
 * r is NULL) through the writer thread, and logs one line per recipient. The reports the
 * outcomes owe (a 5xx or a null MX: a bounce at once; a success relayed to a server without
 * DSN, asked for with NOTIFY=SUCCESS) are stored in the same commit (bounce.h). This is the
 * one result path of every delivery, whatever carried it (DNS, a static next hop, ATRN). */
static void flush_record(struct flush_run *run, struct flush_item *it, const char *relay,
                         const char *tls, const struct smtpc_result *r,
                         const struct smtpc_result *shared)
{
    struct flush *fl = run->fl;
    struct relayd *rd = fl->rd;
    int64_t now = flush_now();
    it->done = true;
    struct queue_update *ups = calloc(it->nrcpt, sizeof(*ups));
    struct bounce_set *bs = bounce_set_new(&it->env);
    char qid[QUEUE_ID_STR];
    queue_id_str(it->id, qid);
    char remote[256];
    flush_remote_mta(relay, remote, sizeof(remote));
    /* What the DSN says about TLS: only when a connection was made. */
    const char *dsn_tls = relay && *relay && tls ? (*tls ? tls : "none") : NULL;
    for (size_t i = 0; i < it->nrcpt; i++) {
        const struct smtpc_result *res = r ? &r[i] : shared;
        const struct queue_rcpt *qr = &it->rcpts[i];
        const char *status;
        enum queue_op op;
        switch (res->outcome) {
        case SMTPC_OK:
            op = QUEUE_OP_DELIVERED;
            status = "sent";
            run->sum.sent++;
            rd->stats.delivered++;
            break;
        case SMTPC_FAIL:
            op = QUEUE_OP_BOUNCED;
            status = "bounced";
            run->sum.failed++;
            rd->stats.failed++;
            break;
        default:
            op = QUEUE_OP_DEFERRED;
            status = "deferred";
            run->sum.deferred++;
            rd->stats.deferred++;
            break;
        }
        char text[SMTPC_TEXT_MAX + 32];
        if (res->code) /* the reply text keeps its enhanced code (smtp_reply.h) */
            snprintf(text, sizeof(text), "%d %s", res->code, res->text);
        else
            snprintf(text, sizeof(text), "%s", res->text);
        for (char *p = text; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        if (op != QUEUE_OP_DELIVERED)
            snprintf(run->sum.error, sizeof(run->sum.error), "%s", text);
        /* Postfix's delivery line (pflogsumm reads it), our fields after it. delays=a/b/c/d:
         * a = held before this run, d = this run so far (b, c are not measured apart). */
        char to[300], dsn[16];
        int64_t held = run->started > it->env.arrival ? run->started - it->env.arrival : 0;
        log_svc(LOG_LVL_INFO, "smtp",
                "%s: to=<%s>, relay=%s, delay=%lld, delays=%lld/0/0/%lld, dsn=%s, status=%s (%s)%s%s",
                qid, log_safe(qr->addr, to, sizeof(to)), relay && *relay ? relay : "none",
                (long long)(now - it->env.arrival), (long long)held,
                (long long)(now - it->env.arrival - held),
                dsn_status_of(res->code, res->enh,
                              op == QUEUE_OP_DELIVERED ? "2.0.0"
                              : op == QUEUE_OP_BOUNCED ? "5.0.0"
                                                       : "4.0.0",
                              dsn),
                status, text, tls ? " tls=" : "", tls ? tls : "");
        if (run->watched && run->watch.rcpt)
            run->watch.rcpt(run->watch.arg, run->watch.token, qid, qr->addr,
                            relay && *relay ? relay : "none", tls, status, text);
        if (bs && (op == QUEUE_OP_BOUNCED || (op == QUEUE_OP_DELIVERED && !it->hop_dsn))) {
            char st[16];
            struct bounce_fact f = {
                .kind = op == QUEUE_OP_BOUNCED ? RETRY_DSN_FAILURE : RETRY_DSN_SUCCESS,
                .status = dsn_status_of(res->code, res->enh,
                                        op == QUEUE_OP_BOUNCED ? "5.0.0" : "2.0.0", st),
                .remote_mta = res->code ? remote : NULL,
                .diag = text,
                .diag_smtp = res->code != 0,
                .last_attempt = relay && *relay ? now : 0,
                .tls = dsn_tls,
            };
            /* NOTIFY=SUCCESS to a server without DSN: "relayed" (RFC 3461 4.1); a
             * success to a server with DSN is that server's to report. */
            if (op == QUEUE_OP_BOUNCED || retry_dsn_wanted(qr->notify, false, RETRY_DSN_SUCCESS))
                bounce_set_add(rd, bs, qr, &f);
        }
        if (ups) {
            ups[i].op = op;
            ups[i].id = it->id;
            ups[i].idx = qr->idx;
            ups[i].when = now;
            ups[i].next_attempt = retry_next_jittered(qr->attempts + 1, now, flush_rand(NULL));
            snprintf(ups[i].error, sizeof(ups[i].error), "%s", text);
        }
    }
    if (!ups) {
        bounce_set_free(bs);
        log_err("%s out of memory recording results; the recipients stay queued", qid);
        return;
    }
    int rc = bounce_commit(rd, bs, ups, it->nrcpt, flush_committed, run->id, fl);
    if (rc < 0)
        log_err("%s cannot queue results err=%s; the recipients stay queued", qid, hf_errname(rc));
    else
        run->pending_commits++;
}

/* ---- run lifecycle ----------------------------------------------------------------------- */

void flush_run_free(struct flush_run *run)
{
    for (size_t i = 0; i < FLUSH_ATTEMPTS_MAX; i++) {
        for (size_t j = 0; j < run->tlsa[i].n; j++)
            free(run->tlsa[i].rr[j].data);
        free(run->tlsa[i].rr);
    }
    for (size_t i = 0; i < run->nitems; i++)
        free(run->items[i].rcpts);
    free(run->items);
    for (size_t i = 0; i < run->nalso; i++)
        free(run->also[i]);
    free(run->also);
    relayd_snap_unref(run->snap);
    free(run);
}

static void flush_run_maybe_finish(struct flush_run *run)
{
    if (run->workers_live > 0 || run->pending_commits > 0 || run->finishing)
        return;
    struct flush *fl = run->fl;
    /* Whatever no worker could take (every exchanger unreachable) is deferred now. */
    bool any_left = false;
    for (size_t i = 0; i < run->nitems; i++) {
        if (run->items[i].done)
            continue;
        any_left = true;
        struct smtpc_result res;
        memset(&res, 0, sizeof(res));
        res.outcome = run->sum.status == HF_ENULLMX ? SMTPC_FAIL : SMTPC_DEFER;
        if (run->sum.status == HF_ENULLMX) /* RFC 7505 4.2 */
            snprintf(res.enh, sizeof(res.enh), "5.1.10");
        snprintf(res.text, sizeof(res.text), "%s",
                 run->sum.error[0] ? run->sum.error : "no exchanger could be reached");
        flush_record(run, &run->items[i], run->last_relay[0] ? run->last_relay : NULL, NULL, NULL,
                     &res);
    }
    if (any_left && run->pending_commits > 0)
        return; /* finish when those commits are in */
    run->finishing = true;
    unsigned long long nrcpts = 0; /* what sent, deferred and bounced count */
    for (size_t i = 0; i < run->nitems; i++)
        nrcpts += run->items[i].nrcpt;
    log_info("flush domain=%s reason=%s messages=%llu rcpts=%llu sent=%llu deferred=%llu "
             "bounced=%llu duration=%llds%s%s",
             run->domain, run->reason, (unsigned long long)run->sum.messages, nrcpts,
             (unsigned long long)run->sum.sent, (unsigned long long)run->sum.deferred,
             (unsigned long long)run->sum.failed, (long long)(flush_now() - run->started),
             run->sum.error[0] ? " last_error=" : "", run->sum.error[0] ? run->sum.error : "");
    if (run->audit[0]) /* ATRN: who released what, from where (flush_atrn.c) */
        log_info("atrn done %s messages=%llu bytes=%llu sent=%llu deferred=%llu bounced=%llu "
                 "duration=%llds",
                 run->audit, (unsigned long long)run->sum.messages,
                 (unsigned long long)run->bytes, (unsigned long long)run->sum.sent,
                 (unsigned long long)run->sum.deferred, (unsigned long long)run->sum.failed,
                 (long long)(flush_now() - run->started));
    if (run->watched && run->watch.done)
        run->watch.done(run->watch.arg, run->watch.token, &run->sum);
    idmap_del(&fl->runs, run->id);
    for (size_t i = 0; i < fl->nactive; i++) {
        if (fl->active[i] == run) {
            fl->active[i] = fl->active[--fl->nactive];
            break;
        }
    }
    flush_run_free(run);
}

/* ---- starting a run ---------------------------------------------------------------------- */

struct flush_load {
    struct flush_run *run;
    int err;
};

static int flush_load_rcpt(const struct queue_rcpt *r, void *arg)
{
    struct flush_load *ld = arg;
    struct flush_run *run = ld->run;
    /* Failed recipients wait for their bounce; they are not tried again. */
    if (r->state == QUEUE_RS_FAILED)
        return 0;
    if (run->due_only && r->next_attempt > run->now)
        return 0;
    /* Being bounced or warned about right now: decided already. */
    if (expire_is_busy(run->fl->rd, r->id))
        return 0;
    struct flush_item *it = run->nitems ? &run->items[run->nitems - 1] : NULL;
    if (!it || it->id != r->id) {
        struct flush_item *v = realloc(run->items, (run->nitems + 1) * sizeof(*v));
        if (!v) {
            ld->err = -ENOMEM;
            return 1;
        }
        run->items = v;
        it = &v[run->nitems++];
        memset(it, 0, sizeof(*it));
        it->id = r->id;
    }
    struct queue_rcpt *rv = realloc(it->rcpts, (it->nrcpt + 1) * sizeof(*rv));
    if (!rv) {
        ld->err = -ENOMEM;
        return 1;
    }
    it->rcpts = rv;
    rv[it->nrcpt++] = *r;
    return 0;
}

/* ---- what the run lends its connections (flush_conn.h) ---------------------------------- */

/* The next message no connection has taken, or NULL when none is left or the daemon is
 * shutting down (the connection then quits). */
static struct flush_item *flush_take(struct flush_run *run)
{
    struct flush_item *it = NULL;
    while (run->next_item < run->nitems) {
        struct flush_item *c = &run->items[run->next_item++];
        if (!c->taken && !c->done) {
            it = c;
            break;
        }
    }
    if (!it || run->fl->stopping)
        return NULL;
    it->taken = true;
    return it;
}

static void flush_note(struct flush_run *run, const char *relay, const char *error)
{
    if (relay)
        snprintf(run->last_relay, sizeof(run->last_relay), "%s", relay);
    if (error)
        snprintf(run->sum.error, sizeof(run->sum.error), "%s", error);
}

static void flush_worker_done(struct flush_run *run, struct flush_worker *w)
{
    for (size_t i = 0; i < run->nworkers; i++)
        if (run->workers[i] == w)
            run->workers[i] = NULL;
    run->workers_live--;
    flush_run_maybe_finish(run);
}

const struct flush_conn_owner flush_run_conn_owner = {
    .tls_policy = flush_tls_policy,
    .take = flush_take,
    .record = flush_record,
    .note = flush_note,
    .worker_done = flush_worker_done,
};

static void flush_run_deliver(struct flush_run *run)
{
    size_t n = run->snap->cfg.flush_connections;
    if (n > FLUSH_WORKERS_MAX)
        n = FLUSH_WORKERS_MAX;
    if (n > run->nitems)
        n = run->nitems;
    for (size_t i = 0; i < n; i++) {
        struct flush_worker *w = calloc(1, sizeof(*w));
        if (!w)
            break;
        w->run = run;
        w->own = &flush_run_conn_owner;
        run->workers[run->nworkers++] = w;
        run->workers_live++;
    }
    /* Start after all are counted, so an immediate failure cannot finish the run early. */
    for (size_t i = 0; i < run->nworkers; i++)
        if (run->workers[i])
            flush_conn_start(run->workers[i]);
    flush_run_maybe_finish(run);
}

static uint32_t flush_rand(void *arg)
{
    (void)arg;
    uint32_t v;
    if (uv_random(NULL, NULL, &v, sizeof(v), 0, NULL) < 0)
        v = (uint32_t)rand();
    return v;
}

/* What a DNS answer needs to find its run again (by id: a run that ended is not found). */
struct flush_dns_ctx {
    struct flush *fl;
    uint64_t run_id;
    char host[MX_NAME_MAX + 1]; /* TLSA lookups: the exchanger asked about */
};

static void flush_on_tlsa(const struct dns_tlsa_result *res, void *arg)
{
    struct flush_dns_ctx *ctx = arg;
    struct flush_run *run = idmap_get(&ctx->fl->runs, ctx->run_id);
    if (!run) {
        free(ctx);
        return;
    }
    /* Every attempt at this host shares the answer. */
    for (size_t i = 0; i < run->nattempts; i++) {
        struct flush_tlsa *t = &run->tlsa[i];
        if (strcmp(run->attempts[i].host, ctx->host) != 0 || t->looked_up)
            continue;
        t->looked_up = true;
        t->status = res->status == HF_EDNS || res->status == -ENOENT || res->status == 0
                        ? res->status
                        : HF_EDNSTEMP;
        t->secure = res->secure;
        if (res->status == 0 && res->nrrs) {
            t->rr = calloc(res->nrrs, sizeof(*t->rr));
            for (size_t j = 0; t->rr && j < res->nrrs; j++) {
                t->rr[j].usage = res->rrs[j].usage;
                t->rr[j].selector = res->rrs[j].selector;
                t->rr[j].mtype = res->rrs[j].mtype;
                t->rr[j].data = malloc(res->rrs[j].len ? res->rrs[j].len : 1);
                if (!t->rr[j].data)
                    break;
                memcpy(t->rr[j].data, res->rrs[j].data, res->rrs[j].len);
                t->rr[j].len = res->rrs[j].len;
                t->n = j + 1;
            }
            if (t->n < res->nrrs)
                t->status = -ENOMEM;
        }
    }
    log_info("flush domain=%s tlsa host=%s status=%s secure=%s records=%zu", run->domain, ctx->host,
             hf_errname(res->status), res->secure ? "yes" : "no", res->nrrs);
    free(ctx);
    if (--run->tlsa_pending == 0)
        flush_run_deliver(run);
}

/* tls = dane: look up TLSA for every exchanger before delivering (RFC 7672 2.2). */
static void flush_run_tlsa(struct flush_run *run)
{
    struct flush *fl = run->fl;
    run->tlsa_pending = 1; /* held until every lookup is started */
    for (size_t i = 0; i < run->nattempts; i++) {
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            seen |= strcmp(run->attempts[j].host, run->attempts[i].host) == 0;
        if (seen)
            continue;
        struct flush_dns_ctx *ctx = calloc(1, sizeof(*ctx));
        if (!ctx)
            continue;
        ctx->fl = fl;
        ctx->run_id = run->id;
        snprintf(ctx->host, sizeof(ctx->host), "%s", run->attempts[i].host);
        run->tlsa_pending++;
        int rc = dns_tlsa_resolve(fl->dns, ctx->host, (unsigned)run->snap->cfg.smtp_port,
                                  flush_on_tlsa, ctx);
        if (rc < 0) {
            run->tlsa_pending--;
            for (size_t k = 0; k < run->nattempts; k++)
                if (strcmp(run->attempts[k].host, ctx->host) == 0) {
                    run->tlsa[k].looked_up = true;
                    run->tlsa[k].status = rc == HF_EADDR ? -ENOENT : HF_EDNSTEMP;
                }
            free(ctx);
        }
    }
    if (--run->tlsa_pending == 0)
        flush_run_deliver(run);
}

static void flush_on_mx_ctx(const struct dns_mx_result *res, void *arg)
{
    struct flush_dns_ctx *ctx = arg;
    struct flush *fl = ctx->fl;
    struct flush_run *run = idmap_get(&fl->runs, ctx->run_id);
    free(ctx);
    if (!run)
        return;
    if (res->status < 0) {
        run->sum.status = res->status == HF_EDNS ? HF_EDNS : HF_EDNSTEMP;
        if (res->status == HF_EDNS)
            snprintf(run->sum.error, sizeof(run->sum.error),
                     "DNS lookup of %s failed: no such domain (NXDOMAIN) or no usable name; "
                     "kept queued, a domain we relay for may appear in DNS later",
                     run->domain);
        else
            snprintf(run->sum.error, sizeof(run->sum.error),
                     "DNS lookup of %s failed: %s, will retry", run->domain,
                     hf_strerror(res->status));
        log_warn("flush domain=%s dns failed err=%s: mail stays queued", run->domain,
                 hf_errname(res->status));
        flush_run_maybe_finish(run);
        return;
    }
    struct mx_self self = {
        .names = fl->self_names,
        .nnames = fl->nself_names,
        .addrs = fl->self_addrs,
        .naddrs = fl->nself_addrs,
    };
    struct mx_host *plan = calloc(res->nhosts + 1, sizeof(*plan));
    size_t nplan = 0;
    int rc =
        plan ? mx_plan(run->domain, res->hosts, res->nhosts, &self, flush_rand, NULL, plan, &nplan)
             : -ENOMEM;
    if (rc == 0)
        rc = mx_attempts(plan, nplan, &self, run->attempts, FLUSH_ATTEMPTS_MAX, &run->nattempts);
    free(plan);
    if (rc < 0) {
        run->sum.status = rc;
        if (rc == HF_ENULLMX)
            snprintf(run->sum.error, sizeof(run->sum.error),
                     "%s publishes a null MX (RFC 7505): it accepts no mail", run->domain);
        else if (rc == -ELOOP)
            snprintf(run->sum.error, sizeof(run->sum.error),
                     "this relay is the best MX for %s: nothing more preferred to deliver to "
                     "(RFC 5321 5.1)",
                     run->domain);
        else
            snprintf(run->sum.error, sizeof(run->sum.error), "no usable exchanger for %s: %s",
                     run->domain, hf_strerror(rc));
        log_warn("flush domain=%s %s", run->domain, run->sum.error);
        flush_run_maybe_finish(run);
        return;
    }
    for (size_t i = 0; i < run->nattempts; i++)
        flush_set_port(&run->attempts[i].addr, (int)run->snap->cfg.smtp_port);
    if (log_enabled(LOG_LVL_DEBUG)) {
        for (size_t i = 0; i < run->nattempts; i++) {
            char ip[INET6_ADDRSTRLEN];
            conn_sockaddr_str((const struct sockaddr *)&run->attempts[i].addr, ip, sizeof(ip));
            log_debug("flush domain=%s attempt=%zu host=%s pref=%u addr=%s", run->domain, i,
                      run->attempts[i].host, run->attempts[i].pref, ip);
        }
    }
    if (strcmp(flush_tls_policy(run), "dane") == 0)
        flush_run_tlsa(run);
    else
        flush_run_deliver(run);
}

static int flush_start_run(struct relayd *rd, const char *domain, const char *reason,
                           const struct flush_watch *watch, bool due_only);

int flush_start(struct relayd *rd, const char *domain, const char *reason,
                const struct flush_watch *watch)
{
    return flush_start_run(rd, domain, reason, watch, false);
}

struct flush_run *flush_run_new(struct relayd *rd, const char *domain, const char *reason,
                                const struct flush_watch *watch)
{
    struct flush *fl = rd->flush;
    struct flush_run *run = calloc(1, sizeof(*run));
    if (!run)
        return NULL;
    run->fl = fl;
    run->snap = relayd_snap_ref(rd->snap);
    run->id = ++fl->next_id;
    snprintf(run->domain, sizeof(run->domain), "%s", domain);
    snprintf(run->reason, sizeof(run->reason), "%s", reason);
    snprintf(run->sum.domain, sizeof(run->sum.domain), "%s", domain);
    if (watch) {
        run->watch = *watch;
        run->watched = true;
    }
    run->started = flush_now();
    run->now = run->started;
    return run;
}

int flush_run_load(struct flush_run *run, const char *domain)
{
    struct relayd *rd = run->fl->rd;
    size_t first = run->nitems;
    struct flush_load ld = {run, 0};
    int rc = queue_scan_rcpts(rd->q, domain, false, flush_load_rcpt, &ld);
    if (rc == 0)
        rc = ld.err;
    /* Messages the operator holds stay where they are. */
    size_t kept = first;
    for (size_t i = first; rc == 0 && i < run->nitems; i++) {
        struct flush_item *it = &run->items[i];
        int r = queue_get_env(rd->q, it->id, &it->env);
        if (r < 0 || (it->env.flags & QUEUE_F_HELD)) {
            free(it->rcpts);
            continue;
        }
        run->bytes += it->env.size;
        run->items[kept++] = *it;
    }
    if (rc == 0)
        run->nitems = kept;
    run->sum.messages = run->nitems;
    return rc;
}

int flush_run_register(struct flush_run *run)
{
    struct flush *fl = run->fl;
    struct flush_run **v = realloc(fl->active, (fl->nactive + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    fl->active = v;
    if (idmap_put(&fl->runs, run->id, run) < 0)
        return -ENOMEM;
    fl->active[fl->nactive++] = run;
    log_info("flush domain=%s reason=%s messages=%zu started", run->domain, run->reason,
             run->nitems);
    return 0;
}

static int flush_start_run(struct relayd *rd, const char *domain, const char *reason,
                           const struct flush_watch *watch, bool due_only)
{
    struct flush *fl = rd->flush;
    if (!fl || fl->stopping)
        return -ESHUTDOWN;
    if (flush_find_active(fl, domain))
        return -EBUSY;
    struct queue_domain_stats ds;
    if (queue_domain_stats(rd->q, domain, &ds) == 0 && ds.held)
        return -EPERM;
    struct flush_run *run = flush_run_new(rd, domain, reason, watch);
    if (!run)
        return -ENOMEM;
    run->due_only = due_only;
    int rc = flush_run_load(run, domain);
    if (rc < 0 || run->nitems == 0) {
        flush_run_free(run);
        return rc < 0 ? rc : -ENOENT;
    }
    rc = flush_run_register(run);
    if (rc < 0) {
        flush_run_free(run);
        return rc;
    }

    const struct cfg_domain *cd = cfg_find_domain(rd->cfg, domain);
    if (cd && cd->next_hop) {
        struct sockaddr_storage ss;
        if (conn_parse_hostport(cd->next_hop, (int)rd->cfg->smtp_port, &ss) == 0) {
            run->static_hop = true;
            memset(&run->attempts[0], 0, sizeof(run->attempts[0]));
            snprintf(run->attempts[0].host, sizeof(run->attempts[0].host), "static-next-hop");
            run->attempts[0].addr = ss;
            run->nattempts = 1;
            log_info("flush domain=%s next_hop=%s (static, not DNS-verified)", domain,
                     cd->next_hop);
            flush_run_deliver(run);
            return 0;
        }
        log_warn("flush domain=%s next_hop=%s is not [address]:port; using DNS", domain,
                 cd->next_hop);
    }
    struct flush_dns_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        run->sum.status = -ENOMEM;
        flush_run_maybe_finish(run);
        return 0;
    }
    ctx->fl = fl;
    ctx->run_id = run->id;
    rc = dns_mx_resolve(fl->dns, domain, flush_on_mx_ctx, ctx);
    if (rc < 0) {
        free(ctx);
        run->sum.status = rc;
        snprintf(run->sum.error, sizeof(run->sum.error), "DNS lookup not started: %s",
                 hf_strerror(rc));
        flush_run_maybe_finish(run);
    }
    return 0;
}

int flush_primaries(struct relayd *rd, const char *domain, const struct dns_mx_result *res,
                    struct mx_attempt *out, size_t cap, size_t *n)
{
    struct flush *fl = rd->flush;
    *n = 0;
    if (!fl || res->status < 0)
        return res->status < 0 ? res->status : -ESHUTDOWN;
    struct mx_self self = {fl->self_names, fl->nself_names, fl->self_addrs, fl->nself_addrs};
    struct mx_host *plan = calloc(res->nhosts + 1, sizeof(*plan));
    size_t nplan = 0;
    int rc = plan ? mx_plan(domain, res->hosts, res->nhosts, &self, flush_rand, NULL, plan, &nplan)
                  : -ENOMEM;
    if (rc == 0)
        rc = mx_attempts(plan, nplan, &self, out, cap, n);
    free(plan);
    for (size_t i = 0; rc == 0 && i < *n; i++)
        flush_set_port(&out[i].addr, (int)rd->cfg->smtp_port);
    return rc;
}

/* ---- the retry timer's entry ------------------------------------------------------------ */

int flush_start_due(struct relayd *rd, const char *domain)
{
    /* hold = yes: this domain's mail waits for ETRN, ATRN or relayctl, never the timer. */
    const struct cfg_domain *cd = cfg_find_domain(rd->cfg, domain);
    if (cd && cd->hold)
        return -EPERM;
    return flush_start_run(rd, domain, "retry", NULL, true);
}
