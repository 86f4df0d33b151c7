/* c-ares on the libuv loop: MX, A and AAAA lookups for relayd's flush and fetchd, and
 * TLSA lookups for DANE (RFC 7672).
 *
 * c-ares tells which sockets it wants watched through ARES_OPT_SOCK_STATE_CB; each gets a
 * uv_poll_t, and one uv_timer_t follows ares_timeout() so retries and timeouts happen
 * without blocking the loop. Every entry into c-ares (a poll or timer event, a new query)
 * is counted in depth: dns_free() from inside a callback only marks the resolver, and the
 * teardown (ares_cancel, ares_destroy) runs once the outermost entry returns, because
 * c-ares must not be destroyed from inside its own processing.
 *
 * Answers that need no query (IP literals, "localhost") and queries that c-ares ends
 * while they are being started wait on a ready list that a zero timer (kick) delivers
 * from the loop, so no callback runs inside the call that asked for it.
 *
 * c-ares 1.18 has no TLSA parser and cannot set the DO bit through its options, so a TLSA
 * query is built with ares_create_query(), given the AD and DO bits by hand and sent with
 * ares_send(); the raw answer is parsed here (dns_tlsa_parse), with every read bounds
 * checked and names expanded by ares_expand_name(). Whether the records are usable for
 * DANE, and what an insecure answer means for delivery, is the caller's business.
 *
 * c-ares statuses are translated here and nowhere else (dns_status). Choosing among the
 * exchangers is mx.c's work. */
#include "dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ares.h>
#include <uv.h>

#include "hf_err.h"
#include "log.h"

struct dns_poll {
    uv_poll_t h;
    struct dns *d;
    ares_socket_t fd;
    bool closing;
    struct dns_poll *next;
};

#define DNS_T_TLSA    52   /* RFC 6698 7.1 */
#define DNS_EDNS_SIZE 1232 /* UDP payload size offered in EDNS0 (DNS flag day 2020) */
#define DNS_CNAME_MAX 8    /* CNAME links followed inside one TLSA answer */
#define DNS_TLSA_NAME (MX_NAME_MAX + 2)

struct dns_req;

enum dns_kind { DNS_KIND_MX, DNS_KIND_ADDR, DNS_KIND_TLSA };

/* One family's query of one host: the callback argument. */
struct dns_fam {
    struct dns_host *hq;
    int family;
};

/* The address lookups of one host. */
struct dns_host {
    struct dns_req *req;
    struct dns_fam fam[2]; /* [0] A, [1] AAAA */
    int st[2];             /* translated status of each family */
    struct in_addr a4[DNS_ADDR_MAX];
    size_t n4;
    struct ares_in6_addr a6[DNS_ADDR_MAX];
    size_t n6;
    struct sockaddr_storage addrs[2 * DNS_ADDR_MAX];
};

struct dns_req {
    struct dns *d;
    enum dns_kind kind;
    bool submitting; /* inside dns_*_resolve: completion goes to the ready list */
    bool implicit;
    bool cancelled;
    int status;
    unsigned pending; /* outstanding c-ares queries, plus one while starting them */
    char name[MX_NAME_MAX + 2];
    struct mx_host *hosts; /* nhosts, results */
    struct dns_host *hq;   /* nhosts, lookup state */
    size_t nhosts;
    dns_mx_cb mx_cb;
    dns_addr_cb addr_cb;
    dns_tlsa_cb tlsa_cb;
    void *arg;
    struct dns_req *next_ready;
    /* TLSA only. */
    bool edns;               /* the query carries EDNS0 (cleared after a FORMERR) */
    bool secure;             /* the answer's AD bit */
    struct dns_tlsa_rr *rrs; /* nrrs, pointing into abuf */
    size_t nrrs;
    unsigned char *abuf; /* a copy of the answer */
};

struct dns {
    uv_loop_t *loop;
    ares_channel ch;
    uv_timer_t timer; /* follows ares_timeout() */
    uv_timer_t kick;  /* delivers the ready list */
    struct dns_poll *polls;
    struct dns_req *ready, **ready_tail;
    unsigned depth;   /* nesting of entries into c-ares and our callbacks */
    unsigned handles; /* open libuv handles; d is freed when the last one closes */
    bool freeing;
    bool torn_down;
};

static void dns_teardown(struct dns *d);

/* The border: c-ares status -> project code (STYLE.md). */
static int dns_status(int st)
{
    switch (st) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND: /* NXDOMAIN: the name does not exist */
    case ARES_EBADNAME:
        return HF_EDNS;
    case ARES_ENODATA: /* the name exists without records of the type (NODATA) */
        return -ENOENT;
    case ARES_ENOMEM:
        return -ENOMEM;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return -ECANCELED;
    default:
        /* ARES_ESERVFAIL, ARES_ETIMEOUT, ARES_ECONNREFUSED, ARES_EREFUSED, ARES_EFORMERR,
         * ARES_ENOTIMP, ARES_EBADRESP...: a server problem is never a reason to bounce. */
        return HF_EDNSTEMP;
    }
}

