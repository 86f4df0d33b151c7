/* Control socket and metrics endpoint (see ctl.h).
 *
 * A control connection reads one request line (at most 4 KiB), acts, writes its answer and
 * closes; FLUSH ... WAIT stays open until every run it started has ended, sending one event
 * line per recipient. Changes to the queue go through the writer thread like everything
 * else; their answers are matched to the connection by id, so a client that hung up is
 * simply not found. */
#include "ctl.h"
#include "ctl_int.h"
#include "ctl_names.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "flush.h"
#include "hf_err.h"
#include "log.h"

static void ctl_client_closed(uv_handle_t *h)
{
    struct ctl_client *c = h->data;
    free(h);
    free(c);
}

static void ctl_close(struct ctl_client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    idmap_del(&c->ctl->clients, c->id);
    uv_close((uv_handle_t *)c->stream, ctl_client_closed);
}

static void ctl_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void ctl_send(struct ctl_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void ctl_send(struct ctl_client *c, const char *fmt, ...)
{
    if (c->closing)
        return;
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    struct ctl_wreq *w = malloc(sizeof(*w) + len);
    if (!w)
        return;
    memcpy(w->buf, buf, len);
    uv_buf_t b = uv_buf_init(w->buf, (unsigned)len);
    if (uv_write(&w->req, c->stream, &b, 1, ctl_written) < 0)
        free(w);
}

/* Ends the answer once nothing more is awaited. */
static void ctl_maybe_end(struct ctl_client *c)
{
    if (c->waiting_runs || c->waiting_updates)
        return;
    ctl_send(c, "end\n");
    ctl_close(c);
}

/* ---- for request handlers in other files (ctl_life.c) ----------------------------------- */

static void ctl_reply_line(struct relayd *rd, uint64_t client, const char *text)
{
    struct ctl *ctl = rd->ctl;
    struct ctl_client *c = ctl ? idmap_get(&ctl->clients, client) : NULL;
    if (c)
        ctl_send(c, "%s", text);
}

static void ctl_reply_wait(struct relayd *rd, uint64_t client, int delta)
{
    struct ctl *ctl = rd->ctl;
    struct ctl_client *c = ctl ? idmap_get(&ctl->clients, client) : NULL;
    if (c && delta > 0) {
        c->waiting_updates++;
    } else if (c) {
        if (delta < 0 && c->waiting_updates)
            c->waiting_updates--;
        ctl_maybe_end(c);
    }
}

static const struct ctl_reply ctl_replies = {ctl_reply_line, ctl_reply_wait};

/* ---- FLUSH ------------------------------------------------------------------------------ */

static void ctl_watch_rcpt(void *arg, uint64_t token, const char *qid, const char *addr,
                           const char *relay, const char *tls, const char *status, const char *text)
{
    struct ctl *ctl = arg;
    struct ctl_client *c = idmap_get(&ctl->clients, token);
    if (!c)
        return;
    if (strcmp(status, "sent") == 0)
        c->sent++;
    else if (strcmp(status, "bounced") == 0)
        c->bounced++;
    else
        c->deferred++;
    ctl_send(c, "event %s to=<%s> relay=%s%s%s status=%s (%s)\n", qid, addr, relay,
             tls ? " tls=" : "", tls ? tls : "", status, text);
}

static void ctl_watch_done(void *arg, uint64_t token, const struct flush_summary *s)
{
    struct ctl *ctl = arg;
    struct ctl_client *c = idmap_get(&ctl->clients, token);
    if (!c)
        return;
    ctl_send(c, "event done domain=%s messages=%llu sent=%llu deferred=%llu bounced=%llu%s%s\n",
             s->domain, (unsigned long long)s->messages, (unsigned long long)s->sent,
             (unsigned long long)s->deferred, (unsigned long long)s->failed,
             s->error[0] ? " last_error=" : "", s->error);
    if (c->waiting_runs)
        c->waiting_runs--;
    ctl_maybe_end(c);
}

struct ctl_domains {
    char (*v)[256];
    size_t n;
    const char *parent; /* NULL: all */
};

static int ctl_collect_domain(const struct queue_domain_stats *s, void *arg)
{
    struct ctl_domains *d = arg;
    if (d->parent && !addr_domain_matches(s->domain, d->parent, true))
        return 0;
    char(*v)[256] = realloc(d->v, (d->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    d->v = v;
    snprintf(v[d->n++], 256, "%s", s->domain);
    return 0;
}

static void ctl_flush(struct ctl_client *c, const char *what, bool wait)
{
    struct relayd *rd = c->ctl->rd;
    struct ctl_domains ds = {0};
    if (strcmp(what, "--all") == 0) {
        queue_scan_domains(rd->q, ctl_collect_domain, &ds);
    } else if (what[0] == '@') {
        ds.parent = what + 1;
        queue_scan_domains(rd->q, ctl_collect_domain, &ds);
    } else {
        ds.v = malloc(sizeof(*ds.v));
        if (ds.v)
            snprintf(ds.v[ds.n++], 256, "%s", what);
    }
    if (ds.n == 0) {
        ctl_send(c, "ok nothing queued for %s\n", what);
        free(ds.v);
        ctl_maybe_end(c);
        return;
    }
    struct flush_watch watch = {ctl_watch_rcpt, ctl_watch_done, c->ctl, c->id};
    for (size_t i = 0; i < ds.n; i++) {
        int rc = flush_start(rd, ds.v[i], "relayctl", wait ? &watch : NULL);
        if (rc == 0) {
            ctl_send(c, "ok flush started domain=%s\n", ds.v[i]);
            if (wait)
                c->waiting_runs++;
        } else if (rc == -EBUSY) {
            ctl_send(c, "err flush already running domain=%s\n", ds.v[i]);
        } else if (rc == -ENOENT) {
            ctl_send(c, "ok nothing queued domain=%s\n", ds.v[i]);
        } else if (rc == -EPERM) {
            ctl_send(c, "err domain %s is on hold (relayctl release %s)\n", ds.v[i], ds.v[i]);
        } else {
            ctl_send(c, "err flush domain=%s failed: %s\n", ds.v[i], hf_strerror(rc));
        }
    }
    log_info("relayctl action=flush target=%s wait=%s domains=%zu", what, wait ? "yes" : "no",
             ds.n);
    free(ds.v);
    ctl_maybe_end(c);
}

/* ---- queue changes ---------------------------------------------------------------------- */

static void ctl_updated(int status, uint64_t token, struct queue_update *ups, size_t n, void *arg)
{
    struct ctl *ctl = arg;
    struct ctl_client *c = idmap_get(&ctl->clients, token);
    for (size_t i = 0; i < n; i++) {
        char qid[QUEUE_ID_STR];
        const char *target = ups[i].domain[0] ? ups[i].domain : queue_id_str(ups[i].id, qid);
        int rc = status < 0 ? status : ups[i].result;
        if (rc == 0)
            log_info("%s relayctl action=%s done", target, ctl_action_name(ups[i].op));
        if (!c)
            continue;
        if (rc == 0)
            ctl_send(c, "ok %s %s\n", ctl_done_word(ups[i].op), target);
        else if (rc == -ENOENT)
            ctl_send(c, "err %s: no such %s in the queue\n", target,
                     ups[i].domain[0] ? "domain" : "message");
        else
            ctl_send(c, "err %s: %s\n", target, hf_strerror(rc));
    }
    if (c) {
        c->waiting_updates--;
        ctl_maybe_end(c);
    }
}

static int ctl_submit(struct ctl_client *c, struct queue_update *ups, size_t n)
{
    int rc = queue_wr_update(c->ctl->rd->wr, ups, n, ctl_updated, c->id, c->ctl);
    if (rc < 0) {
        ctl_send(c, "err cannot queue the change: %s\n", hf_strerror(rc));
        return rc;
    }
    c->waiting_updates++;
    return 0;
}

struct ctl_rcpt_collect {
    struct queue_update *ups;
    size_t n;
    int err;
};

static int ctl_collect_rcpt(const struct queue_rcpt *r, void *arg)
{
    struct ctl_rcpt_collect *cc = arg;
    struct queue_update *v = realloc(cc->ups, (cc->n + 1) * sizeof(*v));
    if (!v) {
        cc->err = -ENOMEM;
        return 1;
    }
    cc->ups = v;
    memset(&v[cc->n], 0, sizeof(v[cc->n]));
    /* Removing a recipient without delivering it: the queue's "delivered" removal, logged
     * here as a deletion by the operator. */
    v[cc->n].op = QUEUE_OP_DELIVERED;
    v[cc->n].id = r->id;
    v[cc->n].idx = r->idx;
    cc->n++;
    return 0;
}

static void ctl_deleted_domain(int status, uint64_t token, struct queue_update *ups, size_t n,
                               void *arg)
{
    struct ctl *ctl = arg;
    size_t done = 0;
    for (size_t i = 0; i < n; i++)
        if (status == 0 && ups[i].result == 0)
            done++;
    log_info("relayctl action=delete-domain rcpts=%zu removed=%zu%s%s", n, done,
             status < 0 ? " err=" : "", status < 0 ? hf_errname(status) : "");
    struct ctl_client *c = idmap_get(&ctl->clients, token);
    if (!c)
        return;
    if (status < 0)
        ctl_send(c, "err delete failed: %s\n", hf_strerror(status));
    else
        ctl_send(c, "ok deleted %zu recipient%s\n", done, done == 1 ? "" : "s");
    c->waiting_updates--;
    ctl_maybe_end(c);
}

/* Handles HOLD/RELEASE/DELETE/REQUEUE with their arguments. */
static void ctl_change(struct ctl_client *c, const char *verb, char *args)
{
    struct relayd *rd = c->ctl->rd;
    size_t cap = 0, n = 0;
    struct queue_update *ups = NULL;
    char *save = NULL;
    bool bad = false;
    if (strcmp(verb, "DELETE-DOMAIN") == 0) {
        char *d = strtok_r(args, " ", &save);
        if (!d) {
            ctl_send(c, "err usage: DELETE-DOMAIN domain\n");
            ctl_maybe_end(c);
            return;
        }
        addr_lower(d);
        struct ctl_rcpt_collect cc = {0};
        queue_scan_rcpts(rd->q, d, false, ctl_collect_rcpt, &cc);
        if (cc.err < 0 || cc.n == 0) {
            free(cc.ups);
            ctl_send(
                c, cc.err < 0 ? "err out of memory\n" : "err %s: no such domain in the queue\n", d);
            ctl_maybe_end(c);
            return;
        }
        log_info("relayctl action=delete domain=%s rcpts=%zu", d, cc.n);
        /* One answer line for the whole domain rather than one per recipient, sent once the
         * change is committed. */
        int rc = queue_wr_update(rd->wr, cc.ups, cc.n, ctl_deleted_domain, c->id, c->ctl);
        if (rc < 0)
            ctl_send(c, "err cannot queue the change: %s\n", hf_strerror(rc));
        else
            c->waiting_updates++;
        ctl_maybe_end(c);
        return;
    }
    for (char *w = strtok_r(args, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            struct queue_update *v = realloc(ups, cap * sizeof(*v));
            if (!v) {
                bad = true;
                break;
            }
            ups = v;
        }
        struct queue_update *u = &ups[n];
        memset(u, 0, sizeof(*u));
        uint64_t id;
        bool is_id = queue_id_parse(w, &id) == 0;
        if (strcmp(verb, "HOLD") == 0 || strcmp(verb, "RELEASE") == 0) {
            bool hold = verb[0] == 'H';
            if (is_id) {
                u->op = hold ? QUEUE_OP_HOLD_MSG : QUEUE_OP_RELEASE_MSG;
                u->id = id;
            } else {
                addr_lower(w);
                if (!addr_domain_is_valid(w, strlen(w), false)) {
                    ctl_send(c, "err '%s' is neither a queue id nor a domain\n", w);
                    bad = true;
                    break;
                }
                u->op = hold ? QUEUE_OP_HOLD_DOMAIN : QUEUE_OP_RELEASE_DOMAIN;
                snprintf(u->domain, sizeof(u->domain), "%s", w);
            }
        } else {
            if (!is_id) {
                ctl_send(c, "err '%s' is not a queue id (16 hex digits)\n", w);
                bad = true;
                break;
            }
            u->op = strcmp(verb, "DELETE") == 0 ? QUEUE_OP_DELETE_MSG : QUEUE_OP_REQUEUE_MSG;
            u->id = id;
        }
        n++;
    }
    if (bad || n == 0) {
        if (n == 0 && !bad)
            ctl_send(c, "err usage: %s ID|DOMAIN...\n", verb);
        free(ups);
        ctl_maybe_end(c);
        return;
    }
    log_info("relayctl action=%s targets=%zu", verb, n);
    ctl_submit(c, ups, n);
    ctl_maybe_end(c);
}

/* ---- STATS and metrics ------------------------------------------------------------------ */

struct ctl_stat {
    const char *name;
    const char *help;
    size_t off;
};

#define S(f) offsetof(struct relayd_stats, f)
static const struct ctl_stat ctl_stats[] = {
    {"connections", "inbound SMTP connections accepted", S(connections)},
    {"connections_refused", "connections refused by connection limits", S(refused_conn_limit)},
    {"accepted", "messages accepted into the queue", S(accepted)},
    {"accepted_bytes", "octets of messages accepted", S(accepted_bytes)},
    {"rejected_rcpt", "recipients refused at RCPT", S(rejected_rcpt)},
    {"rejected_data", "messages refused after DATA", S(rejected_data)},
    {"queue_errors", "queue commits that failed", S(queue_errors)},
    {"delivered", "recipients delivered", S(delivered)},
    {"deferred", "delivery attempts deferred", S(deferred)},
    {"failed", "recipients failed permanently", S(failed)},
};

static uint64_t ctl_stat_get(const struct relayd *rd, const struct ctl_stat *s)
{
    uint64_t v;
    memcpy(&v, (const char *)&rd->stats + s->off, sizeof(v));
    return v;
}

static const int ctl_etrn_codes[] = {250, 251, 252, 253, 458, 459};

static void ctl_stats_send(struct ctl_client *c)
{
    struct relayd *rd = c->ctl->rd;
    for (size_t i = 0; i < sizeof(ctl_stats) / sizeof(ctl_stats[0]); i++)
        ctl_send(c, "stat %s %llu\n", ctl_stats[i].name,
                 (unsigned long long)ctl_stat_get(rd, &ctl_stats[i]));
    for (size_t i = 0; i < 6; i++)
        ctl_send(c, "stat etrn_%d %llu\n", ctl_etrn_codes[i],
                 (unsigned long long)rd->stats.etrn[i]);
    ctl_send(c, "stat sessions %llu\n", (unsigned long long)rd->nsessions);
    ctl_send(c, "stat data_memory %zu\n", rd->data_mem);
    struct queue_wr_stats ws;
    queue_wr_get_stats(rd->wr, &ws);
    ctl_send(c, "stat commits %llu\nstat commit_jobs %llu\nstat commit_max_batch %llu\n",
             (unsigned long long)ws.commits, (unsigned long long)ws.jobs,
             (unsigned long long)ws.max_batch);
    ctl_maybe_end(c);
}

struct ctl_metrics_buf {
    char *p;
    size_t len, cap;
    int64_t now;
    struct relayd *rd;
};

static void ctl_mb_add(struct ctl_metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void ctl_mb_add(struct ctl_metrics_buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p)
            return;
        b->p = p;
        b->cap = cap;
    }
}

static int ctl_metrics_domain(const struct queue_domain_stats *s, void *arg)
{
    struct ctl_metrics_buf *b = arg;
    ctl_mb_add(b, "holdfast_queue_messages{domain=\"%s\"} %llu\n", s->domain,
               (unsigned long long)s->messages);
    ctl_mb_add(b, "holdfast_queue_recipients{domain=\"%s\"} %llu\n", s->domain,
               (unsigned long long)s->rcpts);
    ctl_mb_add(b, "holdfast_queue_bytes{domain=\"%s\"} %llu\n", s->domain,
               (unsigned long long)s->bytes);
    ctl_mb_add(b, "holdfast_queue_oldest_age_seconds{domain=\"%s\"} %lld\n", s->domain,
               (long long)(s->oldest ? b->now - s->oldest : 0));
    ctl_mb_add(b, "holdfast_queue_held{domain=\"%s\"} %d\n", s->domain, s->held ? 1 : 0);
    ctl_mb_add(b, "holdfast_flush_running{domain=\"%s\"} %d\n", s->domain,
               flush_running(b->rd, s->domain) ? 1 : 0);
    return 0;
}

static void ctl_metrics_send(struct ctl_client *c)
{
    struct relayd *rd = c->ctl->rd;
    struct ctl_metrics_buf b = {malloc(4096), 0, 4096, (int64_t)time(NULL), rd};
    if (!b.p) {
        ctl_close(c);
        return;
    }
    b.p[0] = '\0';
    for (size_t i = 0; i < sizeof(ctl_stats) / sizeof(ctl_stats[0]); i++)
        ctl_mb_add(&b,
                   "# HELP holdfast_%s_total %s\n# TYPE holdfast_%s_total counter\n"
                   "holdfast_%s_total %llu\n",
                   ctl_stats[i].name, ctl_stats[i].help, ctl_stats[i].name, ctl_stats[i].name,
                   (unsigned long long)ctl_stat_get(rd, &ctl_stats[i]));
    ctl_mb_add(&b, "# HELP holdfast_etrn_total ETRN requests by reply code\n"
                   "# TYPE holdfast_etrn_total counter\n");
    for (size_t i = 0; i < 6; i++)
        ctl_mb_add(&b, "holdfast_etrn_total{code=\"%d\"} %llu\n", ctl_etrn_codes[i],
                   (unsigned long long)rd->stats.etrn[i]);
    ctl_mb_add(&b,
               "# HELP holdfast_sessions current inbound sessions\n"
               "# TYPE holdfast_sessions gauge\nholdfast_sessions %llu\n",
               (unsigned long long)rd->nsessions);
    ctl_mb_add(&b,
               "# HELP holdfast_data_memory_bytes memory held by messages being received\n"
               "# TYPE holdfast_data_memory_bytes gauge\nholdfast_data_memory_bytes %zu\n",
               rd->data_mem);
    ctl_mb_add(&b, "# HELP holdfast_queue_messages messages held per domain\n"
                   "# TYPE holdfast_queue_messages gauge\n"
                   "# TYPE holdfast_queue_recipients gauge\n# TYPE holdfast_queue_bytes gauge\n"
                   "# TYPE holdfast_queue_oldest_age_seconds gauge\n"
                   "# TYPE holdfast_queue_held gauge\n# TYPE holdfast_flush_running gauge\n");
    queue_scan_domains(rd->q, ctl_metrics_domain, &b);
    char *life = ctl_life_metrics(rd);
    if (life)
        ctl_mb_add(&b, "%s", life);
    free(life);
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      b.len);
    struct ctl_wreq *w = malloc(sizeof(*w) + (size_t)hl + b.len);
    if (w) {
        memcpy(w->buf, head, (size_t)hl);
        memcpy(w->buf + hl, b.p, b.len);
        uv_buf_t ub = uv_buf_init(w->buf, (unsigned)((size_t)hl + b.len));
        if (uv_write(&w->req, c->stream, &ub, 1, ctl_written) < 0)
            free(w);
    }
    free(b.p);
    ctl_close(c);
}

/* ---- request dispatch ------------------------------------------------------------------- */

static void ctl_request(struct ctl_client *c, char *line)
{
    if (c->http) {
        /* "GET /metrics HTTP/1.x": anything else is 404. */
        if (strncmp(line, "GET /metrics ", 13) == 0 || strcmp(line, "GET /metrics") == 0) {
            ctl_metrics_send(c);
        } else {
            static const char nf[] = "HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n"
                                     "Connection: close\r\n\r\nnot found\n";
            ctl_send(c, "%s", nf);
            ctl_close(c);
        }
        return;
    }
    char *save = NULL;
    char *verb = strtok_r(line, " ", &save);
    char *rest = save ? save : (char *)"";
    if (!verb) {
        ctl_send(c, "err empty request\n");
        ctl_maybe_end(c);
        return;
    }
    if (strcmp(verb, "FLUSH") == 0) {
        char *what = strtok_r(NULL, " ", &save);
        char *opt = strtok_r(NULL, " ", &save);
        if (!what) {
            ctl_send(c, "err usage: FLUSH domain|@domain|--all [WAIT]\n");
            ctl_maybe_end(c);
            return;
        }
        addr_lower(what);
        ctl_flush(c, what, opt && strcmp(opt, "WAIT") == 0);
    } else if (strcmp(verb, "HOLD") == 0 || strcmp(verb, "RELEASE") == 0 ||
               strcmp(verb, "DELETE") == 0 || strcmp(verb, "REQUEUE") == 0 ||
               strcmp(verb, "DELETE-DOMAIN") == 0) {
        ctl_change(c, verb, rest);
    } else if (ctl_life_request(c->ctl->rd, &ctl_replies, c->id, verb, rest)) {
        /* BOUNCE, BOUNCE-DOMAIN, TEST-CLOCK-ADVANCE: answered by ctl_life.c */
    } else if (strcmp(verb, "STATS") == 0) {
        ctl_stats_send(c);
    } else if (strcmp(verb, "RUNNING") == 0) {
        /* Domains whose queue run is in progress, for relayctl queue. */
        struct ctl_domains ds = {0};
        queue_scan_domains(c->ctl->rd->q, ctl_collect_domain, &ds);
        for (size_t i = 0; i < ds.n; i++)
            if (flush_running(c->ctl->rd, ds.v[i]))
                ctl_send(c, "running %s\n", ds.v[i]);
        free(ds.v);
        ctl_life_running(c->ctl->rd, &ctl_replies, c->id);
        ctl_maybe_end(c);
    } else {
        ctl_send(c, "err unknown request '%.100s'\n", verb);
        ctl_maybe_end(c);
    }
}

static void ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct ctl_client *c = h->data;
    buf->base = c->line + c->len;
    buf->len = sizeof(c->line) - 1 - c->len;
}

