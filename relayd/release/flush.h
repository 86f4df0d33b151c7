/* Queue runs: deliver a domain's held mail to the hosts DNS names for it (or its static
 * next hop), never to whoever asked. Started by ETRN (this module answers it), relayctl
 * flush and, later, the retry timer.
 *
 * One run per recipient domain at a time. A run reads the domain's recipients from the
 * queue, resolves MX -> A/AAAA with c-ares, orders the attempts (mx.h: preference, ties
 * shuffled, the self-MX rule), and delivers over up to flush_connections parallel SMTP
 * connections (smtpc.h), several messages per connection. Each message's per-recipient
 * outcome is committed through the writer thread and logged one line per recipient. */
#ifndef HF_FLUSH_H
#define HF_FLUSH_H

#include <stdbool.h>
#include <stdint.h>

#include "relayd.h"

/* Totals of one finished run. */
struct flush_summary {
    char domain[256];
    uint64_t messages;
    uint64_t sent, deferred, failed; /* recipients */
    int status;                      /* 0, or why nothing could be tried (HF_EDNSTEMP...) */
    char error[512];                 /* last error text, "" when none */
};

/* Who follows a run (relayctl flush --wait): called on the loop with the token given, so
 * the watcher can look up a client that may have gone away meanwhile. arg must outlive the
 * run (the control module's state does). */
struct flush_watch {
    void (*rcpt)(void *arg, uint64_t token, const char *qid, const char *addr, const char *relay,
                 const char *tls, const char *status, const char *text);
    void (*done)(void *arg, uint64_t token, const struct flush_summary *s);
    void *arg;
    uint64_t token;
};

/* Sets up DNS and the ETRN handler (rd->etrn). Returns 0 or a negative code (logged). */
int flush_init(struct relayd *rd);
/* Cancels DNS, lets running deliveries finish their current step, frees at loop end. */
void flush_shutdown(struct relayd *rd);

/* Frees the module after the loop has ended. */
void flush_free_all(struct relayd *rd);

/* Starts a run for the recipient domain (exact, lower-case). reason is logged ("etrn",
 * "relayctl"). watch (copied; may be NULL) hears of each recipient and, once, of the end.
 * Returns 0, -EBUSY when a run for that domain is already going, -ENOENT when nothing is
 * waiting for it, -EPERM when the operator holds the domain, -ESHUTDOWN, -ENOMEM; on an
 * error the watcher hears nothing. */
int flush_start(struct relayd *rd, const char *domain, const char *reason,
                const struct flush_watch *watch);

/* Starts the retry timer's run for domain: only recipients whose next attempt has come.
 * Returns as flush_start, and -EPERM for a hold = yes domain (never retried by the timer). */
int flush_start_due(struct relayd *rd, const char *domain);

/* The exchangers of domain that mail would go to, from an MX answer: more preferred than
 * this relay when it is one of them (RFC 5321 5.1), in delivery order, port smtp_port; at
 * most cap in out, the count in *n. Returns 0, -ELOOP (this relay is the best MX),
 * HF_ENULLMX, HF_EDNS/HF_EDNSTEMP (no address), res->status when the lookup failed. */
struct dns_mx_result;
struct mx_attempt;
int flush_primaries(struct relayd *rd, const char *domain, const struct dns_mx_result *res,
                    struct mx_attempt *out, size_t cap, size_t *n);

/* The resolver runs use (for ETRN's check of the client against the domain's MX hosts), or
 * NULL while shutting down. Borrowed. */
struct dns *flush_dns(struct relayd *rd);

/* True if a run for domain is in progress. */
bool flush_running(struct relayd *rd, const char *domain);

#endif
