/* "Accept only while the primary is down" (see probe.h): a periodic, bounded probe of the
 * exchangers more preferred than this relay (connect, 220 greeting, EHLO answered 250,
 * QUIT), one domain at a time per probe, the state kept here on the loop. */
#include "probe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "clock.h"
#include "conn.h"
#include "dns.h"
#include "flush.h"
#include "hf_err.h"
#include "log.h"
#include "mx.h"
#include "relayd.h"

#define PROBE_ATTEMPTS_MAX 8
#define PROBE_LINE_MAX     1024

enum probe_phase { PROBE_PH_GREET, PROBE_PH_EHLO, PROBE_PH_QUIT };

struct probe_dom {
    struct probe *pr;
    char name[256];
    enum probe_state state;
    int64_t since;
    char host[MX_NAME_MAX + 64]; /* the host that answered, for logs */
    /* the probe in progress */
    bool busy;
    uint64_t gen; /* answers of an older probe are not matched */
    struct mx_attempt att[PROBE_ATTEMPTS_MAX];
    size_t natt, next;
    struct conn *c;
    enum probe_phase phase;
    char line[PROBE_LINE_MAX];
    size_t line_len;
};

struct probe {
    struct relayd *rd;
    uv_timer_t timer;
    bool armed;
    struct probe_dom *v;
    size_t n;
};

struct probe_dns_ctx {
    struct probe *pr;
    size_t i;
    uint64_t gen;
};

static struct probe *probe_of(struct relayd *rd)
{
    return rd->probe;
}

const char *probe_state_name(enum probe_state s)
{
    return s == PROBE_UP ? "up" : s == PROBE_DOWN ? "down" : "unknown";
}

/* The probe of d is over with state st (PROBE_UNKNOWN: nothing learnt, keep the last). */
static void probe_done(struct probe_dom *d, enum probe_state st, const char *why)
{
    d->busy = false;
    d->gen++;
    if (st == PROBE_UNKNOWN) {
        log_debug("probe domain=%s inconclusive (%s): state stays %s", d->name, why,
                  probe_state_name(d->state));
        return;
    }
    if (st != d->state) {
        log_info("probe domain=%s primary=%s%s%s (%s) was=%s: RCPT for %s now %s", d->name,
                 probe_state_name(st), st == PROBE_UP ? " host=" : "",
                 st == PROBE_UP ? d->host : "", why, probe_state_name(d->state), d->name,
                 st == PROBE_UP ? "gets 451 4.7.1" : "is accepted");
        d->state = st;
        d->since = clock_now();
    }
}

static void probe_try_next(struct probe_dom *d);

static void probe_drop_conn(struct probe_dom *d)
{
    if (d->c) {
        conn_set_data(d->c, NULL);
        conn_close(d->c, true);
        d->c = NULL;
    }
}

static void probe_on_connect(struct conn *c, int status)
{
    struct probe_dom *d = conn_data(c);
    if (!d)
        return;
    if (status < 0) {
        probe_drop_conn(d);
        probe_try_next(d);
        return;
    }
    d->phase = PROBE_PH_GREET;
    d->line_len = 0;
    conn_set_timeout(c, d->pr->rd->cfg->probe_timeout * 1000);
    if (conn_read_start(c) < 0) {
        probe_drop_conn(d);
        probe_try_next(d);
    }
}

/* One complete reply line: "NNN-" continues, "NNN " ends the reply. */
static void probe_on_line(struct probe_dom *d, const char *l, size_t len)
{
    if (len < 3 || l[0] < '1' || l[0] > '5' || (len > 3 && l[3] != ' ' && l[3] != '-')) {
        probe_drop_conn(d);
        probe_try_next(d);
        return;
    }
    if (len > 3 && l[3] == '-')
        return;
    int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    struct relayd *rd = d->pr->rd;
    if (d->phase == PROBE_PH_GREET && code == 220) {
        char ehlo[300];
        int n = snprintf(ehlo, sizeof(ehlo), "EHLO %s\r\n", rd->prm.hostname);
        d->phase = PROBE_PH_EHLO;
        if (conn_write(d->c, ehlo, (size_t)n) == 0)
            return;
    } else if (d->phase == PROBE_PH_EHLO && code == 250) {
        /* It answers: the primary is up. Leave politely. */
        conn_write(d->c, "QUIT\r\n", 6);
        conn_set_data(d->c, NULL);
        conn_close(d->c, false);
        d->c = NULL;
        probe_done(d, PROBE_UP, "connect and EHLO answered");
        return;
    }
    probe_drop_conn(d);
    probe_try_next(d);
}

