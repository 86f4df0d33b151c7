/* The ETRN command's glue (RFC 1985): who may ask and who gets counts, which queued domains
 * the argument names, rate limits, and the reply; the queue runs themselves are flush.c's.
 * Decisions are etrn.c's (pure); this file gathers their inputs from the configuration, the
 * queue's read side and the running flushes. */
#include "etrn_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "conn.h"
#include "dns.h"
#include "etrn.h"
#include "flush.h"
#include "hf_err.h"
#include "log.h"
#include "rate.h"
#include "mx.h"
#include "smtp_cmd.h"

struct etrn_io {
    struct etrn_nets allow, trusted;
    struct rate rate_client, rate_domain;
};

struct etrn_io_domains {
    char (*names)[256];
    size_t n, cap;
};

static void etrn_io_add(struct etrn_io_domains *ds, const char *name)
{
    for (size_t i = 0; i < ds->n; i++)
        if (strcmp(ds->names[i], name) == 0)
            return;
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 8;
        char(*v)[256] = realloc(ds->names, cap * sizeof(*v));
        if (!v)
            return;
        ds->names = v;
        ds->cap = cap;
    }
    snprintf(ds->names[ds->n++], 256, "%s", name);
}

struct etrn_io_scan {
    const struct etrn_req *req;
    const struct cfg *cfg;
    struct etrn_io_domains *ds;
};

/* Collects the queue's domains that the request names: for @d every queued domain at or
 * below d that we serve; for #group every queued domain of the group's sections. */
static int etrn_io_scan_cb(const struct queue_domain_stats *s, void *arg)
{
    struct etrn_io_scan *sc = arg;
    const struct cfg_domain *cd = cfg_find_domain(sc->cfg, s->domain);
    if (!cd)
        return 0;
    if (sc->req->kind == ETRN_SUBTREE) {
        if (addr_domain_matches(s->domain, sc->req->name, true))
            etrn_io_add(sc->ds, s->domain);
        return 0;
    }
    if (sc->req->kind == ETRN_GROUP) {
        for (size_t g = 0; g < sc->cfg->ngroups; g++) {
            if (strcmp(sc->cfg->groups[g].name, sc->req->name) != 0)
                continue;
            char buf[4096];
            snprintf(buf, sizeof(buf), "%s", sc->cfg->groups[g].domains);
            char *save = NULL;
            for (char *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
                addr_lower(w);
                const struct cfg_domain *gd = cfg_find_domain(sc->cfg, w);
                if (gd && addr_domain_matches(s->domain, w, gd->subdomains))
                    etrn_io_add(sc->ds, s->domain);
            }
        }
    }
    return 0;
}

struct etrn_io_pending {
    uint64_t last_id;
    uint64_t n;
};

static int etrn_io_pending_cb(const struct queue_rcpt *r, void *arg)
{
    struct etrn_io_pending *p = arg;
    if (r->state != QUEUE_RS_FAILED && r->id != p->last_id) {
        p->last_id = r->id;
        p->n++;
    }
    return 0;
}

/* Messages of domain with at least one recipient that may still be delivered. */
static uint64_t etrn_io_count_pending(struct relayd *rd, const char *domain)
{
    struct etrn_io_pending p = {0, 0};
    queue_scan_rcpts(rd->q, domain, false, etrn_io_pending_cb, &p);
    return p.n;
}

/* One ETRN waiting for the DNS check of its client. */
struct etrn_io_req {
    struct relayd *rd;
    uint64_t sid;
    char client_addr[64];
    struct sockaddr_storage client;
    char arg[SMTP_CMD_LINE_MAX + 1];
    struct etrn_req req;
    struct etrn_ctx ctx;
    bool served;
};

static void etrn_io_finish(struct etrn_io_req *q);

/* RFC 1985 leaves it to the server whom to tell how much is queued: a client connecting from
 * one of the domain's own MX hosts is the domain's side, so it gets the counts. */
static void etrn_io_on_mx(const struct dns_mx_result *res, void *arg)
{
    struct etrn_io_req *q = arg;
    if (res->status == 0) {
        struct mx_self client = {NULL, 0, &q->client, 1};
        for (size_t i = 0; i < res->nhosts && !q->ctx.trusted; i++)
            for (size_t j = 0; j < res->hosts[i].naddrs && !q->ctx.trusted; j++)
                q->ctx.trusted = mx_self_has_addr(&client, &res->hosts[i].addrs[j]);
        if (q->ctx.trusted)
            log_info("c=%llu etrn client=[%s] is an MX host of %s: trusted",
                     (unsigned long long)q->sid, q->client_addr, q->req.name);
    }
    if (res->status == -ECANCELED) { /* shutting down: the session gets its 421 elsewhere */
        free(q);
        return;
    }
    etrn_io_finish(q);
}

