/* The expiry warning to a domain's postmaster: when the oldest held message of a configured
 * domain will expire within expiry_warning_time, one plain summary goes to the domain's
 * postmaster (or expiry_warning_to): how many messages, the oldest, when they expire, how
 * to release them (ETRN, fetchd, relayctl flush). At most once per domain per
 * expiry_warning_time (the time of the last one is kept with the domain's counters in the
 * queue, so a restart does not send it again), never one per message. It has the null
 * sender and NOTIFY=NEVER, so it can cause no report of its own. The decision is
 * retry_expiry_warning_due (retry.h); expire.c's timer calls pmwarn_tick. */
#ifndef HF_PMWARN_H
#define HF_PMWARN_H

#include <stddef.h>
#include <stdint.h>

struct relayd;

/* What the warning says (strings borrowed). */
struct pmwarn_facts {
    const char *host, *domain, *to, *message_id;
    uint64_t messages, rcpts, bytes;
    int64_t oldest, expires, lifetime, period, now;
};

/* Writes the complete message (headers and body, CRLF lines) to out. Pure. Returns its
 * length or -ENOSPC. */
int pmwarn_text(const struct pmwarn_facts *f, char *out, size_t outsz);

/* Sends the warnings that are due now (loop thread). */
void pmwarn_tick(struct relayd *rd);

#endif