static void probe_on_read(struct conn *c, const char *data, size_t len)
{
    struct probe_dom *d = conn_data(c);
    for (size_t i = 0; d && i < len; i++) {
        if (data[i] == '\n') {
            size_t l = d->line_len;
            if (l && d->line[l - 1] == '\r')
                l--;
            d->line_len = 0;
            probe_on_line(d, d->line, l);
            d = conn_data(c); /* NULL once the probe let go of c */
            continue;
        }
        if (d->line_len >= sizeof(d->line) - 1) {
            probe_drop_conn(d); /* not SMTP */
            probe_try_next(d);
            return;
        }
        d->line[d->line_len++] = data[i];
    }
}

static void probe_on_eof(struct conn *c, int status)
{
    (void)status;
    struct probe_dom *d = conn_data(c);
    if (!d) {
        conn_close(c, true);
        return;
    }
    probe_drop_conn(d);
    probe_try_next(d);
}

static void probe_on_timeout(struct conn *c)
{
    probe_on_eof(c, -ETIMEDOUT);
}

static void probe_on_close(struct conn *c)
{
    (void)c;
}

static const struct conn_ops probe_conn_ops = {
    .on_read = probe_on_read,
    .on_eof = probe_on_eof,
    .on_timeout = probe_on_timeout,
    .on_connect = probe_on_connect,
    .on_close = probe_on_close,
};

static void probe_try_next(struct probe_dom *d)
{
    struct relayd *rd = d->pr->rd;
    while (d->next < d->natt && !rd->stopping) {
        const struct mx_attempt *a = &d->att[d->next++];
        char ip[INET6_ADDRSTRLEN];
        int port = conn_sockaddr_str((const struct sockaddr *)&a->addr, ip, sizeof(ip));
        snprintf(d->host, sizeof(d->host), "%s[%s]:%d", a->host, ip, port);
        struct conn *c;
        if (conn_connect(rd->loop, (const struct sockaddr *)&a->addr, rd->cfg->probe_timeout * 1000,
                         &probe_conn_ops, d, &c) == 0) {
            d->c = c;
            return;
        }
    }
    probe_done(d, rd->stopping ? PROBE_UNKNOWN : PROBE_DOWN,
               rd->stopping ? "shutting down" : "no more-preferred exchanger answered");
}

static void probe_on_mx(const struct dns_mx_result *res, void *arg)
{
    struct probe_dns_ctx *ctx = arg;
    struct probe *pr = ctx->pr;
    struct probe_dom *d = ctx->i < pr->n ? &pr->v[ctx->i] : NULL;
    bool mine = d && d->busy && d->gen == ctx->gen;
    free(ctx);
    if (!mine)
        return;
    if (res->status < 0) {
        probe_done(d, PROBE_UNKNOWN, hf_strerror(res->status));
        return;
    }
    int rc = flush_primaries(pr->rd, d->name, res, d->att, PROBE_ATTEMPTS_MAX, &d->natt);
    if (rc == -ELOOP || rc == HF_ENULLMX) {
        /* This relay is the best MX (nothing is more preferred), or the domain takes no
         * mail: there is no primary to send anyone to. */
        probe_done(d, PROBE_DOWN, rc == -ELOOP ? "this relay is the best MX" : "null MX");
        return;
    }
    if (rc < 0) {
        probe_done(d, PROBE_UNKNOWN, hf_strerror(rc));
        return;
    }
    d->next = 0;
    probe_try_next(d);
}

