/* Queue runs (see flush.h) and the ETRN command's glue.
 *
 * Reads of the queue (which recipients wait, envelopes, bodies) happen on the loop in LMDB
 * read transactions: they copy from the memory map and never wait for a lock or an fsync.
 * Every change goes through the writer thread. */
#include "flush.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "conn.h"
#include "dns.h"
#include "hf_err.h"
#include "log.h"
#include "mx.h"
#include "retry.h"
#include "smtpc.h"
#include "tls.h"

#define FLUSH_ATTEMPTS_MAX 32
#define FLUSH_WORKERS_MAX  16
#define FLUSH_LINE_MAX     2048

struct flush_item {
    uint64_t id;
    struct queue_env env;
    struct queue_rcpt *rcpts; /* this domain's recipients of the message */
    size_t nrcpt;
    bool taken; /* handed to a worker */
    bool done;  /* results decided (committed or being committed) */
};

struct flush_run;

struct flush_worker {
    struct flush_run *run;
    struct conn *conn;
    size_t attempt; /* index into run->attempts */
    struct smtpc sc;
    bool sc_live;
    struct flush_item *cur;
    struct smtpc_rcpt *cur_rcpts;
    char *cur_notify; /* NOTIFY strings for cur's recipients, 32 octets each */
    struct smtpc_msg msg; /* the message smtpc borrows until MSG_DONE */
    const char *ret;
    char line[FLUSH_LINE_MAX];
    size_t line_len;
    bool done;
    bool tls_switch;              /* STARTTLS accepted: drop the rest of this read */
    bool dane_required;           /* usable DNSSEC-signed TLSA records must match */
    char why[400];                /* why this connection failed, when we know better than
                                     the dialogue (a TLS check) */
    char relay[MX_NAME_MAX + 64]; /* host[addr]:port of the current attempt, for logs */
    char tls_desc[160]; /* how TLS went on this connection, for delivery lines */
};

/* TLSA records of one exchanger (RFC 7672), copied out of the DNS answer. */
struct flush_tlsa_rr {
    uint8_t usage, selector, mtype;
    unsigned char *data;
    size_t len;
};

struct flush_tlsa {
    bool looked_up;
    int status;  /* 0, -ENOENT (none), HF_EDNSTEMP / HF_EDNS (lookup failed) */
    bool secure; /* DNSSEC-validated (AD bit) */
    struct flush_tlsa_rr *rr;
    size_t n;
};

struct flush_run {
    struct flush *fl;
    uint64_t id;
    char domain[256];
    char reason[32];
    struct flush_watch watch;
    bool watched;
    int64_t started;
    struct flush_item *items;
    size_t nitems, next_item;
    struct mx_attempt attempts[FLUSH_ATTEMPTS_MAX];
    struct flush_tlsa tlsa[FLUSH_ATTEMPTS_MAX]; /* tls = dane: per attempt */
    size_t tlsa_pending;
    size_t nattempts;
    bool static_hop;
    struct flush_worker *workers[FLUSH_WORKERS_MAX];
    size_t nworkers, workers_live;
    size_t pending_commits;
    bool finishing;
    bool due_only; /* retry timer: only recipients whose next attempt has come */
    int64_t now;
    struct flush_summary sum;
};

struct flush {
    struct relayd *rd;
    struct dns *dns;
    struct idmap runs;   /* run id -> run (for DNS answers and commits) */
    struct flush_run **active;
    size_t nactive;
    uint64_t next_id;
    const char **self_names;
    size_t nself_names;
    struct sockaddr_storage *self_addrs;
    size_t nself_addrs;
    bool stopping;
    uv_timer_t retry;
    bool retry_armed;
};

static void flush_worker_next(struct flush_worker *w);
static void flush_worker_act(struct flush_worker *w);
static int flush_worker_starttls(struct flush_worker *w);
static const char *flush_tls_policy(const struct flush_run *run);
static void flush_run_maybe_finish(struct flush_run *run);
static void flush_worker_start(struct flush_worker *w);

/* ---- helpers ---------------------------------------------------------------------------- */

static int64_t flush_now(void)
{
    return (int64_t)time(NULL);
}


static void flush_set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)(void *)ss)->sin_port = htons((uint16_t)port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)(void *)ss)->sin6_port = htons((uint16_t)port);
}

static struct flush_run *flush_find_active(struct flush *fl, const char *domain)
{
    for (size_t i = 0; i < fl->nactive; i++)
        if (strcmp(fl->active[i]->domain, domain) == 0)
            return fl->active[i];
    return NULL;
}

