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
 * ares_send() (dns_tlsa.c); the raw answer is parsed by dnsmsg.c (pure, in hf_core), with
 * every read bounds checked. Whether the records are usable for DANE, and what an insecure answer
 * means for delivery, is the caller's business.
 *
 * c-ares statuses are translated here and nowhere else (dns__status). Choosing among the
 * exchangers (and merging and bounding the MX records) is mx.c's work. */
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

#include "dns_int.h"
#include "hf_err.h"
#include "log.h"

static void dns_teardown(struct dns *d);

/* The border: c-ares status -> project code (STYLE.md). */
int dns__status(int st)
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

void dns__enter(struct dns *d)
{
    d->depth++;
}

/* Leaves an entry; the outermost one runs a teardown that dns_free() deferred, or
 * rearms the timer. */
void dns__leave(struct dns *d)
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
    dns__enter(d);
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns__leave(d);
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
    dns__enter(d);
    ares_process_fd(d->ch, rfd, wfd);
    dns__leave(d);
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

void dns__req_free(struct dns_req *r)
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
    dns__req_free(r);
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

void dns__req_unref(struct dns_req *r)
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
    dns__enter(d);
    while (r) {
        struct dns_req *next = r->next_ready;
        r->submitting = false;
        dns_req_deliver(r);
        r = next;
    }
    dns__leave(d);
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
    hq->st[i] = dns__status(st);
    if (hq->st[i] == -ECANCELED)
        r->cancelled = true;
    dns__req_unref(r);
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
 * DNS_MX_MAX hosts (the most preferred ones), otherwise in the published order (mx.c). */
static int dns_mx_collect(struct dns_req *r, const struct ares_mx_reply *mx)
{
    size_t n = 0;
    for (const struct ares_mx_reply *m = mx; m; m = m->next)
        n++;
    struct mx_host *all = calloc(n, sizeof(*all));
    if (!all)
        return -ENOMEM;
    size_t k = 0;
    for (const struct ares_mx_reply *m = mx; m; m = m->next)
        if (mx_host_set(&all[k], m->host ? m->host : "", m->priority) == 0)
            k++; /* c-ares never returns a name too long; skip rather than trust it */
    k = mx_hosts_merge(all, k);
    if (k > DNS_MX_MAX) {
        char safe[4 * (MX_NAME_MAX + 2)];
        log_warn("dns mx domain=%s records=%zu kept=%d", log_safe(r->name, safe, sizeof(safe)), k,
                 DNS_MX_MAX);
        k = mx_hosts_keep_best(all, k, DNS_MX_MAX);
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

    int rc = dns__status(status);
    if (rc == 0) {
        int prc = ares_parse_mx_reply(abuf, alen, &mx);
        /* An answer without MX records (a CNAME alone) is NODATA; one that does not parse
         * is the server's fault: temporary. */
        rc = prc == ARES_SUCCESS ? 0 : prc == ARES_ENODATA ? -ENOENT : dns__status(prc);
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
    dns__req_unref(r); /* the MX query's own reference */
}

/* Parses an IP literal: "192.0.2.1", "::1", "[192.0.2.1]", "[::1]" and, with the SMTP
 * domain-literal tag, "[IPv6:2001:db8::1]" (RFC 5321 4.1.3). */
bool dns__literal(const char *s, struct sockaddr_storage *out)
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
    if (dns__literal(r->name, &sa)) {
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

int dns__req_start(struct dns *d, const char *name, enum dns_kind kind, void *arg,
                   struct dns_req **out)
{
    int rc = dns_req_new(d, name, out);
    if (rc < 0)
        return rc;
    (*out)->kind = kind;
    (*out)->arg = arg;
    (*out)->submitting = true;
    (*out)->pending = 1;
    dns__enter(d);
    return 0;
}

int dns_mx_resolve(struct dns *d, const char *domain, dns_mx_cb cb, void *arg)
{
    struct dns_req *r;
    int rc = dns__req_start(d, domain, DNS_KIND_MX, arg, &r);
    if (rc < 0)
        return rc;
    r->mx_cb = cb;
    if (domain[0] == '[') {
        /* An address literal is its own exchanger (RFC 5321 5.1). */
        r->implicit = true;
        rc = dns_req_hosts(r, 1);
        if (rc == 0)
            rc = mx_host_set(&r->hosts[0], domain, 0);
        if (rc == 0 && !dns_answer_locally(r))
            rc = HF_EADDR;
        if (rc < 0) {
            dns__req_free(r);
            dns__leave(d);
            return rc;
        }
        dns__req_unref(r);
    } else {
        ares_query(d->ch, domain, ns_c_in, ns_t_mx, dns_mx_answer, r);
    }
    r->submitting = false; /* r may be on the ready list; the kick clears it there too */
    dns__leave(d);
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
        dns__req_free(r);
        return rc;
    }
    r->kind = DNS_KIND_ADDR;
    r->addr_cb = cb;
    r->arg = arg;
    r->submitting = true;
    r->pending = 1;
    dns__enter(d);
    if (!dns_answer_locally(r))
        dns_host_start(r, 0);
    dns__req_unref(r); /* the starting reference */
    r->submitting = false;
    dns__leave(d);
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