static void probe_start(struct probe *pr, size_t i)
{
    struct probe_dom *d = &pr->v[i];
    struct dns *dns = flush_dns(pr->rd);
    if (d->busy || !dns)
        return;
    struct probe_dns_ctx *ctx = malloc(sizeof(*ctx));
    if (!ctx)
        return;
    d->busy = true;
    *ctx = (struct probe_dns_ctx){pr, i, d->gen};
    if (dns_mx_resolve(dns, d->name, probe_on_mx, ctx) < 0) {
        free(ctx);
        probe_done(d, PROBE_UNKNOWN, "DNS lookup not started");
    }
}

static void probe_on_timer(uv_timer_t *t)
{
    struct probe *pr = t->data;
    if (pr->rd->stopping)
        return;
    for (size_t i = 0; i < pr->n; i++)
        probe_start(pr, i);
}

bool probe_primary_up(void *arg, const char *domain)
{
    struct relayd *rd = arg;
    struct probe *pr = probe_of(rd);
    const struct cfg_domain *cd = pr ? cfg_find_domain(rd->cfg, domain) : NULL;
    if (!cd)
        return false;
    for (size_t i = 0; i < pr->n; i++)
        if (strcmp(pr->v[i].name, cd->name) == 0)
            return pr->v[i].state == PROBE_UP;
    return false;
}

size_t probe_count(struct relayd *rd)
{
    struct probe *pr = probe_of(rd);
    return pr ? pr->n : 0;
}

bool probe_get(struct relayd *rd, size_t i, const char **domain, enum probe_state *st,
               int64_t *since)
{
    struct probe *pr = probe_of(rd);
    if (!pr || i >= pr->n)
        return false;
    *domain = pr->v[i].name;
    *st = pr->v[i].state;
    *since = pr->v[i].since;
    return true;
}

int probe_init(struct relayd *rd)
{
    size_t n = 0;
    for (size_t i = 0; i < rd->cfg->ndomains; i++)
        n += rd->cfg->domains[i].accept_only_if_primary_down;
    if (n == 0)
        return 0;
    struct probe *pr = calloc(1, sizeof(*pr));
    if (pr)
        pr->v = calloc(n, sizeof(*pr->v));
    if (!pr || !pr->v) {
        free(pr);
        return -ENOMEM;
    }
    pr->rd = rd;
    for (size_t i = 0; i < rd->cfg->ndomains; i++) {
        const struct cfg_domain *cd = &rd->cfg->domains[i];
        if (!cd->accept_only_if_primary_down)
            continue;
        struct probe_dom *d = &pr->v[pr->n++];
        d->pr = pr;
        snprintf(d->name, sizeof(d->name), "%s", cd->name);
        d->state = PROBE_UNKNOWN;
        d->since = clock_now();
    }
    uv_timer_init(rd->loop, &pr->timer);
    pr->timer.data = pr;
    pr->armed = true;
    /* The first probe right away: until it answers, mail is accepted (fail open). */
    uv_timer_start(&pr->timer, probe_on_timer, 0, rd->cfg->probe_interval * 1000);
    rd->probe = pr;
    log_info("probe domains=%zu interval=%llus timeout=%llus", pr->n,
             (unsigned long long)rd->cfg->probe_interval,
             (unsigned long long)rd->cfg->probe_timeout);
    return 0;
}

void probe_shutdown(struct relayd *rd)
{
    struct probe *pr = probe_of(rd);
    if (!pr)
        return;
    if (pr->armed) {
        uv_timer_stop(&pr->timer);
        uv_close((uv_handle_t *)&pr->timer, NULL);
        pr->armed = false;
    }
    for (size_t i = 0; i < pr->n; i++) {
        probe_drop_conn(&pr->v[i]);
        pr->v[i].busy = false;
        pr->v[i].gen++;
    }
}

void probe_free(struct relayd *rd)
{
    struct probe *pr = probe_of(rd);
    if (!pr)
        return;
    free(pr->v);
    free(pr);
    rd->probe = NULL;
}