bool flush_running(struct relayd *rd, const char *domain)
{
    struct flush *fl = rd->flush;
    return fl && flush_find_active(fl, domain) != NULL;
}

/* ---- committing results ------------------------------------------------------------------ */

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

/* Records the outcome of every recipient of item (results r[i], or one shared result when
 * r is NULL) through the writer thread, and logs one line per recipient. */
static void flush_record(struct flush_run *run, struct flush_item *it, const char *relay,
                         const char *tls, const struct smtpc_result *r,
                         const struct smtpc_result *shared)
{
    struct flush *fl = run->fl;
    struct relayd *rd = fl->rd;
    int64_t now = flush_now();
    it->done = true;
    struct queue_update *ups = calloc(it->nrcpt, sizeof(*ups));
    char qid[QUEUE_ID_STR];
    queue_id_str(it->id, qid);
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
            op = QUEUE_OP_FAILED;
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
        char to[300];
        log_info("%s to=<%s> relay=%s delay=%llds%s%s status=%s (%s)", qid,
                 log_safe(qr->addr, to, sizeof(to)), relay && *relay ? relay : "none",
                 (long long)(now - it->env.arrival), tls ? " tls=" : "", tls ? tls : "", status,
                 text);
        if (run->watched && run->watch.rcpt)
            run->watch.rcpt(run->watch.arg, run->watch.token, qid, qr->addr,
                            relay && *relay ? relay : "none", tls, status, text);
        if (ups) {
            ups[i].op = op;
            ups[i].id = it->id;
            ups[i].idx = qr->idx;
            ups[i].when = now;
            ups[i].next_attempt = retry_next(qr->attempts + 1, now);
            snprintf(ups[i].error, sizeof(ups[i].error), "%s", text);
        }
    }
    if (!ups) {
        log_err("%s out of memory recording results; the recipients stay queued", qid);
        return;
    }
    int rc = queue_wr_update(rd->wr, ups, it->nrcpt, flush_committed, run->id, fl);
    if (rc < 0)
        log_err("%s cannot queue results err=%s; the recipients stay queued", qid,
                hf_errname(rc));
    else
        run->pending_commits++;
}

/* ---- run lifecycle ----------------------------------------------------------------------- */

static void flush_run_free(struct flush_run *run)
{
    for (size_t i = 0; i < FLUSH_ATTEMPTS_MAX; i++) {
        for (size_t j = 0; j < run->tlsa[i].n; j++)
            free(run->tlsa[i].rr[j].data);
        free(run->tlsa[i].rr);
    }
    for (size_t i = 0; i < run->nitems; i++)
        free(run->items[i].rcpts);
    free(run->items);
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
        snprintf(res.text, sizeof(res.text), "%s",
                 run->sum.error[0] ? run->sum.error : "no exchanger could be reached");
        flush_record(run, &run->items[i], NULL, NULL, NULL, &res);
    }
    if (any_left && run->pending_commits > 0)
        return; /* finish when those commits are in */
    run->finishing = true;
    log_info("flush domain=%s reason=%s messages=%llu sent=%llu deferred=%llu bounced=%llu "
             "duration=%llds%s%s",
             run->domain, run->reason, (unsigned long long)run->sum.messages,
             (unsigned long long)run->sum.sent, (unsigned long long)run->sum.deferred,
             (unsigned long long)run->sum.failed, (long long)(flush_now() - run->started),
             run->sum.error[0] ? " last_error=" : "", run->sum.error[0] ? run->sum.error : "");
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

/* ---- one SMTP connection ----------------------------------------------------------------- */

static void flush_worker_free(struct flush_worker *w)
{
    if (w->sc_live)
        smtpc_close(&w->sc);
    free(w->cur_rcpts);
    free(w->cur_notify);
    free(w);
}

static void flush_worker_end(struct flush_worker *w)
{
    struct flush_run *run = w->run;
    if (w->cur && !w->cur->done) {
        struct smtpc_result res;
        memset(&res, 0, sizeof(res));
        res.outcome = SMTPC_DEFER;
        snprintf(res.text, sizeof(res.text), "connection to %s lost", w->relay);
        flush_record(run, w->cur, w->relay, NULL, NULL, &res);
    }
    w->cur = NULL;
    w->done = true;
    for (size_t i = 0; i < run->nworkers; i++)
        if (run->workers[i] == w)
            run->workers[i] = NULL;
    flush_worker_free(w);
    run->workers_live--;
    flush_run_maybe_finish(run);
}


static int flush_body_chunk(const char *data, size_t len, void *arg)
{
    struct flush_worker *w = arg;
    return smtpc_body(&w->sc, data, len, false);
}