static void etrn_io_etrn(struct relayd *rd, uint64_t sid, const char *client_addr, const char *user,
                         const char *arg)
{
    struct etrn_io *fl = rd->etrn_state;
    struct etrn_io_req *q = calloc(1, sizeof(*q));
    if (!q) {
        smtpd_io_etrn_done(rd, sid, 458, "4.3.0", "Unable to queue messages now: out of memory");
        return;
    }
    q->rd = rd;
    q->sid = sid;
    snprintf(q->client_addr, sizeof(q->client_addr), "%s", client_addr);
    snprintf(q->arg, sizeof(q->arg), "%s", arg);
    struct etrn_req req;
    if (etrn_parse(arg, &req) < 0) {
        char safe[300], note[400];
        snprintf(note, sizeof(note), "etrn arg=%s reply=501", log_safe(arg, safe, sizeof(safe)));
        smtpd_io_note(rd, sid, note); /* the 501 reply logs the refusal */
        smtpd_io_etrn_done(rd, sid, 501, "5.5.4", "Syntax error in parameters");
        free(q);
        return;
    }
    q->req = req;
    struct sockaddr_storage client;
    bool have_client = conn_parse_hostport(client_addr, 0, &client) == 0;
    q->client = client;
    bool served = etrn_match(rd->cfg, &req, NULL, NULL) > 0;
    q->served = served;
    struct etrn_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.allowed = have_client && etrn_nets_match(&fl->allow, &client);
    ctx.auth_ok = !rd->cfg->etrn_require_auth || user != NULL;
    ctx.trusted = have_client && etrn_nets_match(&fl->trusted, &client);
    /* An authenticated user allowed to release the named domain is trusted with counts. */
    if (!ctx.trusted && user && rd->auth_loaded && req.kind != ETRN_GROUP) {
        const struct auth_user *u = auth_user_find(rd->auth, user);
        ctx.trusted = u && auth_user_may_release(u, req.name);
    }
    if (!ctx.trusted && have_client && req.kind != ETRN_GROUP) {
        const struct cfg_domain *cd = cfg_find_domain(rd->cfg, req.name);
        if (cd && cd->etrn_allow) {
            struct etrn_nets extra;
            if (etrn_nets_parse(cd->etrn_allow, &extra, NULL) == 0) {
                ctx.trusted = etrn_nets_match(&extra, &client);
                etrn_nets_free(&extra);
            }
        }
    }
    ctx.client_rate_ok = rate_take(&fl->rate_client, rate_key(client_addr), (int64_t)time(NULL),
                                   (uint32_t)rd->cfg->etrn_rate_client);
    q->ctx = ctx;
    /* Still untrusted: is the client one of the domain's MX hosts? (Asked only for a request
     * that will otherwise be answered, so a refused or rate-limited client costs no DNS.) */
    struct dns *dns = flush_dns(rd);
    if (!ctx.trusted && have_client && served && req.kind != ETRN_GROUP && ctx.allowed &&
        ctx.auth_ok && ctx.client_rate_ok && dns &&
        dns_mx_resolve(dns, req.name, etrn_io_on_mx, q) == 0)
        return;
    etrn_io_finish(q);
}

