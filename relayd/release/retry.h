/* The life of a queued recipient in time, and which reports it is owed. Pure: the clock,
 * the randomness and the recipient's facts come in as arguments (tests/unit/test_retry.c
 * drives every decision with a clock of its own).
 *
 *  - retry_next / retry_next_jittered: when to try a deferred recipient again.
 *  - retry_decide: whether a queued recipient has expired (max_queue_lifetime) or is owed
 *    its one delay warning (delay_warning_time), and when its next such event falls.
 *  - retry_dsn_wanted: whether the sender asked for (or did not refuse) a report, by
 *    NOTIFY (RFC 3461 4.1) and the null reverse-path (RFC 5321 4.5.5: never to <>). */
#ifndef HF_RETRY_H
#define HF_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#define RETRY_FIRST  300   /* seconds after the first failure */
#define RETRY_MAX    14400 /* never more than 4 hours apart */
#define RETRY_JITTER 10    /* percent: each delay is moved by up to this much either way */

/* Returns the unix time of the next attempt for a recipient that has failed attempts times
 * (attempts >= 1, counting the one that just failed) at time now: RETRY_FIRST doubled per
 * further failure, capped at RETRY_MAX (5m, 10m, 20m, 40m, 80m, 160m, 4h, 4h, ...). */
int64_t retry_next(uint32_t attempts, int64_t now);

/* As retry_next, with the delay moved by up to RETRY_JITTER percent either way, chosen by
 * rnd (any 32-bit random value): recipients deferred together (a primary MX that went down
 * with a queue behind it) do not all come due in the same second again. The result is
 * never earlier than now + 1. */
int64_t retry_next_jittered(uint32_t attempts, int64_t now, uint32_t rnd);

/* Lifetime policy of one recipient's domain (seconds; warn_after 0: no delay warnings). */
struct retry_policy {
    int64_t lifetime;
    int64_t warn_after;
};

enum retry_verdict {
    RETRY_KEEP = 0, /* nothing to do now */
    RETRY_WARN,     /* the delay warning is owed now (once: the caller records it) */
    RETRY_EXPIRE,   /* the recipient has been queued for its lifetime: bounce it */
};

/* Decides for a recipient that arrived at arrival (unix seconds) and has (warned) or has
 * not yet had its delay warning. Expiry wins over the warning: at arrival + lifetime the
 * recipient expires (RFC 5321 4.5.4.1: give up after 4-5 days); from arrival + warn_after
 * (when below the lifetime) it is owed one warning. *next_event (may be NULL) gets the
 * time of its next decision (the warning or the expiry), for the due index. */
enum retry_verdict retry_decide(int64_t arrival, bool warned, const struct retry_policy *p,
                                int64_t now, int64_t *next_event);

/* When the next lifecycle decision about a recipient falls (for the due index): its delay
 * warning while that is owed (warn_after set, below the lifetime, not yet warned), else its
 * expiry. */
int64_t retry_next_event(int64_t arrival, bool warned, const struct retry_policy *p);

/* Whether a domain's postmaster is owed the expiry warning now: its oldest held message
 * (arrival oldest; 0: nothing held) expires (oldest + p->lifetime) within period seconds
 * but has not expired yet (then it is being returned to its senders), and the last
 * warning (warned_at; 0: never) is at least period old. period 0: never. A warned_at in
 * the future (the clock stepped back) counts as long ago. */
bool retry_expiry_warning_due(int64_t oldest, const struct retry_policy *p, int64_t period,
                              int64_t warned_at, int64_t now);

/* Kinds of reports (RFC 3464 2.3.3 actions). */
enum retry_dsn {
    RETRY_DSN_FAILURE = 0, /* failed: a 5xx, a null MX, expiry, relayctl bounce */
    RETRY_DSN_DELAY,       /* delayed: still trying */
    RETRY_DSN_SUCCESS,     /* relayed to a next hop that does not offer DSN */
};

/* Whether a report of kind is owed for a recipient with the NOTIFY bits notify
 * (SMTP_NOTIFY_*; 0: NOTIFY absent) of a message whose sender is null (sender_null).
 * Absent NOTIFY means FAILURE and DELAY (RFC 3461 4.1 leaves it to the MTA; this is what
 * Postfix and sendmail do); success is reported only on request; NEVER means none; the
 * null sender never gets one (the caller decides about a double bounce). */
bool retry_dsn_wanted(unsigned notify, bool sender_null, enum retry_dsn kind);

#endif