/* Sends the current message's body from the queue, chunk by chunk (dot-stuffed by smtpc). */
static void flush_worker_body(struct flush_worker *w)
{
    struct queue *q = w->run->fl->rd->q;
    int rc = queue_read_body(q, w->cur->id, flush_body_chunk, w);
    if (rc == 0)
        rc = smtpc_body(&w->sc, NULL, 0, true);
    if (rc < 0) {
        char qid[QUEUE_ID_STR];
        log_warn("%s cannot read the stored message err=%s; aborting the connection so the "
                 "server does not take a partial message",
                 queue_id_str(w->cur->id, qid), hf_errname(rc));
        /* smtpc defers every recipient not yet final. */
        smtpc_on_closed(&w->sc, rc);
    }
}

/* Hands the next waiting message of the run to the machine, or ends the session. */
static void flush_worker_next(struct flush_worker *w)
{
    struct flush_run *run = w->run;
    for (;;) {
        struct flush_item *it = NULL;
        while (run->next_item < run->nitems) {
            struct flush_item *c = &run->items[run->next_item++];
            if (!c->taken && !c->done) {
                it = c;
                break;
            }
        }
        if (!it || run->fl->stopping) {
            smtpc_quit(&w->sc);
            return;
        }
        it->taken = true;
        w->cur = it;
        free(w->cur_rcpts);
        free(w->cur_notify);
        w->cur_rcpts = calloc(it->nrcpt, sizeof(*w->cur_rcpts));
        w->cur_notify = calloc(it->nrcpt, 32);
        if (!w->cur_rcpts || !w->cur_notify) {
            smtpc_on_closed(&w->sc, -ENOMEM);
            return;
        }
        for (size_t i = 0; i < it->nrcpt; i++) {
            const struct queue_rcpt *r = &it->rcpts[i];
            char *nb = w->cur_notify + 32 * i;
            if (r->notify & SMTP_NOTIFY_NEVER) {
                snprintf(nb, 32, "NEVER");
            } else if (r->notify) {
                snprintf(nb, 32, "%s%s%s", (r->notify & SMTP_NOTIFY_SUCCESS) ? "SUCCESS," : "",
                         (r->notify & SMTP_NOTIFY_FAILURE) ? "FAILURE," : "",
                         (r->notify & SMTP_NOTIFY_DELAY) ? "DELAY," : "");
                size_t l = strlen(nb);
                if (l)
                    nb[l - 1] = '\0';
            }
            w->cur_rcpts[i].addr = r->addr;
            w->cur_rcpts[i].orcpt = r->orcpt[0] ? r->orcpt : NULL;
            w->cur_rcpts[i].notify = nb[0] ? nb : NULL;
        }
        memset(&w->msg, 0, sizeof(w->msg));
        w->msg.sender = it->env.sender;
        w->msg.size = it->env.size;
        w->msg.body_8bit = (it->env.flags & QUEUE_F_8BITMIME) != 0;
        w->msg.smtputf8 = (it->env.flags & QUEUE_F_SMTPUTF8) != 0;
        w->msg.ret = it->env.ret == SMTP_RET_FULL   ? "FULL"
                     : it->env.ret == SMTP_RET_HDRS ? "HDRS"
                                                    : NULL;
        w->msg.envid = it->env.envid[0] ? it->env.envid : NULL;
        w->msg.rcpts = w->cur_rcpts;
        w->msg.nrcpt = it->nrcpt;
        int rc = smtpc_msg_begin(&w->sc, &w->msg);
        if (rc == -ENOMEM) {
            smtpc_on_closed(&w->sc, rc);
            return;
        }
        if (rc < 0) { /* cannot happen for a well-formed item; keep it for later */
            struct smtpc_result res;
            memset(&res, 0, sizeof(res));
            res.outcome = SMTPC_DEFER;
            snprintf(res.text, sizeof(res.text), "internal error err=%s", hf_errname(rc));
            flush_record(run, it, w->relay, NULL, NULL, &res);
            w->cur = NULL;
            continue;
        }
        return;
    }
}

/* The domain's outbound TLS policy: none, may (default), encrypt, verify, dane. */
static const char *flush_tls_policy(const struct flush_run *run)
{
    const struct cfg_domain *cd = cfg_find_domain(run->fl->rd->cfg, run->domain);
    return cd && cd->tls ? cd->tls : "may";
}

