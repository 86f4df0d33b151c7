/* "Accept only while the primary is down" (optional per domain: accept_only_if_primary_down
 * = yes): every probe_interval relayd looks the domain's MX up and tries the exchangers more
 * preferred than itself (connect, the 220 greeting, EHLO answered 250, QUIT; each step
 * bounded by probe_timeout). While one answers, RCPT for that domain gets
 * "451 4.7.1 primary MX is up, deliver there", so senders go to the primary and spam aimed
 * at backup MX hosts finds nothing to take; once none answers, mail is accepted again.
 * Until the first probe has an answer, and when DNS fails, the last state stands (at start:
 * unknown, accepting). Every change of state is logged; relayctl queue and the metrics show
 * it. Loop thread only. */
#ifndef HF_PROBE_H
#define HF_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct relayd;

enum probe_state { PROBE_UNKNOWN = 0, PROBE_UP, PROBE_DOWN };

/* Starts probing the domains that ask for it (none: nothing is started). Returns 0 or
 * -ENOMEM. */
int probe_init(struct relayd *rd);
/* Stops the timer and drops probes in progress. */
void probe_shutdown(struct relayd *rd);
/* Frees the state after the loop has ended. */
void probe_free(struct relayd *rd);

/* The RCPT hook (smtpd_params.primary_up; arg: the struct relayd): true when domain's
 * section asks for it and its primary answered the last probe. */
bool probe_primary_up(void *arg, const char *domain);

/* The probed domains, for relayctl queue and the metrics: i from 0 to probe_count() - 1.
 * *domain is borrowed. Returns false past the end. */
size_t probe_count(struct relayd *rd);
bool probe_get(struct relayd *rd, size_t i, const char **domain, enum probe_state *st,
               int64_t *since);
const char *probe_state_name(enum probe_state s);

#endif