/* ---- loop integration ---- */

static void dns_timer_cb(uv_timer_t *t);

/* Rearms the timer for c-ares' next timeout, or stops it when nothing is pending. */
static void dns_timer_update(struct dns *d)
{
    struct timeval tv, *tvp;
    if (d->freeing)
        return;
    tvp = ares_timeout(d->ch, NULL, &tv);
    if (!tvp) {
        uv_timer_stop(&d->timer);
        return;
    }
    uint64_t ms = (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
    uv_timer_start(&d->timer, dns_timer_cb, ms, 0);
}

static void dns_enter(struct dns *d)
{
    d->depth++;
}

/* Leaves an entry; the outermost one runs a teardown that dns_free() deferred, or
 * rearms the timer. */
static void dns_leave(struct dns *d)
{
    if (--d->depth > 0)
        return;
    if (d->freeing) {
        if (!d->torn_down)
            dns_teardown(d);
        return;
    }
    dns_timer_update(d);
}

static void dns_timer_cb(uv_timer_t *t)
{
    struct dns *d = t->data;
    dns_enter(d);
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_leave(d);
}

static void dns_poll_cb(uv_poll_t *h, int status, int events)
{
    struct dns_poll *p = h->data;
    struct dns *d = p->d;
    ares_socket_t fd = p->fd, rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
    /* On a poll error let c-ares try both directions: its recv/send sees the error. */
    if (status < 0 || (events & UV_READABLE))
        rfd = fd;
    if (status < 0 || (events & UV_WRITABLE))
        wfd = fd;
    dns_enter(d);
    ares_process_fd(d->ch, rfd, wfd);
    dns_leave(d);
}

static void dns_handle_closed(struct dns *d)
{
    if (--d->handles == 0 && d->torn_down)
        free(d);
}

static void dns_poll_closed(uv_handle_t *h)
{
    struct dns_poll *p = h->data;
    struct dns *d = p->d;
    free(p);
    dns_handle_closed(d);
}

static void dns_timer_closed(uv_handle_t *h)
{
    dns_handle_closed(h->data);
}

/* Unlinks p and closes its handle; c-ares may close the socket right after. */
static void dns_poll_close(struct dns_poll *p)
{
    struct dns_poll **pp = &p->d->polls;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    p->closing = true;
    uv_close((uv_handle_t *)&p->h, dns_poll_closed);
}

/* ARES_OPT_SOCK_STATE_CB: c-ares wants fd watched for reading and/or writing, or (both
 * false) no longer watched. */
static void dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    struct dns_poll *p = d->polls;
    while (p && p->fd != fd)
        p = p->next;
    if (!readable && !writable) {
        if (p)
            dns_poll_close(p);
        return;
    }
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p) {
            log_err("dns poll fd=%d err=ENOMEM", (int)fd);
            return; /* the query times out through the timer */
        }
        int rc = uv_poll_init_socket(d->loop, &p->h, fd);
        if (rc < 0) {
            log_err("dns poll fd=%d err=%s", (int)fd, hf_errname(rc));
            free(p);
            return;
        }
        p->d = d;
        p->fd = fd;
        p->h.data = p;
        p->next = d->polls;
        d->polls = p;
        d->handles++;
    }
    int ev = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
    int rc = uv_poll_start(&p->h, ev, dns_poll_cb);
    if (rc < 0)
        log_err("dns poll fd=%d err=%s", (int)fd, hf_errname(rc));
}

/* ---- requests ---- */

static void dns_req_free(struct dns_req *r)
{
    free(r->hosts);
    free(r->hq);
    free(r->rrs);
    free(r->abuf);
    free(r);
}

/* Combines a host's two family lookups into its address list and err. */
static void dns_host_finish(struct dns_host *hq, struct mx_host *mh)
{
    size_t n = 0;
    if (mh->err == HF_ENULLMX)
        return;
    for (size_t i = 0; i < hq->n4; i++) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&hq->addrs[n++];
        memset(sin, 0, sizeof(hq->addrs[0]));
        sin->sin_family = AF_INET;
        sin->sin_addr = hq->a4[i];
    }
    for (size_t i = 0; i < hq->n6; i++) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&hq->addrs[n++];
        memset(sin6, 0, sizeof(hq->addrs[0]));
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, &hq->a6[i], 16);
    }
    mh->addrs = hq->addrs;
    mh->naddrs = n;
    if (n > 0) {
        mh->err = 0;
        return;
    }
    /* No address: the most telling of the two statuses, temporary before permanent. */
    static const int order[] = {-ECANCELED, -ENOMEM, HF_EDNSTEMP, HF_EDNS, -ENOENT};
    mh->err = -ENOENT;
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
        if (hq->st[0] == order[k] || hq->st[1] == order[k]) {
            mh->err = order[k];
            break;
        }
    }
}