static void flush_tls_ready(struct conn *c, int status)
{
    struct flush_worker *w = conn_data(c);
    if (!w || !w->sc_live)
        return;
    struct tls_conn *t = conn_tls(c);
    const char *policy = flush_tls_policy(w->run);
    if (status == 0 && t) {
        bool verified = tls_peer_verified(t);
        snprintf(w->tls_desc, sizeof(w->tls_desc), "%s,%s,%s", tls_version(t),
                 tls_cipher(t), verified ? "verified" : "unverified");
        log_info("flush domain=%s relay=%s tls established %s %s verify=%s policy=%s",
                 w->run->domain, w->relay, tls_version(t), tls_cipher(t),
                 tls_verify_result_text(t), policy);
        if ((strcmp(policy, "verify") == 0 || w->dane_required) && !verified) {
            snprintf(w->why, sizeof(w->why), "%s: certificate not verified (%s), policy %s",
                     w->relay, tls_verify_result_text(t), policy);
            smtpc_on_closed(&w->sc, HF_ETLS);
            flush_worker_act(w);
            conn_close(c, true);
            return;
        }
        smtpc_on_tls_ready(&w->sc);
    } else {
        const char *why = t ? tls_verify_result_text(t) : "";
        log_info("flush domain=%s relay=%s tls handshake failed policy=%s%s%s", w->run->domain,
                 w->relay, policy, why[0] ? " verify=" : "", why);
        snprintf(w->why, sizeof(w->why), "%s: TLS handshake failed%s%s (policy %s)", w->relay,
                 why[0] ? ": " : "", why, policy);
        smtpc_on_closed(&w->sc, HF_ETLS);
    }
    flush_worker_act(w);
}

/* smtpc saw "220" to STARTTLS: switch the connection to TLS with the domain's checks. */
static int flush_worker_starttls(struct flush_worker *w)
{
    struct flush_run *run = w->run;
    struct relayd *rd = run->fl->rd;
    const char *policy = flush_tls_policy(run);
    const struct mx_attempt *a = &run->attempts[w->attempt];
    bool check = strcmp(policy, "verify") == 0 ||
                 (strcmp(policy, "dane") == 0 && run->tlsa[w->attempt].secure &&
                  run->tlsa[w->attempt].n > 0);
    /* The reference identity is the MX host name from DNS (RFC 7672 3.2.2 / RFC 6125); a
     * static next hop has none to check. */
    const char *host = run->static_hop ? NULL : a->host;
    if (check && !host) {
        log_warn("flush domain=%s tls=%s cannot be checked on a static next hop (no MX host "
                 "name to verify); delivery deferred",
                 run->domain, policy);
        snprintf(w->why, sizeof(w->why),
                 "%s: tls = %s needs an MX host name to verify; a static next_hop has none",
                 w->relay, policy);
        return HF_ETLS;
    }
    struct tls_conn *t = NULL;
    int rc;
    w->dane_required = false;
    const struct flush_tlsa *ta = &run->tlsa[w->attempt];
    if (strcmp(policy, "dane") == 0 && ta->secure && ta->n > 0) {
        /* RFC 7672 2.2: usable, DNSSEC-validated TLSA records authenticate the server;
         * without any usable one the session is encrypted but not authenticated. */
        rc = tls_conn_new(rd->tls_client, false, host, TLS_VERIFY_DANE, &t);
        if (rc < 0)
            return rc;
        size_t usable = 0;
        for (size_t i = 0; i < ta->n; i++)
            if (tls_dane_add(t, ta->rr[i].usage, ta->rr[i].selector, ta->rr[i].mtype,
                             ta->rr[i].data, ta->rr[i].len) == 0)
                usable++;
        if (usable == 0) {
            tls_conn_free(t);
            t = NULL;
            rc = tls_conn_new(rd->tls_client, false, host, TLS_VERIFY_NONE, &t);
            log_info("flush domain=%s relay=%s dane: no usable TLSA record, encrypting without "
                     "authentication (RFC 7672 2.2)",
                     run->domain, w->relay);
        } else {
            w->dane_required = true;
        }
    } else {
        bool chain = strcmp(policy, "verify") == 0;
        rc = tls_conn_new(rd->tls_client, false, host,
                          chain ? TLS_VERIFY_CHAIN_AND_HOST : TLS_VERIFY_NONE, &t);
    }
    if (rc < 0)
        return rc;
    tls_conn_set_log_id(t, run->domain);
    rc = conn_start_tls(w->conn, t, flush_tls_ready);
    if (rc == 0)
        w->tls_switch = true;
    return rc;
}

