/* A reload that changes when mail comes due (max_queue_lifetime, delay_warning_time,
 * retry_interval, hold, per domain or globally) moves the due index entries of mail already
 * queued: without it, an entry keyed by the old lifetime would wait for its old time, so a
 * shortened lifetime would take effect only for new mail. */
#ifndef HF_EXPIRE_RELOAD_H
#define HF_EXPIRE_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

struct cfg;
struct relayd;

/* True if old and new differ in a key the due function reads. Pure. */
bool expire_policy_changed(const struct cfg *old, const struct cfg *new);

/* Call after the new snapshot is installed (rd->snap): when the policy changed, reads every
 * queued recipient once (a read transaction on the loop) and queues a RESCHEDULE through the
 * writer for each whose due time moved, in batches. Returns how many were queued (0 when
 * nothing changed), or -errno (logged; the entries then move as they come due). */
long expire_reload(struct relayd *rd, const struct cfg *old);

#endif