static void dns_kick_cb(uv_timer_t *t);

/* Calls the request's callback and frees it. */
static void dns_req_deliver(struct dns_req *r)
{
    struct dns *d = r->d;
    for (size_t i = 0; i < r->nhosts; i++)
        dns_host_finish(&r->hq[i], &r->hosts[i]);
    char safe[4 * (MX_NAME_MAX + 2)];
    if (r->cancelled || d->freeing)
        r->status = -ECANCELED;
    if (r->kind == DNS_KIND_MX) {
        struct dns_mx_result res = {
            .domain = r->name,
            .status = r->status,
            .implicit = r->status == 0 && r->implicit,
            .hosts = r->status == 0 ? r->hosts : NULL,
            .nhosts = r->status == 0 ? r->nhosts : 0,
        };
        log_debug("dns mx domain=%s status=%s nhosts=%zu implicit=%d",
                  log_safe(r->name, safe, sizeof(safe)), hf_errname(res.status), res.nhosts,
                  (int)res.implicit);
        r->mx_cb(&res, r->arg);
    } else if (r->kind == DNS_KIND_TLSA) {
        struct dns_tlsa_result res = {.name = r->name, .status = r->status};
        if (res.status == 0 || res.status == -ENOENT)
            res.secure = r->secure;
        if (res.status == 0) {
            res.rrs = r->rrs;
            res.nrrs = r->nrrs;
        }
        log_debug("dns tlsa name=%s status=%s nrrs=%zu secure=%d",
                  log_safe(r->name, safe, sizeof(safe)), hf_errname(res.status), res.nrrs,
                  (int)res.secure);
        r->tlsa_cb(&res, r->arg);
    } else {
        struct dns_addr_result res = {.host = r->name};
        res.status = r->status;
        if (res.status == 0)
            res.status = r->hosts[0].err;
        if (res.status == 0) {
            res.addrs = r->hosts[0].addrs;
            res.naddrs = r->hosts[0].naddrs;
        }
        log_debug("dns addr host=%s status=%s naddrs=%zu", log_safe(r->name, safe, sizeof(safe)),
                  hf_errname(res.status), res.naddrs);
        r->addr_cb(&res, r->arg);
    }
    dns_req_free(r);
}

/* The request's last lookup has ended: deliver now, or from the loop when we are still
 * inside the call that started it. */
static void dns_req_done(struct dns_req *r)
{
    struct dns *d = r->d;
    if (!r->submitting) {
        dns_req_deliver(r);
        return;
    }
    r->next_ready = NULL;
    *d->ready_tail = r;
    d->ready_tail = &r->next_ready;
    if (!d->freeing)
        uv_timer_start(&d->kick, dns_kick_cb, 0, 0);
}

static void dns_req_unref(struct dns_req *r)
{
    if (--r->pending == 0)
        dns_req_done(r);
}

/* Delivers the ready list as it is now; requests added by the callbacks wait for the next
 * kick, so a caller that keeps asking cannot starve the loop. */
static void dns_kick_cb(uv_timer_t *t)
{
    struct dns *d = t->data;
    struct dns_req *r = d->ready;
    d->ready = NULL;
    d->ready_tail = &d->ready;
    dns_enter(d);
    while (r) {
        struct dns_req *next = r->next_ready;
        r->submitting = false;
        dns_req_deliver(r);
        r = next;
    }
    dns_leave(d);
}

static void dns_addr_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_fam *f = arg;
    struct dns_host *hq = f->hq;
    struct dns_req *r = hq->req;
    int i = f->family == AF_INET ? 0 : 1;
    (void)timeouts;

    int st = status;
    if (st == ARES_SUCCESS && i == 0) {
        struct ares_addrttl t[DNS_ADDR_MAX];
        int n = DNS_ADDR_MAX;
        st = ares_parse_a_reply(abuf, alen, NULL, t, &n);
        for (int k = 0; st == ARES_SUCCESS && k < n; k++)
            hq->a4[hq->n4++] = t[k].ipaddr;
    } else if (st == ARES_SUCCESS) {
        struct ares_addr6ttl t[DNS_ADDR_MAX];
        int n = DNS_ADDR_MAX;
        st = ares_parse_aaaa_reply(abuf, alen, NULL, t, &n);
        for (int k = 0; st == ARES_SUCCESS && k < n; k++)
            hq->a6[hq->n6++] = t[k].ip6addr;
    }
    hq->st[i] = dns_status(st);
    if (hq->st[i] == -ECANCELED)
        r->cancelled = true;
    dns_req_unref(r);
}