static void ctl_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct ctl_client *c = s->data;
    if (c->closing)
        return;
    if (nread < 0) {
        ctl_close(c);
        return;
    }
    c->len += (size_t)nread;
    c->line[c->len] = '\0';
    char *nl = strchr(c->line, '\n');
    if (!nl) {
        if (c->len >= sizeof(c->line) - 1) {
            ctl_send(c, "err request too long\nend\n");
            ctl_close(c);
        }
        return;
    }
    *nl = '\0';
    if (nl > c->line && nl[-1] == '\r')
        nl[-1] = '\0';
    uv_read_stop(s);
    c->got_line = true;
    ctl_request(c, c->line);
}

static void ctl_on_connection(uv_stream_t *server, int status, bool http)
{
    struct ctl *ctl = server->data;
    if (status < 0)
        return;
    struct ctl_client *c = calloc(1, sizeof(*c));
    uv_stream_t *s = http ? malloc(sizeof(uv_tcp_t)) : malloc(sizeof(uv_pipe_t));
    if (!c || !s) {
        free(c);
        free(s);
        return;
    }
    if (http)
        uv_tcp_init(server->loop, (uv_tcp_t *)s);
    else
        uv_pipe_init(server->loop, (uv_pipe_t *)s, 0);
    s->data = c;
    c->ctl = ctl;
    c->stream = s;
    c->http = http;
    c->id = ++ctl->next_id;
    if (uv_accept(server, s) < 0 || idmap_put(&ctl->clients, c->id, c) < 0) {
        c->closing = true;
        uv_close((uv_handle_t *)s, ctl_client_closed);
        return;
    }
    uv_read_start(s, ctl_alloc, ctl_on_read);
}

