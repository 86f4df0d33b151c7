/* relayd's control socket (relayctl's actions) and the Prometheus metrics endpoint.
 *
 * Control protocol, one request line per connection, answered with lines:
 *   FLUSH <domain|@domain|--all> [WAIT]   start queue runs ("event" lines follow with WAIT)
 *   HOLD <domain|ID>  /  RELEASE <domain|ID>
 *   DELETE <ID>...  /  DELETE-DOMAIN <domain>
 *   REQUEUE <ID>...
 *   BOUNCE <ID>... [-- REASON]  /  BOUNCE-DOMAIN <domain> [-- REASON]
 *   TEST-CLOCK-ADVANCE <seconds>   (test clock only, see clock.h)
 *   STATS
 * Every answer line is "ok TEXT", "err TEXT", "event TEXT" or "stat NAME VALUE", and the
 * answer ends with the line "end". Who may connect is decided by the socket file's mode
 * (0600: relayd's user) — the kernel checks it. */
#ifndef HF_CTL_H
#define HF_CTL_H

#include <stdbool.h>
#include <stdint.h>

#include "relayd.h"

/* Opens the control socket (cfg->control_socket; a stale socket file left by a dead relayd
 * is replaced, a live one is refused) and, when cfg->metrics_listen is set, the metrics
 * endpoint. Returns 0 or a negative code (logged). */
int ctl_init(struct relayd *rd);
/* Closes the listeners and the open control connections; removes the socket file. */
void ctl_shutdown(struct relayd *rd);
void ctl_free(struct relayd *rd);

/* How request handlers outside ctl.c (ctl_life.c) answer; ctl.c passes its own. line sends
 * one answer line (text ends in "\n") to control client client, if it is still connected.
 * wait(+1) keeps the answer open for a result that comes later; wait(-1) says it came; both
 * -1 and 0 then end the answer when nothing else is awaited. */
struct ctl_reply {
    void (*line)(struct relayd *rd, uint64_t client, const char *text);
    void (*wait)(struct relayd *rd, uint64_t client, int delta);
};

/* ctl_life.c: handles verb (with its arguments rest) when it is one of its requests and
 * returns true; false leaves it to ctl.c. */
bool ctl_life_request(struct relayd *rd, const struct ctl_reply *rp, uint64_t client,
                      const char *verb, char *rest);
/* ctl_life.c: RUNNING's "probe DOMAIN up|down|unknown SINCE" lines, and the metrics of the
 * lifecycle (returns owned text, free(); NULL when there is none). */
void ctl_life_running(struct relayd *rd, const struct ctl_reply *rp, uint64_t client);
char *ctl_life_metrics(struct relayd *rd);

#endif
