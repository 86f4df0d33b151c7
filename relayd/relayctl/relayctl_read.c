/* relayctl's read commands: queue (per-domain summary), list, show and mailq. Each opens
 * nothing itself: main() hands it the queue, opened read-only, and the parsed arguments;
 * it prints to stdout (the JSON schema is described in relayctl.c) and returns relayctl's
 * exit code. */
#include "relayctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "ctlclient.h"
#include "hf_err.h"
#include "queue.h"

/* ---- messages: collected ids, envelope and recipients ------------------------------ */

static int ctl_refs_add(const struct queue_rcpt *r, void *arg)
{
    struct relayctl_refs *refs = arg;
    if (refs->n == refs->cap) {
        size_t cap = refs->cap ? refs->cap * 2 : 256;
        struct relayctl_ref *v = realloc(refs->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        refs->v = v;
        refs->cap = cap;
    }
    refs->v[refs->n++] = (struct relayctl_ref){r->id, r->idx};
    return 0;
}

static int ctl_ref_cmp(const void *a, const void *b)
{
    const struct relayctl_ref *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* Reports a queue error for id on stderr and returns the exit code for it. */
static int ctl_read_error(const char *what, const char *idstr, int rc)
{
    if (rc == -ENOENT) {
        fprintf(stderr, "relayctl: no message %s in the queue\n", idstr);
        return CTL_EX_NOTFOUND;
    }
    fprintf(stderr, "relayctl: cannot read %s of %s: %s\n", what, idstr, hf_strerror(rc));
    return CTL_EX_ERROR;
}

/* ---- queue ------------------------------------------------------------------------- */

/* One line of the human queue summary, kept until every domain is known so the columns can
 * be as wide as their widest value. */
struct ctl_qrow {
    char domain[256];
    uint64_t messages, rcpts;
    char size[32], oldest[32], policy[300], last[32], state[32];
    char error[QUEUE_ERR_MAX];
};

struct ctl_queue_out {
    FILE *f;
    bool json;
    int64_t now;
    size_t n;
    struct queue *q;
    const struct relayctl_opts *opt;
    struct relayctl_act_out *run; /* RUNNING answers; nrun 0 when relayd did not answer */
    bool relayd_up;
    struct ctl_qrow *rows; /* human output */
    size_t nrows;
};

static void ctl_queue_print_rows(const struct ctl_queue_out *o)
{
    int dw = 28, pw = 6;
    for (size_t i = 0; i < o->nrows; i++) {
        int l = (int)strlen(o->rows[i].domain);
        if (l > dw)
            dw = l;
        l = (int)strlen(o->rows[i].policy);
        if (l > pw)
            pw = l;
    }
    printf("%-*s %8s %6s %7s %7s  %-*s %8s  %s\n", dw, "DOMAIN", "MESSAGES", "RCPTS", "SIZE",
           "OLDEST", pw, "POLICY", "LAST", "STATE");
    for (size_t i = 0; i < o->nrows; i++) {
        const struct ctl_qrow *r = &o->rows[i];
        /* Domains come from our own validated keys, but escape them anyway. */
        relayctl_text_str(stdout, r->domain);
        int l = (int)strlen(r->domain);
        printf("%*s %8" PRIu64 " %6" PRIu64 " %7s %7s  %-*s %8s  %s\n", dw - l, "", r->messages,
               r->rcpts, r->size, r->oldest, pw, r->policy, r->last, r->state);
        if (r->error[0]) {
            printf("%*s last result: ", dw, "");
            relayctl_text_str(stdout, r->error);
            putc('\n', stdout);
        }
    }
}

struct ctl_last {
    int64_t when;
    char error[QUEUE_ERR_MAX];
    int state;
};

/* The most recent delivery attempt among a domain's recipients. */
static int ctl_last_cb(const struct queue_rcpt *r, void *arg)
{
    struct ctl_last *l = arg;
    if (r->last_attempt > l->when) {
        l->when = r->last_attempt;
        l->state = r->state;
        snprintf(l->error, sizeof(l->error), "%s", r->last_error);
    }
    return 0;
}

/* How the configuration says the domain's mail leaves: "dns", "next-hop [x]:p", "+hold". */
static const char *ctl_policy(const struct relayctl_opts *opt, const char *domain, char *buf,
                              size_t sz)
{
    if (!opt->cfg) {
        snprintf(buf, sz, "?");
        return buf;
    }
    const struct cfg_domain *d = cfg_find_domain(opt->cfg, domain);
    if (!d)
        snprintf(buf, sz, "not-configured");
    else
        snprintf(buf, sz, "%s%s%s%s", d->next_hop ? "next-hop " : "dns",
                 d->next_hop ? d->next_hop : "", d->hold ? ",hold" : "",
                 d->tls && strcmp(d->tls, "may") != 0 ? ",tls" : "");
    return buf;
}

static int ctl_queue_domain(const struct queue_domain_stats *s, void *arg)
{
    struct ctl_queue_out *o = arg;
    FILE *f = o->f;
    struct ctl_last last = {0, "", 0};
    queue_scan_rcpts(o->q, s->domain, false, ctl_last_cb, &last);
    bool flushing = false;
    for (size_t i = 0; o->run && i < o->run->nrun; i++)
        if (strcmp(o->run->running[i], s->domain) == 0)
            flushing = true;
    char pol[300];
    ctl_policy(o->opt, s->domain, pol, sizeof(pol));
    if (o->json) {
        fputs(o->n ? "," : "", f);
        fputs("{\"domain\":", f);
        relayctl_json_str(f, s->domain);
        fprintf(f,
                ",\"messages\":%" PRIu64 ",\"rcpts\":%" PRIu64 ",\"bytes\":%" PRIu64
                ",\"oldest\":%" PRId64 ",\"held\":%s,\"policy\":",
                s->messages, s->rcpts, s->bytes, s->oldest, s->held ? "true" : "false");
        relayctl_json_str(f, pol);
        fprintf(f, ",\"last_attempt\":%" PRId64 ",\"last_result\":", last.when);
        relayctl_json_str(f, last.error);
        fprintf(f, ",\"flushing\":%s}", !o->relayd_up ? "null" : flushing ? "true" : "false");
    } else {
        char b[32], age[32], la[32];
        char state[32];
        snprintf(state, sizeof(state), "%s%s%s", s->held ? "held" : "",
                 s->held && flushing ? "," : "", flushing ? "flushing" : "");
        struct ctl_qrow *v = realloc(o->rows, (o->nrows + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        o->rows = v;
        struct ctl_qrow *r = &v[o->nrows++];
        memset(r, 0, sizeof(*r));
        snprintf(r->domain, sizeof(r->domain), "%s", s->domain);
        r->messages = s->messages;
        r->rcpts = s->rcpts;
        snprintf(r->size, sizeof(r->size), "%s", relayctl_human_bytes(s->bytes, b, sizeof(b)));
        snprintf(r->oldest, sizeof(r->oldest), "%s",
                 relayctl_human_age(s->oldest, o->now, age, sizeof(age)));
        snprintf(r->policy, sizeof(r->policy), "%s", pol);
        snprintf(r->last, sizeof(r->last), "%s",
                 last.when ? relayctl_human_age(last.when, o->now, la, sizeof(la)) : "never");
        snprintf(r->state, sizeof(r->state), "%s", state[0] ? state : "waiting");
        snprintf(r->error, sizeof(r->error), "%s", last.error);
        o->n++;
        return 0;
    }
    o->n++;
    return 0;
}

int relayctl_cmd_queue(struct queue *q, const struct relayctl_opts *opt,
                       const struct relayctl_args *a)
{
    (void)a;
    static struct relayctl_act_out run;
    memset(&run, 0, sizeof(run));
    bool up = opt->sock && *opt->sock &&
              ctlclient_request(opt->sock, "RUNNING", 5, relayctl_act_line, &run) == 0;
    struct ctl_queue_out o = {.f = stdout,
                              .json = opt->json,
                              .now = (int64_t)time(NULL),
                              .q = q,
                              .opt = opt,
                              .run = &run,
                              .relayd_up = up};
    struct queue_totals t;
    int rc = queue_totals(q, &t);
    if (rc < 0) {
        fprintf(stderr, "relayctl: cannot read the queue totals: %s\n", hf_strerror(rc));
        return CTL_EX_ERROR;
    }
    if (o.json)
        fputs("{\"domains\":[", stdout);
    rc = queue_scan_domains(q, ctl_queue_domain, &o);
    if (!o.json && rc == 0 && o.nrows)
        ctl_queue_print_rows(&o);
    free(o.rows);
    if (rc != 0) {
        if (o.json || o.n)
            putc('\n', stdout);
        fprintf(stderr, "relayctl: cannot read the domain table: %s\n", hf_strerror(rc));
        return CTL_EX_ERROR;
    }
    /* Accept-only-while-the-primary-is-down domains: their probe state (relayd's). */
    char pd[256], ps[16];
    long long since;
    if (o.json) {
        fputs("],\"probes\":[", stdout);
        for (size_t i = 0; i < run.nprobe; i++) {
            if (sscanf(run.probe[i], "%255s %15s %lld", pd, ps, &since) != 3)
                continue;
            fputs(i ? ",{\"domain\":" : "{\"domain\":", stdout);
            relayctl_json_str(stdout, pd);
            printf(",\"primary\":\"%s\",\"since\":%lld}", ps, since);
        }
    } else {
        for (size_t i = 0; i < run.nprobe; i++)
            if (sscanf(run.probe[i], "%255s %15s %lld", pd, ps, &since) == 3)
                printf("primary MX of %s: %s (since %lld)%s\n", pd, ps, since,
                       strcmp(ps, "up") == 0 ? ": RCPT gets 451 4.7.1" : "");
    }
    if (o.json) {
        printf("],\"totals\":{\"messages\":%" PRIu64 ",\"rcpts\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"map_size\":%zu,\"map_used\":%zu},\"relayd_running\":%s}\n",
               t.messages, t.rcpts, t.bytes, t.map_size, t.map_used, up ? "true" : "false");
    } else {
        char b[32], ms[32], mu[32];
        if (o.n == 0)
            printf("queue is empty\n");
        printf("-- total: %" PRIu64 " message%s, %" PRIu64 " recipient%s, %s (map %s of %s)%s\n",
               t.messages, t.messages == 1 ? "" : "s", t.rcpts, t.rcpts == 1 ? "" : "s",
               relayctl_human_bytes(t.bytes, b, sizeof(b)),
               relayctl_human_bytes(t.map_used, mu, sizeof(mu)),
               relayctl_human_bytes(t.map_size, ms, sizeof(ms)),
               up ? "" : "; relayd not reachable: flush state unknown");
    }
    return CTL_EX_OK;
}

/* ---- list -------------------------------------------------------------------------- */

int relayctl_refs_load(struct queue *q, const struct relayctl_args *a, struct relayctl_refs *refs)
{
    int rc =
        queue_scan_rcpts(q, a->has_domain ? a->domain : NULL, a->subdomains, ctl_refs_add, refs);
    if (rc != 0) {
        fprintf(stderr, "relayctl: cannot scan the recipients: %s\n", hf_strerror(rc));
        free(refs->v);
        refs->v = NULL;
        return rc;
    }
    if (refs->n > 1)
        qsort(refs->v, refs->n, sizeof(refs->v[0]), ctl_ref_cmp);
    return 0;
}

int relayctl_cmd_list(struct queue *q, const struct relayctl_opts *opt,
                      const struct relayctl_args *a)
{
    struct relayctl_refs refs = {0};
    int ex = CTL_EX_OK;
    int rc = relayctl_refs_load(q, a, &refs);
    if (rc != 0)
        return CTL_EX_ERROR;

    FILE *f = stdout;
    size_t nmsg = 0;
    uint64_t bytes = 0;
    if (opt->json)
        fputs("{\"messages\":[", f);
    for (size_t i = 0; i < refs.n;) {
        size_t j = i;
        while (j < refs.n && refs.v[j].id == refs.v[i].id)
            j++;
        struct queue_env e;
        char idstr[QUEUE_ID_STR];
        queue_id_str(refs.v[i].id, idstr);
        rc = queue_get_env(q, refs.v[i].id, &e);
        if (rc == -ENOENT) { /* delivered or deleted since the scan */
            i = j;
            continue;
        }
        if (rc < 0) {
            ex = ctl_read_error("the envelope", idstr, rc);
            break;
        }
        struct relayctl_msg_out o = {.f = f,
                                     .json = opt->json,
                                     .now = (int64_t)time(NULL),
                                     .want = a->has_domain ? &refs.v[i] : NULL,
                                     .nwant = j - i};
        if (opt->json) {
            fputs(nmsg ? "," : "", f);
            relayctl_json_env(f, &e);
        } else {
            char t[64];
            if (nmsg == 0)
                printf("%-16s %10s  %-19s  %s\n", "QUEUE ID", "SIZE", "ARRIVAL", "SENDER");
            printf("%-16s %10" PRIu64 "  %-19s  <", idstr, e.size,
                   relayctl_time(e.arrival, t, sizeof(t)));
            relayctl_text_str(f, e.sender);
            putc('>', f);
            relayctl_text_flags(f, e.flags);
            putc('\n', f);
        }
        rc = queue_get_rcpts(q, refs.v[i].id, relayctl_print_rcpt, &o);
        if (opt->json)
            fputs("]}", f);
        if (rc != 0 && rc != -ENOENT) {
            if (opt->json)
                putc('\n', f);
            ex = ctl_read_error("the recipients", idstr, rc);
            break;
        }
        if (!opt->json)
            putc('\n', f);
        nmsg++;
        bytes += e.size;
        i = j;
    }
    free(refs.v);
    if (ex != CTL_EX_OK)
        return ex;
    if (opt->json) {
        fputs("]}\n", f);
    } else if (nmsg == 0) {
        if (a->has_domain)
            printf("no messages for %s%s\n", a->subdomains ? "@" : "", a->domain);
        else
            printf("queue is empty\n");
    } else {
        char b[32];
        printf("-- %zu message%s, %s\n", nmsg, nmsg == 1 ? "" : "s",
               relayctl_human_bytes(bytes, b, sizeof(b)));
    }
    return CTL_EX_OK;
}

/* ---- show -------------------------------------------------------------------------- */

struct ctl_body_out {
    FILE *f;
    int err; /* errno of a failed write */
};

static int ctl_body_write(const char *data, size_t len, void *arg)
{
    struct ctl_body_out *o = arg;
    if (len > 0 && fwrite(data, 1, len, o->f) != len) {
        o->err = errno ? errno : EIO;
        return -o->err;
    }
    return 0;
}

/* Collects the header block: octets up to the first empty line (CRLF CRLF, or LF LF for
 * a message stored with bare line ends), at most CTL_HDR_MAX. */
struct ctl_hdr {
    char *buf;
    size_t len;
    bool done;
    bool truncated;
};

#define CTL_HDR_STOP 1 /* callback return that ends the body walk early */

static int ctl_hdr_add(const char *data, size_t len, void *arg)
{
    struct ctl_hdr *h = arg;
    for (size_t i = 0; i < len; i++) {
        if (h->len == CTL_HDR_MAX) {
            h->truncated = true;
            return CTL_HDR_STOP;
        }
        h->buf[h->len++] = data[i];
        /* The empty line: "\r\n" right after a line end, or at the very start. */
        size_t n = h->len;
        if ((n == 2 && h->buf[0] == '\r' && h->buf[1] == '\n') ||
            (n >= 4 && memcmp(h->buf + n - 4, "\r\n\r\n", 4) == 0)) {
            h->len -= 2;
            h->done = true;
            return CTL_HDR_STOP;
        }
        if ((n == 1 && h->buf[0] == '\n') || (n >= 2 && memcmp(h->buf + n - 2, "\n\n", 2) == 0)) {
            h->len -= 1;
            h->done = true;
            return CTL_HDR_STOP;
        }
    }
    return 0;
}

int relayctl_cmd_show(struct queue *q, const struct relayctl_opts *opt,
                      const struct relayctl_args *a)
{
    FILE *f = stdout;
    struct queue_env e;
    int rc = queue_get_env(q, a->id, &e);
    if (rc < 0)
        return ctl_read_error("the envelope", a->idstr, rc);

    if (opt->body) {
        struct ctl_body_out bo = {.f = f};
        rc = queue_read_body(q, a->id, ctl_body_write, &bo);
        if (bo.err) {
            fprintf(stderr, "relayctl: cannot write the message: %s\n", strerror(bo.err));
            return CTL_EX_ERROR;
        }
        if (rc != 0)
            return ctl_read_error("the body", a->idstr, rc);
        return CTL_EX_OK;
    }

    struct ctl_hdr h = {.buf = malloc(CTL_HDR_MAX)};
    if (h.buf == NULL) {
        fprintf(stderr, "relayctl: out of memory\n");
        return CTL_EX_ERROR;
    }
    rc = queue_read_body(q, a->id, ctl_hdr_add, &h);
    if (rc != 0 && rc != CTL_HDR_STOP) {
        free(h.buf);
        return ctl_read_error("the body", a->idstr, rc);
    }

    struct relayctl_msg_out o = {.f = f, .json = opt->json, .now = (int64_t)time(NULL)};
    if (opt->json) {
        relayctl_json_env(f, &e);
        rc = queue_get_rcpts(q, a->id, relayctl_print_rcpt, &o);
        fputs("],\"headers\":", f);
        relayctl_json_strn(f, h.buf, h.len);
        if (h.truncated)
            fputs(",\"headers_truncated\":true", f);
        fputs("}\n", f);
    } else {
        char t[64], age[32];
        printf("id:          %s\n", a->idstr);
        printf("arrival:     %s (%s ago)\n", relayctl_time(e.arrival, t, sizeof(t)),
               relayctl_human_age(e.arrival, o.now, age, sizeof(age)));
        printf("size:        %" PRIu64 "\n", e.size);
        fputs("sender:      <", f);
        relayctl_text_str(f, e.sender);
        fputs(">\nclient:      ", f);
        relayctl_text_str(f, e.client_name);
        fputs(" [", f);
        relayctl_text_str(f, e.client_addr);
        fputs("]\nflags:      ", f);
        if (e.flags == 0)
            fputs(" -", f);
        relayctl_text_flags(f, e.flags);
        putc('\n', f);
        if (e.envid[0]) {
            fputs("envid:       ", f);
            relayctl_text_str(f, e.envid);
            putc('\n', f);
        }
        if (relayctl_ret_name(e.ret))
            printf("ret:         %s\n", relayctl_ret_name(e.ret));
        printf("recipients:  %" PRIu32 "\n", e.nrcpt);
        rc = queue_get_rcpts(q, a->id, relayctl_print_rcpt, &o);
        printf("headers:\n");
        relayctl_text_strn(f, h.buf, h.len, true);
        if (h.len > 0 && h.buf[h.len - 1] != '\n')
            putc('\n', f);
        if (h.truncated)
            printf("[headers truncated at %u octets]\n", CTL_HDR_MAX);
    }
    free(h.buf);
    if (rc != 0 && rc != -ENOENT)
        return ctl_read_error("the recipients", a->idstr, rc);
    return CTL_EX_OK;
}

/* ---- mailq: the Sendmail/Postfix listing ----------------------------------------------- */

struct ctl_mailq_rcpt {
    const struct relayctl_ref *want;
    size_t nwant;
};

static int ctl_mailq_rcpt(const struct queue_rcpt *r, void *arg)
{
    struct ctl_mailq_rcpt *m = arg;
    if (m->want) {
        bool hit = false;
        for (size_t i = 0; i < m->nwant && !hit; i++)
            hit = m->want[i].idx == r->idx;
        if (!hit)
            return 0;
    }
    if (r->last_error[0]) {
        printf("%47s(", "");
        relayctl_text_str(stdout, r->last_error);
        printf(")\n");
    }
    printf("%47s", "");
    relayctl_text_str(stdout, r->addr);
    putc('\n', stdout);
    return 0;
}

/* Postfix's mailq layout: "-Queue ID- --Size-- ----Arrival Time---- -Sender/Recipient--",
 * '!' after the id of a held message, the last error in parentheses above each recipient. */
int relayctl_cmd_mailq(struct queue *q, const struct relayctl_opts *opt,
                       const struct relayctl_args *a)
{
    (void)opt;
    struct relayctl_refs refs = {0};
    if (relayctl_refs_load(q, a, &refs) != 0)
        return CTL_EX_ERROR;
    size_t nmsg = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < refs.n;) {
        size_t j = i;
        while (j < refs.n && refs.v[j].id == refs.v[i].id)
            j++;
        struct queue_env e;
        if (queue_get_env(q, refs.v[i].id, &e) < 0) {
            i = j;
            continue;
        }
        if (nmsg == 0)
            printf("%-16s %8s %-20s %s\n", "-Queue ID-", "--Size--", "----Arrival Time----",
                   "-Sender/Recipient-------");
        char idstr[QUEUE_ID_STR], t[32];
        time_t at = (time_t)e.arrival;
        struct tm tm;
        localtime_r(&at, &tm);
        strftime(t, sizeof(t), "%a %b %e %H:%M:%S", &tm);
        printf("%-16s%c%8" PRIu64 " %-20s ", queue_id_str(e.id, idstr),
               (e.flags & QUEUE_F_HELD) ? '!' : ' ', e.size, t);
        relayctl_text_str(stdout, e.sender[0] ? e.sender : "MAILER-DAEMON");
        putc('\n', stdout);
        struct ctl_mailq_rcpt m = {a->has_domain ? &refs.v[i] : NULL, j - i};
        queue_get_rcpts(q, e.id, ctl_mailq_rcpt, &m);
        putc('\n', stdout);
        nmsg++;
        bytes += e.size;
        i = j;
    }
    free(refs.v);
    if (nmsg == 0)
        printf("Mail queue is empty\n");
    else
        printf("-- %" PRIu64 " Kbytes in %zu Request%s.\n", (bytes + 1023) / 1024, nmsg,
               nmsg == 1 ? "" : "s");
    return CTL_EX_OK;
}
