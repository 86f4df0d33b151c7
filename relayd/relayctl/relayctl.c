/* relayctl: the operator's view of relayd's queue.
 *
 * relayctl opens the LMDB queue read-only (QUEUE_O_RDONLY), as a second process beside a
 * running relayd or while it is stopped, and prints it: a per-domain summary, a mailq-style
 * listing, one message's envelope and headers, or its stored bytes. It never writes the
 * queue; commands that change it (flush, hold, release, delete, requeue) will go through
 * relayd's control socket and get their own entries in ctl_cmds[] below.
 *
 * Exit codes:
 *   0  success (an empty queue or listing is a success)
 *   1  the message asked for is not in the queue
 *   2  usage: unknown command or option, bad queue id or domain syntax
 *   3  the queue cannot be opened: missing, no permission, damaged, wrong version, or the
 *      configuration file cannot be read
 *   4  an error while reading the queue or writing the output
 *
 * JSON output (--json): one object on one line, UTF-8, followed by a newline.
 * Strings are escaped per RFC 8259: '"' and '\' with a backslash, control characters as
 * \b \f \n \r \t or \u00XX, DEL as \u007f; a byte that is not part of a valid UTF-8
 * sequence is written as \u00XX (its value), so a consumer can tell it apart from text.
 * Times are unix seconds (integers); 0 means "never" (last_attempt), "now" (next_attempt)
 * or "none" (oldest).
 *
 *   relayctl queue --json
 *     {"domains": [ {"domain": "branch.test", "messages": 3, "rcpts": 4, "bytes": 12345,
 *                    "oldest": 1700000000, "held": false}, ... ],
 *      "totals": {"messages": 3, "rcpts": 4, "bytes": 12345,
 *                 "map_size": 268435456, "map_used": 81920}}
 *     "oldest" is the arrival time of the domain's oldest message.
 *
 *   relayctl list [DOMAIN|@DOMAIN] --json
 *     {"messages": [ MESSAGE, ... ]}   in queue id (arrival) order
 *   MESSAGE:
 *     {"id": "4F2A9C01D3E5A001", "size": 5120, "arrival": 1700000000,
 *      "sender": "a@x.test",                   ("" for the null reverse-path <>)
 *      "flags": ["8BITMIME", "SMTPUTF8", "HELD"],   (those set, in this order)
 *      "client_name": "mx.x.test", "client_addr": "127.0.0.1",
 *      "envid": "", "ret": null | "FULL" | "HDRS",
 *      "rcpts": [ {"addr": "b@branch.test", "domain": "branch.test",
 *                  "state": "pending" | "deferred" | "failed", "attempts": 0,
 *                  "next_attempt": 0, "last_attempt": 0, "last_error": "",
 *                  "orcpt": "", "notify": ["SUCCESS", "FAILURE", "DELAY"] | ["NEVER"] | []},
 *                ... ]}
 *     With DOMAIN only the recipients in that domain are listed (and only messages that
 *     have one); with @DOMAIN those in the domain and all its subdomains.
 *
 *   relayctl show ID --json
 *     MESSAGE plus "headers": the stored header block as one string, from the first octet
 *     up to (not including) the first empty line, line ends as stored (CRLF); at most
 *     CTL_HDR_MAX octets, with "headers_truncated": true when cut.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "ctlclient.h"
#include "hf_err.h"
#include "queue.h"
#include "relayctl.h"

#define CTL_OPT_JSON 0x1u
#define CTL_OPT_BODY 0x2u

struct ctl_cmd {
    const char *name;
    const char *usage;
    const char *help;
    int min_args, max_args;
    unsigned opts; /* CTL_OPT_* the command accepts */
    int (*check)(int argc, char **argv, struct relayctl_args *a);
    int (*run)(struct queue *q, const struct relayctl_opts *o, const struct relayctl_args *a);
    /* Commands that act go through relayd's control socket instead of the queue. */
    int (*act)(const struct relayctl_opts *o, int argc, char **argv);
};