/* Acts on the machine's actions until none is left. */
static void flush_worker_act(struct flush_worker *w)
{
    for (int guard = 0; guard < 100000; guard++) {
        unsigned act = smtpc_take_actions(&w->sc);
        if (!act)
            return;
        if (act & SMTPC_ACT_WRITE) {
            size_t len = 0;
            char *out = smtpc_out_take(&w->sc, &len);
            int rc = 0;
            if (out && len && w->conn && !conn_is_closing(w->conn))
                rc = conn_write(w->conn, out, len);
            free(out);
            if (rc < 0) {
                smtpc_on_closed(&w->sc, rc);
                continue;
            }
        }
        if (act & SMTPC_ACT_STARTTLS) {
            int rc = flush_worker_starttls(w);
            if (rc < 0) {
                smtpc_on_closed(&w->sc, rc);
                continue;
            }
        }
        if ((act & SMTPC_ACT_BODY) && w->cur)
            flush_worker_body(w);
        if ((act & SMTPC_ACT_MSG_DONE) && w->cur) {
            flush_record(w->run, w->cur, w->relay, w->tls_desc, w->sc.rcpt_res, NULL);
            w->cur = NULL;
        }
        if (act & SMTPC_ACT_NEXT)
            flush_worker_next(w);
        if (act & SMTPC_ACT_CLOSE) {
            if (w->conn && !conn_is_closing(w->conn))
                conn_close(w->conn, false);
        }
    }
}

static void flush_on_read(struct conn *c, const char *data, size_t len)
{
    struct flush_worker *w = conn_data(c);
    if (!w || !w->sc_live)
        return;
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (ch == '\n') {
            size_t l = w->line_len;
            if (l && w->line[l - 1] == '\r')
                l--;
            w->line_len = 0;
            smtpc_on_line(&w->sc, w->line, l);
            flush_worker_act(w);
            if (w->sc.state == SMTPC_ST_DONE || !conn_data(c))
                return;
            if (w->tls_switch) {
                /* RFC 3207 5: nothing the server sent after its 220 counts; the TLS layer
                 * takes over the stream from the next read. */
                w->tls_switch = false;
                w->line_len = 0;
                return;
            }
            continue;
        }
        if (w->line_len >= sizeof(w->line) - 1) {
            /* A reply line this long is not SMTP (RFC 5321 4.5.3.1.5: 512 octets). */
            w->line_len = 0;
            smtpc_on_closed(&w->sc, HF_EPROTO);
            flush_worker_act(w);
            conn_close(c, true);
            return;
        }
        w->line[w->line_len++] = ch;
    }
    /* RFC 5321 4.5.3.2: 5 minutes per reply, 10 for the final dot. */
    conn_set_timeout(c, w->sc.state == SMTPC_ST_DOT ? 600000 : 300000);
}

static void flush_on_eof(struct conn *c, int status)
{
    struct flush_worker *w = conn_data(c);
    if (w && w->sc_live && w->sc.state != SMTPC_ST_DONE) {
        smtpc_on_closed(&w->sc, status == UV_EOF ? -ECONNRESET : status);
        flush_worker_act(w);
    }
    conn_close(c, true);
}

static void flush_on_timeout(struct conn *c)
{
    struct flush_worker *w = conn_data(c);
    if (w && w->sc_live && w->sc.state != SMTPC_ST_DONE) {
        log_info("flush domain=%s relay=%s timeout in state %s", w->run->domain, w->relay,
                 smtpc_state_name(w->sc.state));
        smtpc_on_closed(&w->sc, -ETIMEDOUT);
        flush_worker_act(w);
    }
    conn_close(c, true);
}

/* The connection is closed: if the session failed before any message was tried, try the
 * next exchanger; otherwise this worker is done. */