/* Counts what is queued, decides, starts the runs and answers; frees q. */
static void etrn_io_finish(struct etrn_io_req *q)
{
    struct relayd *rd = q->rd;
    struct etrn_io *fl = rd->etrn_state;
    struct etrn_req req = q->req;
    struct etrn_ctx ctx = q->ctx;
    bool served = q->served;
    uint64_t sid = q->sid;
    const char *client_addr = q->client_addr;
    const char *arg = q->arg;
    int64_t now = (int64_t)time(NULL);

    struct etrn_io_domains ds = {0};
    if (served && req.kind == ETRN_DOMAIN) {
        etrn_io_add(&ds, req.name);
    } else if (served) {
        struct etrn_io_scan sc = {&req, rd->cfg, &ds};
        queue_scan_domains(rd->q, etrn_io_scan_cb, &sc);
    }
    size_t startable = 0, held = 0, running = 0;
    for (size_t i = 0; i < ds.n; i++) {
        struct queue_domain_stats st;
        if (queue_domain_stats(rd->q, ds.names[i], &st) < 0 || st.messages == 0) {
            ds.names[i][0] = '\0';
            continue;
        }
        /* The counters include recipients that failed for good and wait for their bounce;
         * only the others are pending. Counting them is a scan of this domain's keys. */
        uint64_t pending = etrn_io_count_pending(rd, ds.names[i]);
        if (pending == 0) {
            ds.names[i][0] = '\0';
            continue;
        }
        ctx.messages += pending;
        if (st.held)
            held++;
        else if (flush_running(rd, ds.names[i]))
            running++;
        else
            startable++;
    }
    ctx.held = ctx.messages > 0 && startable == 0 && running == 0 && held > 0;
    ctx.running = ctx.messages > 0 && startable == 0 && running > 0;
    ctx.domain_rate_ok = true;
    if (served && startable > 0 && ctx.allowed && ctx.auth_ok && ctx.client_rate_ok)
        ctx.domain_rate_ok =
            rate_take(&fl->rate_domain, rate_key(arg), now, (uint32_t)rd->cfg->etrn_rate_domain);
    struct etrn_reply rep;
    etrn_decide(&req, served, &ctx, &rep);
    if (rep.start) {
        for (size_t i = 0; i < ds.n; i++) {
            if (!ds.names[i][0])
                continue;
            int rc = flush_start(rd, ds.names[i], "etrn", NULL);
            if (rc < 0 && rc != -EBUSY && rc != -ENOENT && rc != -EPERM)
                log_warn("flush domain=%s not started err=%s", ds.names[i], hf_errname(rc));
        }
    }
    free(ds.names);
    static const int codes[] = {250, 251, 252, 253, 458, 459};
    for (size_t i = 0; i < 6; i++)
        if (codes[i] == rep.code)
            rd->stats.etrn[i]++;
    char safe[300];
    if (rep.code >= 400) { /* a refusal: its reply logs the one line, with these fields */
        char note[400];
        snprintf(note, sizeof(note), "etrn arg=%s trusted=%s reply=%d messages=%llu",
                 log_safe(arg, safe, sizeof(safe)), ctx.trusted ? "yes" : "no", rep.code,
                 (unsigned long long)ctx.messages);
        smtpd_io_note(rd, sid, note);
    } else {
        log_info("c=%llu etrn arg=%s client=[%s] trusted=%s reply=%d messages=%llu",
                 (unsigned long long)sid, log_safe(arg, safe, sizeof(safe)), client_addr,
                 ctx.trusted ? "yes" : "no", rep.code, (unsigned long long)ctx.messages);
    }
    smtpd_io_etrn_done(rd, sid, rep.code, rep.enh, rep.text);
    free(q);
}

static void etrn_io_free_state(struct etrn_io *e)
{
    etrn_nets_free(&e->allow);
    etrn_nets_free(&e->trusted);
    rate_close(&e->rate_client);
    rate_close(&e->rate_domain);
    free(e);
}

int etrn_io_init(struct relayd *rd)
{
    struct etrn_io *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    size_t bad = 0;
    int rc = etrn_nets_parse(rd->cfg->etrn_allow, &e->allow, &bad);
    if (rc < 0) {
        log_err("etrn_allow: entry %zu is not an address or network", bad + 1);
        goto fail;
    }
    rc = etrn_nets_parse(rd->cfg->etrn_trusted, &e->trusted, &bad);
    if (rc < 0) {
        log_err("etrn_trusted: entry %zu is not an address or network", bad + 1);
        goto fail;
    }
    rc = rate_init(&e->rate_client, 4096);
    if (rc == 0)
        rc = rate_init(&e->rate_domain, 1024);
    if (rc < 0)
        goto fail;
    rd->etrn_state = e;
    rd->etrn = etrn_io_etrn;
    return 0;
fail:
    etrn_io_free_state(e);
    return rc == -EINVAL ? HF_ECONFIG : rc;
}

int etrn_io_reload(struct relayd *rd, const struct cfg *c)
{
    struct etrn_io *e = rd->etrn_state;
    if (!e)
        return 0;
    struct etrn_nets allow = {0}, trusted = {0};
    size_t bad = 0;
    int rc = etrn_nets_parse(c->etrn_allow, &allow, &bad);
    if (rc < 0) {
        log_err("etrn_allow: entry %zu is not an address or network", bad + 1);
    } else {
        rc = etrn_nets_parse(c->etrn_trusted, &trusted, &bad);
        if (rc < 0)
            log_err("etrn_trusted: entry %zu is not an address or network", bad + 1);
    }
    if (rc < 0) {
        etrn_nets_free(&allow);
        etrn_nets_free(&trusted);
        return rc == -EINVAL ? HF_ECONFIG : rc;
    }
    etrn_nets_free(&e->allow);
    etrn_nets_free(&e->trusted);
    e->allow = allow;
    e->trusted = trusted;
    return 0;
}

void etrn_io_shutdown(struct relayd *rd)
{
    rd->etrn = NULL;
}

void etrn_io_free(struct relayd *rd)
{
    if (rd->etrn_state)
        etrn_io_free_state(rd->etrn_state);
    rd->etrn_state = NULL;
}
