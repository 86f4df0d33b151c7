/* ATRN's release (see flush_atrn.h). Replies, RFC 2645 4.2:
 *   250 2.0.0 OK now reversing the connection
 *   450 4.7.1 ATRN request refused     a named domain is not the user's
 *   451 4.3.0 Unable to process ATRN request now   a release of one of them is running,
 *             the operator holds a named one, or the relay is shutting down
 *   453 4.2.0 You have no mail          nothing waits for any of the domains
 *   501 5.5.4 syntax (too many or bad domain names)
 * Each answer is logged: the refusals by the reply door's refusal line (smtpd_out.c), a
 * release by "atrn start" here and "atrn done" (flush.c) at the end. */
#include "flush_atrn.h"

#include "atrn.h"
#include "flush_conn.h"
#include "flush_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hf_err.h"
#include "log.h"
#include "snap.h"

static void atrn_reply_set(struct atrn_reply *rep, int code, const char *enh, const char *fmt,
                           ...) __attribute__((format(printf, 4, 5)));
static void atrn_reply_set(struct atrn_reply *rep, int code, const char *enh, const char *fmt,
                           ...)
{
    va_list ap;
    rep->code = code;
    snprintf(rep->enh, sizeof(rep->enh), "%s", enh);
    va_start(ap, fmt);
    vsnprintf(rep->text, sizeof(rep->text), fmt, ap);
    va_end(ap);
}

static bool atrn_serves(void *arg, const char *domain)
{
    return policy_serves(arg, domain);
}

struct atrn_queued {
    const char *v[ATRN_DOMAINS_MAX];
    char names[ATRN_DOMAINS_MAX][256];
    size_t n;
};

static int atrn_collect(const struct queue_domain_stats *s, void *arg)
{
    struct atrn_queued *q = arg;
    if (s->rcpts == 0 || s->held)
        return 0;
    if (q->n >= ATRN_DOMAINS_MAX)
        return 1;
    snprintf(q->names[q->n], sizeof(q->names[q->n]), "%s", s->domain);
    q->v[q->n] = q->names[q->n];
    q->n++;
    return 0;
}