static void ctl_on_pipe(uv_stream_t *server, int status)
{
    ctl_on_connection(server, status, false);
}

static void ctl_on_http(uv_stream_t *server, int status)
{
    ctl_on_connection(server, status, true);
}

/* A socket file left by a relayd that died: connecting to it fails with ECONNREFUSED. */
static bool ctl_socket_alive(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    bool alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return alive;
}

int ctl_init(struct relayd *rd)
{
    struct ctl *ctl = calloc(1, sizeof(*ctl));
    if (!ctl)
        return -ENOMEM;
    ctl->rd = rd;
    idmap_init(&ctl->clients);
    rd->ctl = ctl;
    const char *path = rd->cfg->control_socket;
    if (path && *path) {
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            log_err("control_socket path too long: %s", path);
            return HF_ECONFIG;
        }
        if (ctl_socket_alive(path)) {
            log_err("control socket %s is in use: is another relayd running?", path);
            return -EADDRINUSE;
        }
        unlink(path);
        /* Create the socket's directory (0755) when missing, as for /run/holdfast. */
        char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                log_warn("cannot create %s for the control socket: %s", dir, strerror(errno));
        }
        ctl->path = strdup(path);
        uv_pipe_init(rd->loop, &ctl->pipe, 0);
        ctl->pipe.data = ctl;
        ctl->pipe_open = true;
        mode_t old = umask(0077); /* the socket file is 0600: relayd's user only */
        int rc = uv_pipe_bind(&ctl->pipe, path);
        umask(old);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&ctl->pipe, 16, ctl_on_pipe);
        if (rc < 0) {
            log_err("control socket %s: err=%s (%s)", path, hf_errname(rc), uv_strerror(rc));
            return rc;
        }
        chmod(path, 0600);
        log_info("control socket %s", path);
    }
    const char *m = rd->cfg->metrics_listen;
    if (m && *m) {
        struct sockaddr_storage ss;
        if (conn_parse_hostport(m, 9325, &ss) < 0) {
            log_err("metrics_listen: '%s' is not an address:port", m);
            return HF_ECONFIG;
        }
        uv_tcp_init(rd->loop, &ctl->metrics);
        ctl->metrics.data = ctl;
        ctl->metrics_open = true;
        int rc = uv_tcp_bind(&ctl->metrics, (struct sockaddr *)&ss, 0);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&ctl->metrics, 16, ctl_on_http);
        if (rc < 0) {
            log_err("metrics_listen %s: err=%s (%s)", m, hf_errname(rc), uv_strerror(rc));
            return rc;
        }
        log_info("metrics on http://%s/metrics", m);
    }
    return 0;
}

static void ctl_close_each(uint64_t key, void *val, void *arg)
{
    (void)key;
    (void)arg;
    ctl_close(val); /* removes itself from the map: allowed during idmap_each */
}

void ctl_shutdown(struct relayd *rd)
{
    struct ctl *ctl = rd->ctl;
    if (!ctl)
        return;
    if (ctl->pipe_open && !uv_is_closing((uv_handle_t *)&ctl->pipe))
        uv_close((uv_handle_t *)&ctl->pipe, NULL);
    if (ctl->metrics_open && !uv_is_closing((uv_handle_t *)&ctl->metrics))
        uv_close((uv_handle_t *)&ctl->metrics, NULL);
    idmap_each(&ctl->clients, ctl_close_each, NULL);
    if (ctl->path)
        unlink(ctl->path);
}

void ctl_free(struct relayd *rd)
{
    struct ctl *ctl = rd->ctl;
    if (!ctl)
        return;
    idmap_close(&ctl->clients);
    free(ctl->path);
    free(ctl);
    rd->ctl = NULL;
}
