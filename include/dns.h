/* Asynchronous DNS on the libuv loop, through c-ares: a domain's mail exchangers with their
 * A and AAAA addresses (for relayd's flush), the addresses of one host name (for fetchd),
 * and the TLSA records of one SMTP server (DANE, RFC 7672). Only DNS is asked: /etc/hosts
 * is not read, except that IP literals and "localhost" are answered without a query. c-ares
 * status codes never leave lib/dns*.c.
 *
 * Ordering, the null MX and the self-MX rule are mx.h's business: the results here are
 * the records as published, which the caller passes to mx_plan() and mx_attempts().
 *
 * Callback rule (STYLE.md): a call that fails at once returns the error and never calls
 * its callback; a call that returns 0 calls it exactly once, from the loop (never from
 * inside the call itself), or from dns_free() with status -ECANCELED. */
#ifndef HF_DNS_H
#define HF_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "mx.h"

#define DNS_MX_MAX   32 /* exchangers kept per domain: the most preferred ones */
#define DNS_ADDR_MAX 8  /* addresses kept per host and family */

struct dns;

/* The outcome of dns_mx_resolve(). Owned by dns.c, valid only during the callback:
 * copy what you keep (mx_plan() + mx_attempts() produce self-contained attempts). */
struct dns_mx_result {
    const char *domain;    /* as asked */
    int status;            /* 0, HF_EDNS (no such domain, or an unusable name), HF_EDNSTEMP
                              (SERVFAIL, timeout, refused, bad answer), -ECANCELED (dns_free),
                              -ENOMEM */
    bool implicit;         /* no MX records: hosts is the domain itself, preference 0 */
    struct mx_host *hosts; /* status 0: nhosts >= 1, in the published order (a null MX is
                              one host "." with err HF_ENULLMX); each with its addresses,
                              A before AAAA, and its own lookup status in err */
    size_t nhosts;
};

typedef void (*dns_mx_cb)(const struct dns_mx_result *res, void *arg);

/* The outcome of dns_addr_resolve(). Owned by dns.c, valid only during the callback. */
struct dns_addr_result {
    const char *host; /* as asked */
    int status;       /* 0 (naddrs >= 1), HF_EDNS (no such name), -ENOENT (the name has no
                         A or AAAA record), HF_EDNSTEMP, -ECANCELED, -ENOMEM */
    const struct sockaddr_storage *addrs; /* A before AAAA, port 0 */
    size_t naddrs;
};

typedef void (*dns_addr_cb)(const struct dns_addr_result *res, void *arg);

/* One TLSA record (RFC 6698 2.1). The fields are as published: no value is checked here,
 * so the caller treats unknown usages, selectors and matching types, and data of the wrong
 * length for its matching type, as unusable records (RFC 7672 2.2). */
struct dns_tlsa_rr {
    uint8_t usage;             /* certificate usage: 2 DANE-TA, 3 DANE-EE (RFC 7218) */
    uint8_t selector;          /* 0 full certificate, 1 SubjectPublicKeyInfo */
    uint8_t mtype;             /* matching type: 0 full, 1 SHA2-256, 2 SHA2-512 */
    const unsigned char *data; /* certificate association data; len may be 0 */
    size_t len;
};

/* The outcome of dns_tlsa_resolve(). Owned by dns.c, valid only during the callback. */
struct dns_tlsa_result {
    const char *name; /* "_25._tcp.mx.example.test", as asked */
    int status;       /* 0 (nrrs >= 1), -ENOENT (NODATA or NXDOMAIN: no TLSA records),
                         HF_EDNSTEMP (SERVFAIL, which is also how a validating resolver
                         reports a bogus answer; timeout, refused), HF_EDNS (an answer that
                         does not parse, or a TLSA RDATA shorter than its 3 fixed octets),
                         -ECANCELED (dns_free), -ENOMEM */
    bool secure;      /* status 0 or -ENOENT: the answer had the AD bit (RFC 4035 3.2.3).
                         Meaningful only when the configured servers are a trusted,
                         validating resolver reached over a trusted path (RFC 7672 1.3,
                         RFC 6698 A.3.3); false for every other status */
    const struct dns_tlsa_rr *rrs; /* status 0: the TLSA records of the name, or of the
                                      target of a CNAME chain in the answer; in the
                                      published order */
    size_t nrrs;
};

typedef void (*dns_tlsa_cb)(const struct dns_tlsa_result *res, void *arg);

/* Creates a resolver on loop. servers: NULL for the system's (/etc/resolv.conf), or a
 * c-ares server list "127.0.0.1:5353,[::1]:53" (borrowed). timeout_ms: the first try's
 * timeout per server (c-ares doubles it on later rounds); tries: attempts per server;
 * 0 for either keeps c-ares' default (5000 ms, 4). Search domains and HOSTALIASES are off.
 * Returns 0 and *out (owned: release with dns_free), -ENOMEM, HF_ECONFIG for a bad
 * server list, HF_EDNS when c-ares cannot start. */
int dns_new(uv_loop_t *loop, const char *servers, unsigned timeout_ms, unsigned tries,
            struct dns **out);

/* Cancels every pending lookup (each callback runs with -ECANCELED: before this returns,
 * or just after the dns callback that called dns_free returns) and closes the handles.
 * The memory is released from the loop's close callbacks, so the loop must run once more.
 * NULL is allowed. After this call d must not be used. */
void dns_free(struct dns *d);

/* Looks up the mail exchangers of domain (borrowed; copied): the MX query, then A and AAAA
 * for every exchanger in parallel. NXDOMAIN for the domain is HF_EDNS; a domain without
 * MX records (NODATA) gets the implicit MX; a null MX is reported as a host "." without
 * lookups. An address literal "[192.0.2.1]" / "[IPv6:2001:db8::1]" is its own exchanger.
 * Returns 0 (cb will be called exactly once), HF_EADDR for an empty or over-long domain,
 * -ECANCELED after dns_free, -ENOMEM. */
int dns_mx_resolve(struct dns *d, const char *domain, dns_mx_cb cb, void *arg);

/* Looks up the A and AAAA records of host (borrowed; copied), in parallel. IP literals
 * (optionally in brackets) and "localhost" (127.0.0.1, ::1) are answered without DNS.
 * Returns 0 (cb will be called exactly once), HF_EADDR for an empty or over-long name,
 * -ECANCELED after dns_free, -ENOMEM. */
int dns_addr_resolve(struct dns *d, const char *host, dns_addr_cb cb, void *arg);

/* Looks up the TLSA records of the TLS service at host (borrowed; copied), TCP port port:
 * the name "_PORT._tcp.HOST" (RFC 6698 3, RFC 7672 2.2.1), type TLSA (52). The query asks
 * for DNSSEC data (EDNS0 with the DO bit, RFC 3225) and sets the AD bit (RFC 6840 5.7), so
 * a validating resolver reports in the answer's AD bit whether it validated it; when the
 * server rejects EDNS (FORMERR) the query is asked once more without it. A CNAME chain in
 * the answer is followed (at most 8 links); records of other types are ignored.
 * Returns 0 (cb will be called exactly once), HF_EADDR for an empty, over-long or
 * unencodable host or an IP literal, -EINVAL for port 0 or above 65535, -ECANCELED after
 * dns_free, -ENOMEM, a libuv code when uv_random() has no random query id to give, HF_EDNS
 * when c-ares builds a query without EDNS0 (never seen). */
int dns_tlsa_resolve(struct dns *d, const char *host, unsigned port, dns_tlsa_cb cb, void *arg);

#endif
