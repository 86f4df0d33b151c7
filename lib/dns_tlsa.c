/* TLSA lookups for DANE (RFC 7672) on the resolver of dns.c. c-ares 1.18 has no TLSA
 * parser and cannot set the DO bit through its options, so the query is built with
 * ares_create_query(), given the AD and DO bits by hand and sent with ares_send(); the
 * answer is parsed by dnsmsg.c (pure) and its records kept for the callback. */
#include "dns.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>
#include <uv.h>

#include "dns_int.h"
#include "dnsmsg.h"
#include "hf_err.h"
#include "log.h"

/* ---- TLSA (DANE) ---- */

/* Parses r's answer (dnsmsg.c) and keeps its records for the callback. Returns
 * dnsmsg_tlsa_parse's result. */
static int dns_tlsa_keep(struct dns_req *r, const unsigned char *abuf, size_t alen)
{
    struct dnsmsg_tlsa t;
    int rc = dnsmsg_tlsa_parse(abuf, alen, r->name, &t);
    r->secure = t.secure;
    if (rc < 0)
        return rc;
    r->rrs = calloc(t.nrrs, sizeof(*r->rrs));
    if (!r->rrs) {
        dnsmsg_tlsa_free(&t);
        return -ENOMEM;
    }
    for (size_t i = 0; i < t.nrrs; i++)
        r->rrs[i] = (struct dns_tlsa_rr){
            .usage = t.rrs[i].usage,
            .selector = t.rrs[i].selector,
            .mtype = t.rrs[i].mtype,
            .data = t.rrs[i].data,
            .len = t.rrs[i].len,
        };
    r->nrrs = t.nrrs;
    r->abuf = t.buf; /* the records point into it */
    free(t.rrs);
    return 0;
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
    int st = ares_create_query(r->name, ns_c_in, DNSMSG_T_TLSA, id, 1, &q, &qlen,
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
        if (qlen < NS_HFIXEDSZ + 11 || q[o] != 0 || dnsmsg_u16(q + o + 1) != ns_t_opt) {
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
     * ARES_SUCCESS: the rcode is read by dnsmsg_tlsa_parse. */
    int rc = dns__status(status);
    if (rc == 0 && abuf && alen >= NS_HFIXEDSZ && (abuf[3] & 0x0f) == ns_r_formerr && r->edns &&
        !r->d->freeing) {
        /* RFC 6891 7: a server that does not know EDNS answers FORMERR; ask without it. */
        char safe[4 * DNS_TLSA_NAME];
        log_debug("dns tlsa name=%s formerr: asking without EDNS",
                  log_safe(r->name, safe, sizeof(safe)));
        r->edns = false;
        rc = dns_tlsa_send(r);
        if (rc == 0) {
            dns__req_unref(r); /* this query's reference; the new one holds r */
            return;
        }
    } else if (rc == 0) {
        rc = abuf && alen > 0 ? dns_tlsa_keep(r, abuf, (size_t)alen) : HF_EDNS;
    }
    if (rc == -ECANCELED)
        r->cancelled = true;
    r->status = rc;
    dns__req_unref(r);
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
    if (host[0] == '\0' || host[0] == '.' || host[0] == '[' || dns__literal(host, &sa))
        return HF_EADDR;
    int n = snprintf(name, sizeof(name), "_%u._tcp.%s", port, host);
    if (n < 0 || (size_t)n >= sizeof(name))
        return HF_EADDR;
    int rc = dns__req_start(d, name, DNS_KIND_TLSA, arg, &r);
    if (rc < 0)
        return rc;
    r->tlsa_cb = cb;
    r->edns = true;
    rc = dns_tlsa_send(r);
    if (rc < 0) {
        dns__req_free(r);
        dns__leave(d);
        return rc;
    }
    dns__req_unref(r); /* the starting reference */
    r->submitting = false;
    dns__leave(d);
    return 0;
}