static void flush_on_close(struct conn *c)
{
    struct flush_worker *w = conn_data(c);
    if (!w)
        return;
    w->conn = NULL;
    bool session_failed = w->sc_live && (w->sc.session.outcome == SMTPC_DEFER ||
                                          w->sc.session.outcome == SMTPC_FAIL);
    if (w->sc_live && session_failed) {
        char text[SMTPC_TEXT_MAX + 32];
        if (w->why[0])
            snprintf(text, sizeof(text), "%s", w->why);
        else if (w->sc.session.code)
            snprintf(text, sizeof(text), "%s: %d %s", w->relay, w->sc.session.code,
                     w->sc.session.text);
        else
            snprintf(text, sizeof(text), "%s: %s", w->relay, w->sc.session.text);
        for (char *p = text; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        snprintf(w->run->sum.error, sizeof(w->run->sum.error), "%s", text);
    }
    if (w->cur && !w->cur->done) {
        struct smtpc_result res;
        memset(&res, 0, sizeof(res));
        res.outcome = SMTPC_DEFER;
        snprintf(res.text, sizeof(res.text), "connection to %s lost", w->relay);
        flush_record(w->run, w->cur, w->relay, NULL, NULL, &res);
        w->cur = NULL;
    }
    if (w->sc_live) {
        smtpc_close(&w->sc);
        w->sc_live = false;
    }
    /* Messages remain and this host refused or failed the session: next exchanger. */
    bool left = w->run->next_item < w->run->nitems;
    if (session_failed && left && !w->run->fl->stopping &&
        w->attempt + 1 < w->run->nattempts) {
        w->attempt++;
        flush_worker_start(w);
        return;
    }
    flush_worker_end(w);
}

static void flush_on_connect(struct conn *c, int status)
{
    struct flush_worker *w = conn_data(c);
    struct flush_run *run = w->run;
    if (status < 0) {
        log_info("flush domain=%s relay=%s connect failed err=%s (%s)", run->domain, w->relay,
                 hf_errname(status), uv_strerror(status));
        snprintf(run->sum.error, sizeof(run->sum.error), "connect to %s failed: %s", w->relay,
                 uv_strerror(status));
        conn_set_data(c, NULL);
        w->conn = NULL;
        if (!run->fl->stopping && w->attempt + 1 < run->nattempts) {
            w->attempt++;
            flush_worker_start(w);
        } else {
            flush_worker_end(w);
        }
        return;
    }
    const char *policy = flush_tls_policy(run);
    struct smtpc_opts o = {
        .mode = SMTPC_MODE_DELIVER,
        .helo = run->fl->rd->prm.hostname,
        .log_id = run->domain,
        .tls = strcmp(policy, "none") == 0  ? SMTPC_TLS_NEVER
               : strcmp(policy, "may") == 0 ? SMTPC_TLS_OPPORTUNISTIC
                                            : SMTPC_TLS_REQUIRED,
    };
    /* dane: TLS is mandatory only where secure TLSA records exist (RFC 7672 2.2); an
     * exchanger without them is treated opportunistically. */
    if (strcmp(policy, "dane") == 0 &&
        !(run->tlsa[w->attempt].secure && run->tlsa[w->attempt].n > 0))
        o.tls = SMTPC_TLS_OPPORTUNISTIC;
    snprintf(w->tls_desc, sizeof(w->tls_desc), "none");
    w->why[0] = '\0';
    w->tls_switch = false;
    if (smtpc_init(&w->sc, &o) < 0) {
        conn_close(c, true);
        return;
    }
    w->sc_live = true;
    w->line_len = 0;
    log_debug("flush domain=%s relay=%s connected", run->domain, w->relay);
    conn_read_start(c);
    conn_set_timeout(c, 300000);
}

static const struct conn_ops flush_conn_ops = {
    .on_read = flush_on_read,
    .on_eof = flush_on_eof,
    .on_timeout = flush_on_timeout,
    .on_connect = flush_on_connect,
    .on_close = flush_on_close,
};

static void flush_worker_start(struct flush_worker *w)
{
    struct flush_run *run = w->run;
    struct relayd *rd = run->fl->rd;
    for (; w->attempt < run->nattempts; w->attempt++) {
        const struct mx_attempt *a = &run->attempts[w->attempt];
        const struct flush_tlsa *ta = &run->tlsa[w->attempt];
        if (ta->looked_up && ta->status != 0 && ta->status != -ENOENT) {
            /* RFC 7672 2.1.1: a failed TLSA lookup is not "no TLSA": skip this host. */
            snprintf(run->sum.error, sizeof(run->sum.error),
                     "TLSA lookup for %s failed (%s): not delivering there without it", a->host,
                     hf_strerror(ta->status));
            log_info("flush domain=%s host=%s tlsa lookup failed err=%s: skipped", run->domain,
                     a->host, hf_errname(ta->status));
            continue;
        }
        char ip[INET6_ADDRSTRLEN];
        int port = conn_sockaddr_str((const struct sockaddr *)&a->addr, ip, sizeof(ip));
        snprintf(w->relay, sizeof(w->relay), "%s[%s]:%d", a->host, ip, port);
        struct conn *c;
        int rc = conn_connect(rd->loop, (const struct sockaddr *)&a->addr,
                              rd->cfg->timeout_connect * 1000, &flush_conn_ops, w, &c);
        if (rc == 0) {
            w->conn = c;
            return;
        }
        log_info("flush domain=%s relay=%s connect failed err=%s", run->domain, w->relay,
                 hf_errname(rc));
    }
    flush_worker_end(w);
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

static void flush_run_deliver(struct flush_run *run)
{
    struct relayd *rd = run->fl->rd;
    size_t n = rd->cfg->flush_connections;
    if (n > FLUSH_WORKERS_MAX)
        n = FLUSH_WORKERS_MAX;
    if (n > run->nitems)
        n = run->nitems;
    for (size_t i = 0; i < n; i++) {
        struct flush_worker *w = calloc(1, sizeof(*w));
        if (!w)
            break;
        w->run = run;
        run->workers[run->nworkers++] = w;
        run->workers_live++;
    }
    /* Start after all are counted, so an immediate failure cannot finish the run early. */
    for (size_t i = 0; i < run->nworkers; i++)
        if (run->workers[i])
            flush_worker_start(run->workers[i]);
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


struct flush_tlsa_ctx {
    struct flush *fl;
    uint64_t run_id;
    char host[MX_NAME_MAX + 1];
};

static void flush_on_tlsa(const struct dns_tlsa_result *res, void *arg)
{
    struct flush_tlsa_ctx *ctx = arg;
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
    log_info("flush domain=%s tlsa host=%s status=%s secure=%s records=%zu", run->domain,
             ctx->host, hf_errname(res->status), res->secure ? "yes" : "no", res->nrrs);
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
        struct flush_tlsa_ctx *ctx = calloc(1, sizeof(*ctx));
        if (!ctx)
            continue;
        ctx->fl = fl;
        ctx->run_id = run->id;
        snprintf(ctx->host, sizeof(ctx->host), "%s", run->attempts[i].host);
        run->tlsa_pending++;
        int rc = dns_tlsa_resolve(fl->dns, ctx->host, (unsigned)fl->rd->cfg->smtp_port,
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

struct flush_dns_ctx {
    struct flush *fl;
    uint64_t run_id;
};

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
        snprintf(run->sum.error, sizeof(run->sum.error), "DNS lookup of %s failed: %s",
                 run->domain, hf_strerror(res->status));
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
    int rc = plan ? mx_plan(run->domain, res->hosts, res->nhosts, &self, flush_rand, NULL, plan,
                            &nplan)
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
        flush_set_port(&run->attempts[i].addr, (int)fl->rd->cfg->smtp_port);
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
    struct flush_run *run = calloc(1, sizeof(*run));
    if (!run)
        return -ENOMEM;
    run->fl = fl;
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
    run->due_only = due_only;
    struct flush_load ld = {run, 0};
    int rc = queue_scan_rcpts(rd->q, domain, false, flush_load_rcpt, &ld);
    if (rc == 0)
        rc = ld.err;
    /* Messages the operator holds stay where they are. */
    size_t kept = 0;
    for (size_t i = 0; rc == 0 && i < run->nitems; i++) {
        struct flush_item *it = &run->items[i];
        int r = queue_get_env(rd->q, it->id, &it->env);
        if (r < 0 || (it->env.flags & QUEUE_F_HELD)) {
            free(it->rcpts);
            continue;
        }
        run->items[kept++] = *it;
    }
    if (rc == 0)
        run->nitems = kept;
    if (rc < 0 || run->nitems == 0) {
        flush_run_free(run);
        return rc < 0 ? rc : -ENOENT;
    }
    run->sum.messages = run->nitems;
    struct flush_run **v = realloc(fl->active, (fl->nactive + 1) * sizeof(*v));
    if (!v || idmap_put(&fl->runs, run->id, run) < 0) {
        if (v)
            fl->active = v;
        flush_run_free(run);
        return -ENOMEM;
    }
    fl->active = v;
    fl->active[fl->nactive++] = run;
    log_info("flush domain=%s reason=%s messages=%zu started", domain, reason, run->nitems);

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
    struct flush_dns_ctx *ctx = malloc(sizeof(*ctx));
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


/* ---- the retry timer -------------------------------------------------------------------- */

struct flush_due {
    struct flush *fl;
    int64_t now;
    uint64_t last_id;
    bool due;
};

static int flush_due_cb(const struct queue_rcpt *r, void *arg)
{
    struct flush_due *d = arg;
    if (r->state == QUEUE_RS_FAILED || r->next_attempt > d->now)
        return 0;
    if (r->id != d->last_id) { /* a held message does not count */
        d->last_id = r->id;
        struct queue_env env;
        if (queue_get_env(d->fl->rd->q, r->id, &env) == 0 && !(env.flags & QUEUE_F_HELD)) {
            d->due = true;
            return 1;
        }
    }
    return 0;
}

static int flush_retry_domain(const struct queue_domain_stats *st, void *arg)
{
    struct flush *fl = arg;
    struct relayd *rd = fl->rd;
    if (st->held || st->rcpts == 0 || flush_find_active(fl, st->domain))
        return 0;
    /* hold = yes: this domain's mail waits for ETRN, ATRN or relayctl, never the timer. */
    const struct cfg_domain *cd = cfg_find_domain(rd->cfg, st->domain);
    if (cd && cd->hold)
        return 0;
    struct flush_due d = {fl, flush_now(), 0, false};
    queue_scan_rcpts(rd->q, st->domain, false, flush_due_cb, &d);
    if (d.due) {
        int rc = flush_start_run(rd, st->domain, "retry", NULL, true);
        if (rc < 0 && rc != -ENOENT && rc != -EBUSY && rc != -EPERM)
            log_warn("flush domain=%s retry not started err=%s", st->domain, hf_errname(rc));
    }
    return 0;
}

static void flush_on_retry_timer(uv_timer_t *t)
{
    struct flush *fl = t->data;
    if (fl->stopping)
        return;
    queue_scan_domains(fl->rd->q, flush_retry_domain, fl);
}

/* ---- setup ------------------------------------------------------------------------------ */

static int flush_self(struct flush *fl, const struct cfg *c, const char *hostname)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s %s", hostname, c->self_names ? c->self_names : "");
    char *save = NULL;
    for (char *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
        const char **v = realloc(fl->self_names, (fl->nself_names + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        fl->self_names = v;
        if (!(v[fl->nself_names] = strdup(w)))
            return -ENOMEM;
        fl->nself_names++;
    }
    snprintf(buf, sizeof(buf), "%s %s", c->listen ? c->listen : "",
             c->self_addrs ? c->self_addrs : "");
    save = NULL;
    for (char *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
        struct sockaddr_storage ss;
        if (conn_parse_hostport(w, 0, &ss) < 0) {
            log_err("self_addrs: '%s' is not an IP address", w);
            return HF_ECONFIG;
        }
        flush_set_port(&ss, 0);
        struct sockaddr_storage *v =
            realloc(fl->self_addrs, (fl->nself_addrs + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        fl->self_addrs = v;
        v[fl->nself_addrs++] = ss;
    }
    return 0;
}

static void flush_free(struct flush *fl)
{
    for (size_t i = 0; i < fl->nself_names; i++)
        free((char *)fl->self_names[i]);
    free(fl->self_names);
    free(fl->self_addrs);
    idmap_close(&fl->runs);
    free(fl->active);
    free(fl);
}

int flush_init(struct relayd *rd)
{
    struct flush *fl = calloc(1, sizeof(*fl));
    if (!fl)
        return -ENOMEM;
    fl->rd = rd;
    idmap_init(&fl->runs);
    int rc = flush_self(fl, rd->cfg, rd->prm.hostname);
    if (rc < 0)
        goto fail;
    const char *servers = rd->cfg->dns_servers && rd->cfg->dns_servers[0] ? rd->cfg->dns_servers
                                                                         : NULL;
    rc = dns_new(rd->loop, servers, (unsigned)rd->cfg->dns_timeout * 1000, 2, &fl->dns);
    if (rc < 0) {
        log_err("cannot start the DNS resolver servers=%s err=%s", servers ? servers : "system",
                hf_errname(rc));
        goto fail;
    }
    rd->flush = fl;
    if (rd->cfg->retry_interval > 0) {
        uv_timer_init(rd->loop, &fl->retry);
        fl->retry.data = fl;
        fl->retry_armed = true;
        uint64_t ms = rd->cfg->retry_interval * 1000;
        uv_timer_start(&fl->retry, flush_on_retry_timer, ms, ms);
    }
    return 0;
fail:
    flush_free(fl);
    return rc < 0 ? rc : HF_ECONFIG;
}

void flush_shutdown(struct relayd *rd)
{
    struct flush *fl = rd->flush;
    if (!fl)
        return;
    fl->stopping = true;
    /* Running deliveries end after their current message (workers quit instead of taking
     * the next one); aborting connections defers whatever is in flight. */
    for (size_t i = 0; i < fl->nactive; i++) {
        struct flush_run *run = fl->active[i];
        for (size_t j = 0; j < run->nworkers; j++)
            if (run->workers[j] && run->workers[j]->conn)
                conn_close(run->workers[j]->conn, true);
    }
    dns_free(fl->dns);
    fl->dns = NULL;
    if (fl->retry_armed) {
        uv_timer_stop(&fl->retry);
        uv_close((uv_handle_t *)&fl->retry, NULL);
        fl->retry_armed = false;
    }
}

/* Frees the module once nothing is running; called by main after the loop ends. */
void flush_free_all(struct relayd *rd)
{
    struct flush *fl = rd->flush;
    if (!fl)
        return;
    while (fl->nactive) {
        struct flush_run *run = fl->active[--fl->nactive];
        flush_run_free(run);
    }
    flush_free(fl);
    rd->flush = NULL;
}