/* Starts the A and AAAA queries of host i. */
static void dns_host_start(struct dns_req *r, size_t i)
{
    struct dns_host *hq = &r->hq[i];
    hq->req = r;
    hq->fam[0] = (struct dns_fam){hq, AF_INET};
    hq->fam[1] = (struct dns_fam){hq, AF_INET6};
    if (r->d->freeing) {
        r->cancelled = true;
        return;
    }
    r->pending += 2;
    ares_query(r->d->ch, r->hosts[i].name, ns_c_in, ns_t_a, dns_addr_answer, &hq->fam[0]);
    ares_query(r->d->ch, r->hosts[i].name, ns_c_in, ns_t_aaaa, dns_addr_answer, &hq->fam[1]);
}

/* Allocates n hosts for r. */
static int dns_req_hosts(struct dns_req *r, size_t n)
{
    r->hosts = calloc(n, sizeof(*r->hosts));
    r->hq = calloc(n, sizeof(*r->hq));
    if (!r->hosts || !r->hq)
        return -ENOMEM;
    r->nhosts = n;
    return 0;
}

/* Copies the MX answer into r->hosts: duplicates merged at their best preference, at most
 * DNS_MX_MAX hosts (the most preferred ones), otherwise in the published order. */
static int dns_mx_collect(struct dns_req *r, const struct ares_mx_reply *mx)
{
    size_t n = 0;
    for (const struct ares_mx_reply *m = mx; m; m = m->next)
        n++;
    struct mx_host *all = calloc(n, sizeof(*all));
    if (!all)
        return -ENOMEM;
    size_t k = 0;
    for (const struct ares_mx_reply *m = mx; m; m = m->next) {
        struct mx_host h;
        if (mx_host_set(&h, m->host ? m->host : "", m->priority) < 0)
            continue; /* c-ares never returns such a name; skip rather than trust it */
        size_t j = 0;
        while (j < k && strcmp(all[j].name, h.name) != 0)
            j++;
        if (j < k) {
            if (h.pref < all[j].pref)
                all[j].pref = h.pref;
            continue;
        }
        all[k++] = h;
    }
    if (k > DNS_MX_MAX) {
        /* Stable insertion sort by preference, then keep the head. */
        for (size_t i = 1; i < k; i++) {
            struct mx_host h = all[i];
            size_t j = i;
            while (j > 0 && all[j - 1].pref > h.pref) {
                all[j] = all[j - 1];
                j--;
            }
            all[j] = h;
        }
        char safe[4 * (MX_NAME_MAX + 2)];
        log_warn("dns mx domain=%s records=%zu kept=%d", log_safe(r->name, safe, sizeof(safe)), k,
                 DNS_MX_MAX);
        k = DNS_MX_MAX;
    }
    int rc = k ? dns_req_hosts(r, k) : HF_EDNSTEMP;
    if (rc == 0)
        memcpy(r->hosts, all, k * sizeof(*all));
    free(all);
    return rc;
}

static void dns_mx_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_req *r = arg;
    struct ares_mx_reply *mx = NULL;
    (void)timeouts;

    int rc = dns_status(status);
    if (rc == 0) {
        int prc = ares_parse_mx_reply(abuf, alen, &mx);
        /* An answer without MX records (a CNAME alone) is NODATA; one that does not parse
         * is the server's fault: temporary. */
        rc = prc == ARES_SUCCESS ? 0 : prc == ARES_ENODATA ? -ENOENT : dns_status(prc);
        if (rc == HF_EDNS)
            rc = HF_EDNSTEMP;
    }
    if (rc == -ENOENT) {
        /* RFC 5321 5.1: the domain exists without MX: it is its own exchanger. */
        r->implicit = true;
        rc = dns_req_hosts(r, 1);
        if (rc == 0)
            rc = mx_host_set(&r->hosts[0], r->name, 0);
    } else if (rc == 0) {
        rc = dns_mx_collect(r, mx);
    }
    ares_free_data(mx);

    if (rc == -ECANCELED)
        r->cancelled = true;
    r->status = rc;
    if (rc == 0) {
        for (size_t i = 0; i < r->nhosts; i++) {
            if (mx_host_is_null(&r->hosts[i])) {
                r->hosts[i].err = HF_ENULLMX; /* RFC 7505: nothing to look up */
                r->hq[i].req = r;
                continue;
            }
            dns_host_start(r, i);
        }
    }
    dns_req_unref(r); /* the MX query's own reference */
}

