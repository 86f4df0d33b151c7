/* Mail exchanger selection (RFC 5321 5.1, RFC 7505): turns a domain's MX records and the
 * addresses of its exchangers into the ordered list of (host, address) delivery attempts.
 * Pure: no DNS, no clock; randomness comes from a function the caller supplies, so tests
 * are deterministic. dns.c fills the records, relayd's flush walks the attempts.
 *
 * The self-MX rule (RFC 5321 5.1, DESIGN.md): when the relay is itself one of the
 * exchangers, by name or by address, it delivers only to hosts strictly more preferred
 * than the most preferred of its own entries. When that leaves nothing, the relay is the
 * best MX: the functions return -ELOOP and the caller keeps the mail (defers) instead of
 * sending it to itself. */
#ifndef HF_MX_H
#define HF_MX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define MX_NAME_MAX 255 /* RFC 1035 2.3.4, without the trailing dot */

/* One mail exchanger and, once resolved, its addresses. */
struct mx_host {
    char name[MX_NAME_MAX + 1]; /* lower-cased, no trailing dot; "." for a null MX */
    unsigned pref;              /* MX preference: lower is tried first */
    int err;                    /* address lookup: 0, HF_EDNS (no such name), -ENOENT (no A
                                   or AAAA record), HF_EDNSTEMP, HF_ENULLMX for "." */
    const struct sockaddr_storage *addrs; /* borrowed; port 0 (the caller picks it) */
    size_t naddrs;
};

/* The relay's own identities. Names are compared case-insensitively, a trailing dot
 * ignored; addresses by family and address (port and IPv6 scope ignored, an IPv4-mapped
 * IPv6 address equals its IPv4 form). Give concrete addresses: the listening addresses,
 * or the interface addresses when listening on a wildcard; 0.0.0.0 and :: match nothing.
 * All borrowed. Either list may be empty (NULL, 0). */
struct mx_self {
    const char *const *names;
    size_t nnames;
    const struct sockaddr_storage *addrs;
    size_t naddrs;
};

/* One delivery attempt: self-contained, so the caller may keep it after the lookup's
 * result is gone. */
struct mx_attempt {
    char host[MX_NAME_MAX + 1];
    unsigned pref;
    struct sockaddr_storage addr; /* port as in the lookup result (0) */
};

/* Returns a uniformly distributed 32-bit value. */
typedef uint32_t (*mx_rand_fn)(void *arg);

/* Sets h to name (a trailing dot dropped, lower-cased; "" and "." both become ".") and
 * pref, with no addresses and err 0. Returns 0 or HF_EADDR when name is longer than
 * MX_NAME_MAX. */
int mx_host_set(struct mx_host *h, const char *name, unsigned pref);

/* True if h is a null MX target ("."). */
bool mx_host_is_null(const struct mx_host *h);

/* True if name is one of self's names. self may be NULL (then false). */
bool mx_self_has_name(const struct mx_self *self, const char *name);

/* True if sa is one of self's addresses. self may be NULL (then false). */
bool mx_self_has_addr(const struct mx_self *self, const struct sockaddr_storage *sa);

/* Merges hosts[0..n) in place: a host named more than once is kept once, at its first
 * place, with the best (lowest) of its preferences. Returns how many are left. */
size_t mx_hosts_merge(struct mx_host *hosts, size_t n);

/* Keeps the max most preferred of hosts[0..n) (a resolver's bound on what it looks up):
 * sorts them by preference, stably (equal preferences keep their order), when n > max.
 * Returns the count kept, min(n, max). */
size_t mx_hosts_keep_best(struct mx_host *hosts, size_t n, size_t max);

/* Builds the delivery plan of domain from its n MX records in[] (any order):
 *  - n == 0: the implicit MX (RFC 5321 5.1): domain itself with preference 0;
 *  - a single record whose host is "." is a null MX (RFC 7505): HF_ENULLMX. Among other
 *    records a "." host is dropped (it names no host);
 *  - sorted by ascending preference; hosts of equal preference are shuffled with rnd
 *    (rnd NULL keeps their input order);
 *  - the self-MX rule: a host that is ours by name, or by any address already resolved
 *    in it, is dropped with every host of equal or greater preference.
 * out must hold at least n + 1 entries and must not overlap in; *nout receives the
 * count. out[i].addrs borrows in[]'s addresses (valid as long as in's owner keeps them).
 * Returns 0 (then *nout >= 1), HF_ENULLMX, -ELOOP when we are the best MX (the self rule
 * left nothing: defer, never deliver to ourselves), HF_EADDR when domain is too long. */
int mx_plan(const char *domain, const struct mx_host *in, size_t n, const struct mx_self *self,
            mx_rand_fn rnd, void *rnd_arg, struct mx_host *out, size_t *nout);

/* Flattens an ordered plan (as mx_plan returns it) into attempts: every address of a host,
 * in the host's order, before the next host. Applies the self-MX rule again with the
 * resolved addresses: a host with one of self's addresses is dropped with every host of
 * equal or greater preference. At most cap attempts are written to out (later ones are
 * dropped: a per-run limit); *nout receives the count.
 * Returns 0 (then *nout >= 1), -ELOOP when the self rule left no host, HF_ENULLMX for a
 * plan that is a null MX, or when no remaining host has an address: HF_EDNSTEMP if any of
 * their lookups failed temporarily, else HF_EDNS (every name is missing or has no address;
 * whether that bounces or defers is the caller's policy). -EINVAL when cap is 0. */
int mx_attempts(const struct mx_host *plan, size_t n, const struct mx_self *self,
                struct mx_attempt *out, size_t cap, size_t *nout);

#endif
