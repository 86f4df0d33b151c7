/* Time-driven fates of queued recipients: expiry after max_queue_lifetime (a bounce), the
 * one delay warning after delay_warning_time (a delay DSN), recipients an older version
 * left "failed" (bounced now), and the retry timer's queue runs. A timer (every
 * retry_interval, or every minute when that is 0) reads the queue's due index up to now
 * only (O(due), not O(queue)), commits each message's changes with its DSNs through
 * bounce.h and starts a retry run for each domain with a recipient whose next attempt has
 * come. Domains with a queue run in progress wait for the next tick, and a run does not
 * load a message whose lifecycle change is being committed (expire_is_busy), so a recipient
 * is never both delivered and bounced. Also relayctl bounce (expire_bounce). */
#ifndef HF_EXPIRE_H
#define HF_EXPIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct relayd;

/* The queue's due function (queue_set_due_fn; arg: the struct relayd): when a recipient is
 * next to be looked at: now for a recipient left failed, else its delay warning or expiry,
 * or its next attempt when the retry timer delivers its domain (retry_interval > 0, not
 * hold = yes), whichever comes first. Runs on the writer thread; arg is expire's state,
 * which holds the configuration snapshot it reads (followed after a reload). */
struct queue_rcpt;
int64_t expire_due(const struct queue_rcpt *r, int64_t arrival, void *arg);

/* Sets the queue's due function and starts the timer: call it before the writer thread
 * starts (queue_wr_new), so the function is in place before the first commit. Returns 0
 * or -ENOMEM. */
int expire_init(struct relayd *rd);
/* Stops the timer (its handle is closed on the loop). */
void expire_shutdown(struct relayd *rd);
/* Frees the state after the loop has ended. */
void expire_free(struct relayd *rd);

/* Makes the due function read the configuration now installed (rd->snap). Loop thread;
 * the timer does it on each tick, a reload does it at once (expire_reload.h). */
void expire_follow(struct relayd *rd);

/* Runs one sweep now (the timer's work; the test clock's advance calls it too). */
void expire_tick(struct relayd *rd);

/* True while a lifecycle commit for message id is outstanding. */
bool expire_is_busy(struct relayd *rd, uint64_t id);

/* relayctl bounce: returns every queued recipient of the messages ids[0..n) (or, with
 * domain set, every recipient in that domain) to its sender now, with reason (may be NULL)
 * in the report. done(arg, token, status, count) runs once on the loop when the change is
 * committed (count: recipients bounced). Returns 0, -ENOENT when nothing matched (done not
 * called), -EBUSY when a queue run for the domain is going, -ENOMEM, -ESHUTDOWN. */
typedef void (*expire_done_cb)(void *arg, uint64_t token, int status, size_t count);
int expire_bounce(struct relayd *rd, const uint64_t *ids, size_t n, const char *domain,
                  const char *reason, expire_done_cb done, void *arg, uint64_t token);

#endif
