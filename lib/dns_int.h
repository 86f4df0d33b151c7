/* Inside the resolver only (lib/dns*.c, hf_net): its structs and what dns.c (the c-ares
 * glue on the loop, requests, MX and address lookups) lends dns_tlsa.c (TLSA lookups).
 * Calls go one way: dns_tlsa.c -> dns.c. */
#ifndef HF_DNS_INT_H
#define HF_DNS_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <ares.h>
#include <uv.h>

#include "dns.h"
#include "mx.h"

struct dns_poll {
    uv_poll_t h;
    struct dns *d;
    ares_socket_t fd;
    bool closing;
    struct dns_poll *next;
};

#define DNS_EDNS_SIZE 1232 /* UDP payload size offered in EDNS0 (DNS flag day 2020) */
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

/* The border: c-ares status -> project code (STYLE.md). */
int dns__status(int st);
/* Every entry into c-ares is bracketed by these (see dns.c: teardown waits for the
 * outermost leave). */
void dns__enter(struct dns *d);
void dns__leave(struct dns *d);
/* Starts submitting a request of kind for name (copied): 0 and *out, which holds the
 * starting reference (dns__req_unref it) inside dns__enter (dns__leave after); the caller
 * sets the callback. HF_EADDR for an empty or over-long name, -ECANCELED after dns_free,
 * -ENOMEM; then nothing was entered. */
int dns__req_start(struct dns *d, const char *name, enum dns_kind kind, void *arg,
                   struct dns_req **out);
void dns__req_free(struct dns_req *r);
/* Drops one pending reference; the last delivers the request (from the loop when it is
 * still being submitted). */
void dns__req_unref(struct dns_req *r);
/* Parses an IP literal ("192.0.2.1", "[::1]", "[IPv6:2001:db8::1]"). */
bool dns__literal(const char *s, struct sockaddr_storage *out);

#endif