/* Parses an IP literal: "192.0.2.1", "::1", "[192.0.2.1]", "[::1]" and, with the SMTP
 * domain-literal tag, "[IPv6:2001:db8::1]" (RFC 5321 4.1.3). */
static bool dns_literal(const char *s, struct sockaddr_storage *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    size_t len = strlen(s);
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
        if (len >= 5 && strncasecmp(s, "IPv6:", 5) == 0) {
            s += 5;
            len -= 5;
        }
    }
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, buf, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

/* Answers host 0 of r without DNS when its name is a literal or localhost. */
static bool dns_answer_locally(struct dns_req *r)
{
    struct dns_host *hq = &r->hq[0];
    struct sockaddr_storage sa;
    hq->req = r;
    hq->st[0] = hq->st[1] = -ENOENT;
    if (dns_literal(r->name, &sa)) {
        if (sa.ss_family == AF_INET)
            hq->a4[hq->n4++] = ((struct sockaddr_in *)&sa)->sin_addr;
        else
            memcpy(&hq->a6[hq->n6++], &((struct sockaddr_in6 *)&sa)->sin6_addr, 16);
        return true;
    }
    /* RFC 6761 6.3: localhost is answered locally, never sent to a server. */
    if (strcasecmp(r->name, "localhost") == 0 || strcasecmp(r->name, "localhost.") == 0) {
        hq->a4[hq->n4++].s_addr = htonl(INADDR_LOOPBACK);
        memcpy(&hq->a6[hq->n6++], &in6addr_loopback, 16);
        return true;
    }
    return false;
}

static int dns_req_new(struct dns *d, const char *name, struct dns_req **out)
{
    size_t len = strlen(name);
    *out = NULL;
    if (d->freeing)
        return -ECANCELED;
    if (len == 0 || len > MX_NAME_MAX + 1 || (len == MX_NAME_MAX + 1 && name[len - 1] != '.'))
        return HF_EADDR;
    struct dns_req *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->d = d;
    memcpy(r->name, name, len + 1);
    *out = r;
    return 0;
}

int dns_mx_resolve(struct dns *d, const char *domain, dns_mx_cb cb, void *arg)
{
    struct dns_req *r;
    int rc = dns_req_new(d, domain, &r);
    if (rc < 0)
        return rc;
    r->kind = DNS_KIND_MX;
    r->mx_cb = cb;
    r->arg = arg;
    r->submitting = true;
    r->pending = 1;
    dns_enter(d);
    if (domain[0] == '[') {
        /* An address literal is its own exchanger (RFC 5321 5.1). */
        r->implicit = true;
        rc = dns_req_hosts(r, 1);
        if (rc == 0)
            rc = mx_host_set(&r->hosts[0], domain, 0);
        if (rc == 0 && !dns_answer_locally(r))
            rc = HF_EADDR;
        if (rc < 0) {
            dns_req_free(r);
            dns_leave(d);
            return rc;
        }
        dns_req_unref(r);
    } else {
        ares_query(d->ch, domain, ns_c_in, ns_t_mx, dns_mx_answer, r);
    }
    r->submitting = false; /* r may be on the ready list; the kick clears it there too */
    dns_leave(d);
    return 0;
}

int dns_addr_resolve(struct dns *d, const char *host, dns_addr_cb cb, void *arg)
{
    struct dns_req *r;
    int rc = dns_req_new(d, host, &r);
    if (rc < 0)
        return rc;
    rc = dns_req_hosts(r, 1);
    if (rc == 0)
        rc = mx_host_set(&r->hosts[0], host, 0);
    if (rc < 0) {
        dns_req_free(r);
        return rc;
    }
    r->kind = DNS_KIND_ADDR;
    r->addr_cb = cb;
    r->arg = arg;
    r->submitting = true;
    r->pending = 1;
    dns_enter(d);
    if (!dns_answer_locally(r))
        dns_host_start(r, 0);
    dns_req_unref(r); /* the starting reference */
    r->submitting = false;
    dns_leave(d);
    return 0;
}

/* ---- TLSA (DANE) ---- */

/* One resource record of an answer section, located in the message. */
struct dns_rr {
    char *owner; /* expanded by c-ares: release with ares_free_string */
    unsigned type, cls;
    size_t rdoff, rdlen;
};

static unsigned dns_u16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Expands the name at off in abuf (borrowed) into *out (release with ares_free_string);
 * *wirelen is the octets it takes at off, within limit octets. Returns 0, -ENOMEM, or
 * HF_EDNS for a name that runs past the message or the limit, or loops. */