static int flush_atrn_decide(struct relayd *rd, const struct atrn_req *req,
                             struct atrn_reply *rep)
{
    struct flush *fl = rd->flush;
    memset(rep, 0, sizeof(*rep));
    if (!fl || fl->stopping) {
        atrn_reply_set(rep, 451, "4.3.0", "Unable to process ATRN request now: shutting down");
        return 0;
    }
    const struct auth_user *u = auth_user_find(&rd->snap->auth, req->user);
    struct atrn_queued q = {.n = 0};
    if (!req->arg[0] && u && u->all_domains)
        (void)queue_scan_domains(rd->q, atrn_collect, &q);
    struct atrn_ask ask;
    char why[256];
    int rc = atrn_ask_domains(u, req->arg, atrn_serves, rd->policy, q.v, q.n, &ask, why,
                              sizeof(why));
    if (rc == 450) {
        atrn_reply_set(rep, 450, "4.7.1", "ATRN request refused: %s is not yours to release",
                       why);
        return 0;
    }
    if (rc == 501) {
        atrn_reply_set(rep, 501, "5.5.4", "Syntax: ATRN [domain[,domain...]] (at most %d)",
                       ATRN_DOMAINS_MAX);
        return 0;
    }
    /* Busy or held: only with mail waiting does a domain matter. */
    const char *use[ATRN_DOMAINS_MAX];
    size_t nuse = 0;
    for (size_t i = 0; i < ask.n; i++) {
        const char *d = ask.domains[i];
        struct queue_domain_stats ds;
        if (queue_domain_stats(rd->q, d, &ds) < 0 || ds.rcpts == 0)
            continue;
        if (ds.held) {
            if (ask.named) {
                atrn_reply_set(rep, 451, "4.3.0",
                               "Unable to process ATRN request now: %s is held by the operator",
                               d);
                return 0;
            }
            continue;
        }
        if (flush_find_active(fl, d)) {
            atrn_reply_set(rep, 451, "4.3.0",
                           "Unable to process ATRN request now: a release of %s is running", d);
            return 0;
        }
        use[nuse++] = d;
    }
    if (nuse == 0) {
        atrn_reply_set(rep, 453, "4.2.0", "You have no mail");
        return 0;
    }
    struct flush_run *run = flush_run_new(rd, use[0], "atrn", NULL);
    if (!run)
        goto nomem;
    if (nuse > 1 && !(run->also = calloc(nuse - 1, sizeof(*run->also))))
        goto nomem_run;
    for (size_t i = 0; i < nuse; i++) {
        if (i > 0 && !(run->also[run->nalso++] = strdup(use[i])))
            goto nomem_run;
        rc = flush_run_load(run, use[i]);
        if (rc < 0) {
            flush_run_free(run);
            atrn_reply_set(rep, 451, "4.3.0",
                           "Unable to process ATRN request now: the queue cannot be read");
            log_err("atrn user=%s cannot read the queue for %s err=%s", req->user, use[i],
                    hf_errname(rc));
            return 0;
        }
    }
    if (run->nitems == 0) { /* everything waiting is in expiry's hands or held per message */
        flush_run_free(run);
        atrn_reply_set(rep, 453, "4.2.0", "You have no mail");
        return 0;
    }
    char doms[600];
    size_t o = 0;
    for (size_t i = 0; i < nuse && o < sizeof(doms); i++)
        o += (size_t)snprintf(doms + o, sizeof(doms) - o, "%s%s", i ? "," : "", use[i]);
    char u8[300], tls[160];
    /* "TLSv1.3 with cipher X" -> "TLSv1.3,X": one field in the audit line. */
    const char *wc = strstr(req->tls, " with cipher ");
    if (wc)
        snprintf(tls, sizeof(tls), "%.*s,%s", (int)(wc - req->tls), req->tls, wc + 13);
    else
        snprintf(tls, sizeof(tls), "%s", req->tls[0] ? req->tls : "none");
    snprintf(run->audit, sizeof(run->audit), "user=%s client=[%s]:%d domains=%s tls=%s",
             log_safe(req->user, u8, sizeof(u8)), req->client_addr, req->client_port, doms, tls);
    struct flush_worker *w = calloc(1, sizeof(*w));
    if (!w)
        goto nomem_run;
    if (flush_run_register(run) < 0) {
        free(w);
        goto nomem_run;
    }
    w->run = run;
    w->own = &flush_run_conn_owner;
    run->workers[run->nworkers++] = w;
    run->workers_live++;
    log_info("atrn start %s messages=%zu bytes=%llu", run->audit, run->nitems,
             (unsigned long long)run->bytes);
    atrn_reply_set(rep, 250, "2.0.0", "OK now reversing the connection");
    rep->release = w;
    return 0;
nomem_run:
    flush_run_free(run);
nomem:
    atrn_reply_set(rep, 451, "4.3.0", "Unable to process ATRN request now: out of memory");
    return 0;
}

static void flush_atrn_begin(struct relayd *rd, void *release, struct conn *c, const char *pre,
                             size_t prelen)
{
    struct flush_worker *w = release;
    char relay[MX_NAME_MAX + 64];
    snprintf(relay, sizeof(relay), "odmr[%s]:%d", conn_peer_addr(c), conn_peer_port(c));
    if (conn_is_closing(c)) {
        w->own->note(w->run, relay, "the ODMR client left before the reversal");
        struct flush_run *run = w->run;
        w->own->worker_done(run, w); /* every message stays queued (deferred) */
        free(w);
        return;
    }
    flush_conn_adopt(w, c, relay, pre, prelen, rd->cfg->timeout_atrn * 1000);
}

void flush_atrn_install(struct relayd *rd)
{
    rd->atrn = flush_atrn_decide;
    rd->atrn_begin = flush_atrn_begin;
}