/* ---- messages: collected ids, envelope and recipients ------------------------------ */

/* One recipient found by a scan; sorted by (id, idx) to group them per message. */
struct ctl_ref {
    uint64_t id;
    uint32_t idx;
};

struct ctl_refs {
    struct ctl_ref *v;
    size_t n, cap;
};

static int ctl_refs_add(const struct queue_rcpt *r, void *arg)
{
    struct ctl_refs *refs = arg;
    if (refs->n == refs->cap) {
        size_t cap = refs->cap ? refs->cap * 2 : 256;
        struct ctl_ref *v = realloc(refs->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        refs->v = v;
        refs->cap = cap;
    }
    refs->v[refs->n++] = (struct ctl_ref){r->id, r->idx};
    return 0;
}

static int ctl_ref_cmp(const void *a, const void *b)
{
    const struct ctl_ref *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* Prints one message: the envelope, then the recipients whose idx is in want[0..nwant)
 * (every recipient when want is NULL). */
struct ctl_msg_out {
    FILE *f;
    bool json;
    int64_t now;
    const struct ctl_ref *want;
    size_t nwant;
    size_t printed; /* recipients printed so far */
};

static bool ctl_wanted(const struct ctl_msg_out *o, uint32_t idx)
{
    if (o->want == NULL)
        return true;
    for (size_t i = 0; i < o->nwant; i++)
        if (o->want[i].idx == idx)
            return true;
    return false;
}

static void ctl_json_notify(FILE *f, unsigned notify)
{
    static const struct {
        unsigned bit;
        const char *name;
    } bits[] = {{SMTP_NOTIFY_NEVER, "NEVER"},
                {SMTP_NOTIFY_SUCCESS, "SUCCESS"},
                {SMTP_NOTIFY_FAILURE, "FAILURE"},
                {SMTP_NOTIFY_DELAY, "DELAY"}};
    bool first = true;
    putc('[', f);
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        if (notify & bits[i].bit) {
            fprintf(f, "%s\"%s\"", first ? "" : ",", bits[i].name);
            first = false;
        }
    }
    putc(']', f);
}

static int ctl_print_rcpt(const struct queue_rcpt *r, void *arg)
{
    struct ctl_msg_out *o = arg;
    FILE *f = o->f;
    if (!ctl_wanted(o, r->idx))
        return 0;
    if (o->json) {
        fputs(o->printed ? "," : "", f);
        fputs("{\"addr\":", f);
        relayctl_json_str(f, r->addr);
        fputs(",\"domain\":", f);
        relayctl_json_str(f, r->domain);
        fprintf(f,
                ",\"state\":\"%s\",\"attempts\":%" PRIu32 ",\"next_attempt\":%" PRId64
                ",\"last_attempt\":%" PRId64 ",\"last_error\":",
                relayctl_state_name(r->state), r->attempts, r->next_attempt, r->last_attempt);
        relayctl_json_str(f, r->last_error);
        fputs(",\"orcpt\":", f);
        relayctl_json_str(f, r->orcpt);
        fputs(",\"notify\":", f);
        ctl_json_notify(f, r->notify);
        putc('}', f);
    } else {
        char t[64];
        fputs("    <", f);
        relayctl_text_str(f, r->addr);
        fprintf(f, ">  %s, attempts %" PRIu32, relayctl_state_name(r->state), r->attempts);
        if (r->last_attempt > 0)
            fprintf(f, ", last %s", relayctl_time(r->last_attempt, t, sizeof(t)));
        if (r->state == QUEUE_RS_DEFERRED)
            fprintf(f, ", next %s",
                    r->next_attempt > 0 ? relayctl_time(r->next_attempt, t, sizeof(t)) : "now");
        putc('\n', f);
        if (r->last_error[0]) {
            fputs("        (", f);
            relayctl_text_str(f, r->last_error);
            fputs(")\n", f);
        }
    }
    o->printed++;
    return 0;
}

static const char *ctl_ret_name(int ret)
{
    switch (ret) {
    case SMTP_RET_FULL:
        return "FULL";
    case SMTP_RET_HDRS:
        return "HDRS";
    default:
        return NULL;
    }
}

/* Writes the envelope part of MESSAGE in JSON, up to and including "rcpts":[ . */
static void ctl_json_env(FILE *f, const struct queue_env *e)
{
    char id[QUEUE_ID_STR];
    fprintf(f, "{\"id\":\"%s\",\"size\":%" PRIu64 ",\"arrival\":%" PRId64 ",\"sender\":",
            queue_id_str(e->id, id), e->size, e->arrival);
    relayctl_json_str(f, e->sender);
    fputs(",\"flags\":[", f);
    const char *sep = "";
    if (e->flags & QUEUE_F_8BITMIME) {
        fprintf(f, "%s\"8BITMIME\"", sep);
        sep = ",";
    }
    if (e->flags & QUEUE_F_SMTPUTF8) {
        fprintf(f, "%s\"SMTPUTF8\"", sep);
        sep = ",";
    }
    if (e->flags & QUEUE_F_HELD)
        fprintf(f, "%s\"HELD\"", sep);
    fputs("],\"client_name\":", f);
    relayctl_json_str(f, e->client_name);
    fputs(",\"client_addr\":", f);
    relayctl_json_str(f, e->client_addr);
    fputs(",\"envid\":", f);
    relayctl_json_str(f, e->envid);
    const char *ret = ctl_ret_name(e->ret);
    if (ret)
        fprintf(f, ",\"ret\":\"%s\"", ret);
    else
        fputs(",\"ret\":null", f);
    fputs(",\"rcpts\":[", f);
}

static void ctl_text_flags(FILE *f, unsigned flags)
{
    if (flags & QUEUE_F_8BITMIME)
        fputs(" 8BITMIME", f);
    if (flags & QUEUE_F_SMTPUTF8)
        fputs(" SMTPUTF8", f);
    if (flags & QUEUE_F_HELD)
        fputs(" HELD", f);
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

static int ctl_cmd_queue(struct queue *q, const struct relayctl_opts *opt,
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

/* The recipients a listing asks for (a domain, @domain or all), sorted by message id. Returns
 * 0, or an error already printed (refs freed). */
static int ctl_refs_load(struct queue *q, const struct relayctl_args *a, struct ctl_refs *refs)
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

static int ctl_cmd_list(struct queue *q, const struct relayctl_opts *opt,
                        const struct relayctl_args *a)
{
    struct ctl_refs refs = {0};
    int ex = CTL_EX_OK;
    int rc = ctl_refs_load(q, a, &refs);
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
        struct ctl_msg_out o = {.f = f,
                                .json = opt->json,
                                .now = (int64_t)time(NULL),
                                .want = a->has_domain ? &refs.v[i] : NULL,
                                .nwant = j - i};
        if (opt->json) {
            fputs(nmsg ? "," : "", f);
            ctl_json_env(f, &e);
        } else {
            char t[64];
            if (nmsg == 0)
                printf("%-16s %10s  %-19s  %s\n", "QUEUE ID", "SIZE", "ARRIVAL", "SENDER");
            printf("%-16s %10" PRIu64 "  %-19s  <", idstr, e.size,
                   relayctl_time(e.arrival, t, sizeof(t)));
            relayctl_text_str(f, e.sender);
            putc('>', f);
            ctl_text_flags(f, e.flags);
            putc('\n', f);
        }
        rc = queue_get_rcpts(q, refs.v[i].id, ctl_print_rcpt, &o);
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

static int ctl_cmd_show(struct queue *q, const struct relayctl_opts *opt,
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

    struct ctl_msg_out o = {.f = f, .json = opt->json, .now = (int64_t)time(NULL)};
    if (opt->json) {
        ctl_json_env(f, &e);
        rc = queue_get_rcpts(q, a->id, ctl_print_rcpt, &o);
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
        ctl_text_flags(f, e.flags);
        putc('\n', f);
        if (e.envid[0]) {
            fputs("envid:       ", f);
            relayctl_text_str(f, e.envid);
            putc('\n', f);
        }
        if (ctl_ret_name(e.ret))
            printf("ret:         %s\n", ctl_ret_name(e.ret));
        printf("recipients:  %" PRIu32 "\n", e.nrcpt);
        rc = queue_get_rcpts(q, a->id, ctl_print_rcpt, &o);
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

/* ---- argument checks --------------------------------------------------------------- */

static int ctl_check_none(int argc, char **argv, struct relayctl_args *a)
{
    (void)argc;
    (void)argv;
    (void)a;
    return 0;
}

int relayctl_check_id(int argc, char **argv, struct relayctl_args *a)
{
    (void)argc;
    const char *s = argv[0];
    if (strlen(s) != QUEUE_ID_STR - 1 || queue_id_parse(s, &a->id) < 0) {
        fprintf(stderr, "relayctl: bad queue id '");
        relayctl_text_str(stderr, s);
        fprintf(stderr, "': expected %d hexadecimal digits\n", QUEUE_ID_STR - 1);
        return CTL_EX_USAGE;
    }
    queue_id_str(a->id, a->idstr);
    return 0;
}

/* DOMAIN or @DOMAIN (the domain and its subdomains, as in ETRN @DOMAIN, RFC 1985). */
int relayctl_check_domain(int argc, char **argv, struct relayctl_args *a)
{
    if (argc == 0)
        return 0;
    const char *s = argv[0];
    if (s[0] == '@') {
        a->subdomains = true;
        s++;
    }
    size_t n = strlen(s);
    bool ok =
        n > 0 && n < sizeof(a->domain) && s[0] != '.' && s[n - 1] != '.' && strstr(s, "..") == NULL;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* LDH labels, or UTF-8 octets of U-labels (RFC 6531); no address literals. */
        ok = c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') || c == '-' || c == '.';
    }
    if (!ok) {
        fprintf(stderr, "relayctl: bad domain '");
        relayctl_text_str(stderr, argv[0]);
        fprintf(stderr, "': expected DOMAIN or @DOMAIN\n");
        return CTL_EX_USAGE;
    }
    for (size_t i = 0; i <= n; i++)
        a->domain[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    a->has_domain = true;
    return 0;
}

/* ---- mailq: the Sendmail/Postfix listing ----------------------------------------------- */

struct ctl_mailq_rcpt {
    const struct ctl_ref *want;
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
static int ctl_cmd_mailq(struct queue *q, const struct relayctl_opts *opt,
                         const struct relayctl_args *a)
{
    (void)opt;
    struct ctl_refs refs = {0};
    if (ctl_refs_load(q, a, &refs) != 0)
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

/* Commands. Those that change the queue (flush, hold, release, delete, requeue) belong
 * here too once relayd's control socket exists; they will connect to it instead of
 * opening the queue, so they get a run function of their own kind (see main()). */
static const struct ctl_cmd ctl_cmds[] = {
    {"queue", "queue [--json]",
     "per-domain summary: messages, recipients, size, oldest, policy, last attempt and its "
     "result, running flush; and totals",
     0, 0, CTL_OPT_JSON, ctl_check_none, ctl_cmd_queue, NULL},
    {"mailq", "mailq [DOMAIN|@DOMAIN]",
     "Sendmail/Postfix-compatible listing (also when run as 'mailq' through a symlink)", 0, 1, 0,
     relayctl_check_domain, ctl_cmd_mailq, NULL},
    {"list", "list [DOMAIN|@DOMAIN] [--json]",
     "every queued message with its recipients (@DOMAIN: with subdomains)", 0, 1, CTL_OPT_JSON,
     relayctl_check_domain, ctl_cmd_list, NULL},
    {"show", "show ID [--body] [--json]",
     "one message: envelope, recipients and headers; --body: the stored message, byte-exact", 1, 1,
     CTL_OPT_JSON | CTL_OPT_BODY, relayctl_check_id, ctl_cmd_show, NULL},
    {"flush", "flush DOMAIN|@DOMAIN|--all [--wait]",
     "deliver now (the same queue run ETRN starts); --wait follows it and prints each "
     "recipient's outcome",
     0, 1, 0, NULL, NULL, relayctl_act_flush},
    {"hold", "hold DOMAIN|ID", "stop delivering a domain or a message until released", 1, 64, 0,
     NULL, NULL, relayctl_act_hold},
    {"release", "release DOMAIN|ID", "undo hold", 1, 64, 0, NULL, NULL, relayctl_act_release},
    {"delete", "delete ID...|--domain DOMAIN [--yes]",
     "remove messages (or a domain's recipients) for good; asks on a terminal unless --yes", 0, 256,
     0, NULL, NULL, relayctl_act_delete},
    {"bounce", "bounce ID...|--domain DOMAIN [--reason TEXT]",
     "return messages (or a domain's recipients) to their senders now, with a DSN", 0, 256, 0, NULL,
     NULL, relayctl_act_bounce},
    {"test-clock-advance", "test-clock-advance SECONDS",
     "TEST ONLY: move relayd's lifecycle clock forward (relayd started with "
     "HF_TEST_TIME_OFFSET)",
     1, 1, 0, NULL, NULL, relayctl_act_clock},
    {"requeue", "requeue ID...", "make messages due now (retry schedule reset)", 1, 256, 0, NULL,
     NULL, relayctl_act_requeue},
    {"stats", "stats [--json]",
     "counters since relayd started: accepted, refused, delivered, deferred, failed, ETRN "
     "replies, connections",
     0, 0, CTL_OPT_JSON, NULL, NULL, relayctl_act_stats},
};

static void ctl_usage(FILE *f)
{
    fprintf(f, "usage: relayctl [-c FILE | -q DIR] [-s SOCKET] COMMAND [ARGS]\n"
               "\n"
               "Inspects relayd's queue (read-only, works while relayd runs or not) and acts\n"
               "on it through relayd's control socket (flush, hold, release, delete, requeue).\n"
               "\n"
               "  -c, --config FILE  use the queue_dir of relayd's configuration FILE\n"
               "                     (default " CTL_DEFAULT_CONF ")\n"
               "  -q, --queue DIR    use the queue in DIR\n"
               "  -s, --socket PATH  relayd's control socket (default: control_socket)\n"
               "      --json         machine-readable output (schema: see relayctl.c)\n"
               "      --body         show: write the stored message only\n"
               "  -h, --help         this text\n"
               "  -V, --version      version\n"
               "\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
        fprintf(f, "  %s\n      %s\n", ctl_cmds[i].usage, ctl_cmds[i].help);
    fprintf(f, "\n"
               "exit status: 0 ok, 1 no such message, 2 usage error, 3 queue or config\n"
               "cannot be opened, 4 error while reading the queue or writing output,\n"
               "5 relayd not running or its control socket not usable\n");
}

/* ---- configuration: queue_dir ------------------------------------------------------ */

/* Loads relayd's configuration (lib/cfg.c: the same parser, defaults and relative-path
 * rules as relayd) into *c. Returns true, or false after printing every error with
 * file:line (*ex gets the exit code then; *c is freed). */
static bool ctl_conf_load(const char *path, struct cfg *c, int *ex)
{
    struct cfg_errors errs = {0};
    int rc = cfg_load(path, c, &errs);
    if (rc == -ENOMEM) {
        fprintf(stderr, "relayctl: out of memory\n");
        *ex = CTL_EX_ERROR;
    } else if (rc < 0 || errs.n > 0) {
        cfg_errors_print(&errs, stderr, "relayctl: ");
        if (errs.n == 0)
            fprintf(stderr, "relayctl: cannot load configuration %s: %s\n", path, hf_strerror(rc));
        *ex = CTL_EX_NOQUEUE;
    } else {
        cfg_errors_free(&errs);
        return true;
    }
    cfg_errors_free(&errs);
    cfg_free(c);
    return false;
}

/* ---- main -------------------------------------------------------------------------- */

static int ctl_open_error(const char *dir, int rc)
{
    switch (rc) {
    case -ENOENT:
    case -ENOTDIR:
        fprintf(stderr, "relayctl: no queue at %s: %s\n", dir, hf_strerror(rc));
        break;
    case -EACCES:
    case -EPERM:
        fprintf(stderr, "relayctl: cannot open the queue at %s: %s\n", dir, hf_strerror(rc));
        break;
    case HF_ECORRUPT:
        fprintf(stderr, "relayctl: the queue at %s is damaged or not a holdfast queue: %s\n", dir,
                hf_strerror(rc));
        break;
    case HF_EVERSION:
        fprintf(stderr,
                "relayctl: the queue at %s was written by an incompatible version of relayd:"
                " %s\n",
                dir, hf_strerror(rc));
        break;
    default:
        fprintf(stderr, "relayctl: cannot open the queue at %s: %s\n", dir, hf_strerror(rc));
        break;
    }
    return CTL_EX_NOQUEUE;
}

int main(int argc, char **argv)
{
    enum { OPT_JSON = 256, OPT_BODY, OPT_WAIT, OPT_YES, OPT_ALL, OPT_DOMAIN, OPT_REASON };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"queue", required_argument, NULL, 'q'},
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, OPT_JSON},
        {"body", no_argument, NULL, OPT_BODY},
        {"wait", no_argument, NULL, OPT_WAIT},
        {"yes", no_argument, NULL, OPT_YES},
        {"all", no_argument, NULL, OPT_ALL},
        {"domain", required_argument, NULL, OPT_DOMAIN},
        {"reason", required_argument, NULL, OPT_REASON},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct relayctl_opts opt = {0};
    int c;
    /* Run as "mailq" (a symlink): the Sendmail/Postfix listing. */
    char *argv0 = strdup(argv[0]);
    bool as_mailq = argv0 && strcmp(basename(argv0), "mailq") == 0;
    free(argv0);
    while ((c = getopt_long(argc, argv, as_mailq ? "+c:q:s:hV" : "c:q:s:hV", longopts, NULL)) !=
           -1) {
        switch (c) {
        case 's':
            opt.sock = optarg;
            break;
        case OPT_REASON:
            opt.reason = optarg;
            break;
        case OPT_WAIT:
            opt.wait = true;
            break;
        case OPT_YES:
            opt.yes = true;
            break;
        case OPT_ALL:
            opt.all = true;
            break;
        case OPT_DOMAIN:
            opt.domain = optarg;
            break;
        case 'c':
            opt.conf = optarg;
            break;
        case 'q':
            opt.qdir = optarg;
            break;
        case OPT_JSON:
            opt.json = true;
            break;
        case OPT_BODY:
            opt.body = true;
            break;
        case 'h':
            ctl_usage(stdout);
            return CTL_EX_OK;
        case 'V':
            printf("relayctl (holdfast) %s\n", HF_VERSION);
            return CTL_EX_OK;
        default:
            fprintf(stderr, "Try 'relayctl --help'.\n");
            return CTL_EX_USAGE;
        }
    }
    if (optind >= argc && !as_mailq) {
        ctl_usage(stderr);
        return CTL_EX_USAGE;
    }
    const char *name = as_mailq ? "mailq" : argv[optind++];
    const struct ctl_cmd *cmd = NULL;
    for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
        if (strcmp(ctl_cmds[i].name, name) == 0)
            cmd = &ctl_cmds[i];
    if (cmd == NULL) {
        fprintf(stderr, "relayctl: unknown command '");
        relayctl_text_str(stderr, name);
        fprintf(stderr, "'. Try 'relayctl --help'.\n");
        return CTL_EX_USAGE;
    }
    int nargs = argc - optind;
    if (nargs < cmd->min_args || nargs > cmd->max_args) {
        fprintf(stderr, "relayctl: usage: relayctl %s\n", cmd->usage);
        return CTL_EX_USAGE;
    }
    if ((opt.json && !(cmd->opts & CTL_OPT_JSON)) || (opt.body && !(cmd->opts & CTL_OPT_BODY))) {
        fprintf(stderr, "relayctl: %s does not take %s\n", cmd->name,
                opt.body ? "--body" : "--json");
        return CTL_EX_USAGE;
    }
    if (opt.body && opt.json) {
        fprintf(stderr, "relayctl: --body writes the raw message; it cannot be combined with"
                        " --json\n");
        return CTL_EX_USAGE;
    }
    if (opt.conf && opt.qdir) {
        fprintf(stderr, "relayctl: give either -c FILE or -q DIR, not both\n");
        return CTL_EX_USAGE;
    }
    if (opt.reason && cmd->act != relayctl_act_bounce) {
        fprintf(stderr, "relayctl: --reason goes with bounce\n");
        return CTL_EX_USAGE;
    }
    if ((opt.wait || opt.all) && cmd->act != relayctl_act_flush) {
        fprintf(stderr, "relayctl: --wait and --all go with flush\n");
        return CTL_EX_USAGE;
    }
    if ((opt.yes && cmd->act != relayctl_act_delete) ||
        (opt.domain && cmd->act != relayctl_act_delete && cmd->act != relayctl_act_bounce)) {
        fprintf(stderr, "relayctl: --yes goes with delete, --domain with delete and bounce\n");
        return CTL_EX_USAGE;
    }
    struct relayctl_args args = {0};
    int ex = cmd->check ? cmd->check(nargs, argv + optind, &args) : 0;
    if (ex != 0)
        return ex;

    /* The configuration names the queue and the control socket; -q and -s override. */
    static struct cfg cfg;
    bool have_cfg = false;
    char *qdir = NULL;
    if (opt.qdir) {
        qdir = strdup(opt.qdir);
        if (opt.conf)
            have_cfg = ctl_conf_load(opt.conf, &cfg, &ex);
    } else {
        have_cfg = ctl_conf_load(opt.conf ? opt.conf : CTL_DEFAULT_CONF, &cfg, &ex);
        if (!have_cfg)
            return ex;
        if (!cfg.queue_dir || !cfg.queue_dir[0]) {
            fprintf(stderr, "relayctl: %s: no queue_dir set\n", cfg.path);
            cfg_free(&cfg);
            return CTL_EX_NOQUEUE;
        }
        qdir = strdup(cfg.queue_dir);
    }
    if (have_cfg) {
        opt.cfg = &cfg;
        if (!opt.sock && cfg.control_socket && cfg.control_socket[0])
            opt.sock = cfg.control_socket;
    }
    if (cmd->act) {
        ex = cmd->act(&opt, nargs, argv + optind);
        free(qdir);
        if (have_cfg)
            cfg_free(&cfg);
        fflush(stdout);
        return ex;
    }
    if (qdir == NULL) {
        fprintf(stderr, "relayctl: out of memory\n");
        if (have_cfg)
            cfg_free(&cfg);
        return CTL_EX_ERROR;
    }
    struct queue *q = NULL;
    int rc = queue_open(qdir, QUEUE_O_RDONLY, 0, 0, &q);
    if (rc < 0) {
        ex = ctl_open_error(qdir, rc);
        free(qdir);
        if (have_cfg)
            cfg_free(&cfg);
        return ex;
    }
    ex = cmd->run(q, &opt, &args);
    queue_close(q);
    free(qdir);
    if (have_cfg)
        cfg_free(&cfg);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "relayctl: cannot write the output: %s\n", strerror(errno));
        return ex == CTL_EX_OK ? CTL_EX_ERROR : ex;
    }
    return ex;
}