static int dns_name_at(const unsigned char *abuf, size_t alen, size_t off, size_t limit, char **out,
                       size_t *wirelen)
{
    long n = 0;
    *out = NULL;
    if (off >= alen)
        return HF_EDNS;
    int st = ares_expand_name(abuf + off, abuf, (int)alen, out, &n);
    if (st != ARES_SUCCESS) {
        *out = NULL;
        return st == ARES_ENOMEM ? -ENOMEM : HF_EDNS;
    }
    if (n <= 0 || (size_t)n > alen - off || (size_t)n > limit) {
        ares_free_string(*out);
        *out = NULL;
        return HF_EDNS;
    }
    *wirelen = (size_t)n;
    return 0;
}

/* Compares two names as DNS does: ASCII case-insensitive, a trailing dot ignored. */
static bool dns_name_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 0 && a[la - 1] == '.')
        la--;
    if (lb > 0 && b[lb - 1] == '.')
        lb--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* Locates the answer section's records in rrs[an]; the caller releases their owners. */
static int dns_rrs_read(const unsigned char *abuf, size_t alen, size_t off, struct dns_rr *rrs,
                        size_t an)
{
    for (size_t i = 0; i < an; i++) {
        size_t n;
        int rc = dns_name_at(abuf, alen, off, alen - off, &rrs[i].owner, &n);
        if (rc < 0)
            return rc;
        off += n;
        /* TYPE, CLASS, TTL, RDLENGTH (RFC 1035 4.1.3), then RDATA within the message. */
        if (alen - off < 10)
            return HF_EDNS;
        rrs[i].type = dns_u16(abuf + off);
        rrs[i].cls = dns_u16(abuf + off + 2);
        rrs[i].rdlen = dns_u16(abuf + off + 8);
        off += 10;
        if (alen - off < rrs[i].rdlen)
            return HF_EDNS;
        rrs[i].rdoff = off;
        off += rrs[i].rdlen;
    }
    return 0;
}

/* Keeps the TLSA records owned by target: copies the answer into r->abuf and points
 * r->rrs into it. Returns 0, -ENOENT when there are none, HF_EDNS for an RDATA shorter
 * than usage, selector and matching type, -ENOMEM. */
static int dns_tlsa_collect(struct dns_req *r, const unsigned char *abuf, size_t alen,
                            const struct dns_rr *rrs, size_t an, const char *target)
{
    size_t n = 0;
    for (size_t i = 0; i < an; i++) {
        if (rrs[i].type != DNS_T_TLSA || rrs[i].cls != ns_c_in ||
            !dns_name_eq(rrs[i].owner, target))
            continue;
        if (rrs[i].rdlen < 3)
            return HF_EDNS; /* RFC 6698 2.1: three fixed octets, then the data */
        n++;
    }
    if (n == 0)
        return -ENOENT;
    r->abuf = malloc(alen);
    r->rrs = calloc(n, sizeof(*r->rrs));
    if (!r->abuf || !r->rrs)
        return -ENOMEM;
    memcpy(r->abuf, abuf, alen);
    for (size_t i = 0; i < an; i++) {
        if (rrs[i].type != DNS_T_TLSA || rrs[i].cls != ns_c_in ||
            !dns_name_eq(rrs[i].owner, target))
            continue;
        const unsigned char *rd = r->abuf + rrs[i].rdoff;
        r->rrs[r->nrrs++] = (struct dns_tlsa_rr){
            .usage = rd[0],
            .selector = rd[1],
            .mtype = rd[2],
            .data = rd + 3,
            .len = rrs[i].rdlen - 3,
        };
    }
    return 0;
}

/* Parses a TLSA answer for r->name (abuf borrowed) into r->secure and r->rrs. Returns 0,
 * -ENOENT (NXDOMAIN, NODATA), HF_EDNSTEMP (an error rcode), HF_EDNS (malformed), -ENOMEM. */
