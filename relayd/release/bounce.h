/* Reports to senders: the glue between a message's per-recipient outcomes and the DSNs
 * they are owed (dsn.h builds them). Every path that decides a recipient's fate (a queue
 * run's results over DNS or a static next hop, an ATRN delivery, expiry, relayctl bounce)
 * collects its recipients in one bounce_set per message and submits it with the queue
 * updates; the DSNs (at most one per kind: failure, delay, success) are built on the writer
 * thread and stored in the SAME transaction that removes or marks the recipients, so after a
 * crash either both happened or neither (nothing lost, nothing doubled).
 *
 * Who gets a report (retry.h: retry_dsn_wanted): the sender, by NOTIFY; never the null
 * sender. A failure of a null-sender message (a DSN that could not be delivered: a double
 * bounce) goes to double_bounce_to when it is configured and the failed recipient is not
 * that address itself, else it is dropped and logged. Recipients refused at RCPT time were
 * never queued, so they never bounce (no backscatter beyond what RFC 5321 6.1 requires).
 *
 * A DSN is an ordinary queued message with the null reverse-path and one recipient (the
 * sender), delivered through DNS like any other mail and retried on the normal schedule.
 * This is the only way a recipient outside the relay domains enters the queue besides
 * authenticated submission: inbound SMTP still refuses every other domain (no open relay). */
#ifndef HF_BOUNCE_H
#define HF_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"
#include "queue_wr.h"
#include "retry.h"

struct relayd;
struct bounce_set;

/* What to say about one recipient (strings copied). */
struct bounce_fact {
    enum retry_dsn kind;
    const char *status;     /* "x.y.z" */
    const char *remote_mta; /* host that answered, or NULL */
    const char *diag;       /* reply text or local reason, or NULL */
    bool diag_smtp;         /* diag is an SMTP reply */
    int64_t last_attempt;   /* 0: never tried */
    int64_t retry_until;    /* delay reports */
    const char *tls;        /* "none", "TLSv1.3,...", or NULL (no connection) */
};

/* A new, empty set for the message with envelope env (copied). Returns NULL without
 * memory. */
struct bounce_set *bounce_set_new(const struct queue_env *env);
void bounce_set_free(struct bounce_set *s);

/* Adds recipient r (copied) with fact f. Applies NOTIFY and the null-sender rule: returns
 * true when a report will be sent for it (to the sender, or to double_bounce_to), false
 * when none is owed (NOTIFY=NEVER, a kind not asked for, a double bounce dropped: logged
 * here). -ENOMEM is logged and reported as false: the recipient's fate is still recorded,
 * only its report is lost. */
bool bounce_set_add(struct relayd *rd, struct bounce_set *s, const struct queue_rcpt *r,
                    const struct bounce_fact *f);

/* True when s holds at least one recipient owed a report. */
bool bounce_set_owes(const struct bounce_set *s);

/* Commits ups (taken, n entries) together with the DSNs s owes (s taken; NULL for none):
 * one transaction through the writer thread. cb (may be NULL) runs on the loop afterwards,
 * like queue_wr_update's. Once committed, each DSN is logged ("QID: sender non-delivery
 * notification: DSNID") and a queue run for its recipient's domain is started, so a bounce
 * leaves in the same pass. Returns 0, or a negative code from the writer (-ESHUTDOWN,
 * -ENOMEM): then nothing was queued and cb is not called. */
int bounce_commit(struct relayd *rd, struct bounce_set *s, struct queue_update *ups, size_t n,
                  queue_wr_update_cb cb, uint64_t token, void *arg);

#endif