static int dns_tlsa_parse(struct dns_req *r, const unsigned char *abuf, size_t alen)
{
    struct dns_rr *rrs = NULL;
    char *cname[DNS_CNAME_MAX] = {NULL};
    size_t an = 0, ncname = 0;
    int rc;

    /* RFC 1035 4.1.1: QR must be set; RCODE is the low nibble of the fourth octet, next to
     * AD (RFC 4035 3.2.3). */
    if (alen < NS_HFIXEDSZ || alen > 65535 || !(abuf[2] & 0x80))
        return HF_EDNS;
    unsigned rcode = abuf[3] & 0x0f;
    r->secure = (abuf[3] & 0x20) != 0;
    if (rcode == ns_r_nxdomain)
        return -ENOENT;
    if (rcode != ns_r_noerror)
        return HF_EDNSTEMP;

    size_t off = NS_HFIXEDSZ, qd = dns_u16(abuf + 4);
    an = dns_u16(abuf + 6);
    for (size_t i = 0; i < qd; i++) {
        char *q;
        size_t n;
        rc = dns_name_at(abuf, alen, off, alen - off, &q, &n);
        if (rc < 0)
            return rc;
        ares_free_string(q);
        off += n;
        if (alen - off < NS_QFIXEDSZ)
            return HF_EDNS;
        off += NS_QFIXEDSZ;
    }
    if (an == 0)
        return -ENOENT;
    /* Every record takes at least 11 octets: a count beyond that is a lie. */
    if (an > (alen - off) / 11)
        return HF_EDNS;
    rrs = calloc(an, sizeof(*rrs));
    if (!rrs)
        return -ENOMEM;
    rc = dns_rrs_read(abuf, alen, off, rrs, an);
    if (rc < 0)
        goto out;

    /* Follow the CNAME chain from the name asked, whatever the order of the records. */
    const char *target = r->name;
    while (ncname < DNS_CNAME_MAX) {
        size_t i = 0;
        while (i < an && !(rrs[i].type == ns_t_cname && rrs[i].cls == ns_c_in &&
                           dns_name_eq(rrs[i].owner, target)))
            i++;
        if (i == an)
            break;
        size_t n;
        rc = dns_name_at(abuf, alen, rrs[i].rdoff, rrs[i].rdlen, &cname[ncname], &n);
        if (rc < 0)
            goto out;
        target = cname[ncname++];
    }
    rc = dns_tlsa_collect(r, abuf, alen, rrs, an, target);

out:
    for (size_t i = 0; i < an; i++)
        ares_free_string(rrs[i].owner);
    for (size_t i = 0; i < ncname; i++)
        ares_free_string(cname[i]);
    free(rrs);
    return rc;
}

static void dns_tlsa_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

/* Builds r's TLSA query and sends it. Returns 0 (one more pending reference), HF_EADDR
 * for a name c-ares cannot encode, -ENOMEM, or uv_random()'s error. */
static int dns_tlsa_send(struct dns_req *r)
{
    unsigned char *q = NULL;
    int qlen = 0;
    unsigned short id;
    /* ares_send() keeps the id it is given (c-ares 1.18): an unpredictable one is our job
     * here, as ares_query() does for itself, against forged answers (RFC 5452 4). */
    int rc = uv_random(NULL, NULL, &id, sizeof(id), 0, NULL);
    if (rc < 0)
        return rc;
    int st = ares_create_query(r->name, ns_c_in, DNS_T_TLSA, id, 1, &q, &qlen,
                               r->edns ? DNS_EDNS_SIZE : 0);
    if (st != ARES_SUCCESS)
        return st == ARES_ENOMEM ? -ENOMEM : HF_EADDR;
    /* RFC 6840 5.7: AD in a query asks for the AD bit in the answer, with or without DO. */
    q[3] |= 0x20;
    if (r->edns) {
        /* The OPT RR ends the query: root name, TYPE 41, CLASS (the UDP size), TTL
         * (extended RCODE, version, flags), RDLENGTH 0. RFC 3225 3: DO is the top bit of
         * the flags, the third octet of the TTL. */
        size_t o = (size_t)qlen - 11;
        if (qlen < NS_HFIXEDSZ + 11 || q[o] != 0 || dns_u16(q + o + 1) != ns_t_opt) {
            ares_free_string(q);
            log_err("dns tlsa: c-ares query without its OPT record");
            return HF_EDNS;
        }
        q[o + 7] |= 0x80;
    }
    r->pending++;
    ares_send(r->d->ch, q, qlen, dns_tlsa_answer, r);
    ares_free_string(q);
    return 0;
}

static void dns_tlsa_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_req *r = arg;
    (void)timeouts;

    /* ares_send() passes every answer with a NOERROR, NXDOMAIN or FORMERR rcode as
     * ARES_SUCCESS: the rcode is read by dns_tlsa_parse. */
    int rc = dns_status(status);
    if (rc == 0 && abuf && alen >= NS_HFIXEDSZ && (abuf[3] & 0x0f) == ns_r_formerr && r->edns &&
        !r->d->freeing) {
        /* RFC 6891 7: a server that does not know EDNS answers FORMERR; ask without it. */
        char safe[4 * DNS_TLSA_NAME];
        log_debug("dns tlsa name=%s formerr: asking without EDNS",
                  log_safe(r->name, safe, sizeof(safe)));
        r->edns = false;
        rc = dns_tlsa_send(r);
        if (rc == 0) {
            dns_req_unref(r); /* this query's reference; the new one holds r */
            return;
        }
    } else if (rc == 0) {
        rc = abuf && alen > 0 ? dns_tlsa_parse(r, abuf, (size_t)alen) : HF_EDNS;
    }
    if (rc == -ECANCELED)
        r->cancelled = true;
    r->status = rc;
    dns_req_unref(r);
}

int dns_tlsa_resolve(struct dns *d, const char *host, unsigned port, dns_tlsa_cb cb, void *arg)
{
    char name[DNS_TLSA_NAME + 16];
    struct sockaddr_storage sa;
    struct dns_req *r;

    if (d->freeing)
        return -ECANCELED;
    if (port == 0 || port > 65535)
        return -EINVAL;
    /* RFC 7672 2.2.1: TLSA records belong to host names; an IP literal has none. */
    if (host[0] == '\0' || host[0] == '.' || host[0] == '[' || dns_literal(host, &sa))
        return HF_EADDR;
    int n = snprintf(name, sizeof(name), "_%u._tcp.%s", port, host);
    if (n < 0 || (size_t)n >= sizeof(name))
        return HF_EADDR;
    int rc = dns_req_new(d, name, &r);
    if (rc < 0)
        return rc;
    r->kind = DNS_KIND_TLSA;
    r->tlsa_cb = cb;
    r->arg = arg;
    r->edns = true;
    r->submitting = true;
    r->pending = 1;
    dns_enter(d);
    rc = dns_tlsa_send(r);
    if (rc < 0) {
        dns_req_free(r);
        dns_leave(d);
        return rc;
    }
    dns_req_unref(r); /* the starting reference */
    r->submitting = false;
    dns_leave(d);
    return 0;
}

/* ---- life cycle ---- */

int dns_new(uv_loop_t *loop, const char *servers, unsigned timeout_ms, unsigned tries,
            struct dns **out)
{
    struct ares_options o;
    int mask = ARES_OPT_FLAGS | ARES_OPT_SOCK_STATE_CB;
    int rc;

    *out = NULL;
    struct dns *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->loop = loop;
    d->ready_tail = &d->ready;

    rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        log_err("dns init err=%s", ares_strerror(rc));
        rc = rc == ARES_ENOMEM ? -ENOMEM : HF_EDNS;
        goto fail_free;
    }
    memset(&o, 0, sizeof(o));
    /* Names are always absolute here: no search list, no HOSTALIASES. */
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    o.sock_state_cb = dns_sock_state_cb;
    o.sock_state_cb_data = d;
    if (timeout_ms) {
        mask |= ARES_OPT_TIMEOUTMS;
        o.timeout = (int)timeout_ms;
    }
    if (tries) {
        mask |= ARES_OPT_TRIES;
        o.tries = (int)tries;
    }
    rc = ares_init_options(&d->ch, &o, mask);
    if (rc != ARES_SUCCESS) {
        log_err("dns init err=%s", ares_strerror(rc));
        rc = rc == ARES_ENOMEM ? -ENOMEM : HF_EDNS;
        goto fail_lib;
    }
    if (servers && servers[0]) {
        rc = ares_set_servers_ports_csv(d->ch, servers);
        if (rc != ARES_SUCCESS) {
            char safe[128];
            log_err("dns servers=%s err=%s", log_safe(servers, safe, sizeof(safe)),
                    ares_strerror(rc));
            rc = rc == ARES_ENOMEM ? -ENOMEM : HF_ECONFIG;
            goto fail_channel;
        }
    }
    uv_timer_init(loop, &d->timer);
    uv_timer_init(loop, &d->kick);
    d->timer.data = d;
    d->kick.data = d;
    d->handles = 2;
    *out = d;
    return 0;

fail_channel:
    ares_destroy(d->ch);
fail_lib:
    ares_library_cleanup();
fail_free:
    free(d);
    return rc;
}

/* Cancels everything and closes the handles; runs at depth 0 only. */
static void dns_teardown(struct dns *d)
{
    d->torn_down = true;
    d->depth++; /* callbacks below must not start a second teardown */
    uv_timer_stop(&d->timer);
    uv_timer_stop(&d->kick);
    /* Every pending query's callback runs now with ARES_ECANCELLED. */
    ares_cancel(d->ch);
    while (d->ready) {
        struct dns_req *r = d->ready;
        d->ready = r->next_ready;
        if (!d->ready)
            d->ready_tail = &d->ready;
        r->submitting = false;
        dns_req_deliver(r); /* status -ECANCELED: d->freeing is set */
    }
    /* Closes c-ares' sockets; dns_sock_state_cb closes their polls. */
    ares_destroy(d->ch);
    d->ch = NULL;
    ares_library_cleanup();
    while (d->polls)
        dns_poll_close(d->polls);
    d->depth--;
    uv_close((uv_handle_t *)&d->timer, dns_timer_closed);
    uv_close((uv_handle_t *)&d->kick, dns_timer_closed);
}

void dns_free(struct dns *d)
{
    if (!d || d->freeing)
        return;
    d->freeing = true;
    if (d->depth == 0)
        dns_teardown(d);
}
