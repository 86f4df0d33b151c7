/* relayd's control socket (relayctl's actions) and the Prometheus metrics endpoint.
 *
 * Control protocol, one request line per connection, answered with lines:
 *   FLUSH <domain|@domain|--all> [WAIT]   start queue runs ("event" lines follow with WAIT)
 *   HOLD <domain|ID>  /  RELEASE <domain|ID>
 *   DELETE <ID>...  /  DELETE-DOMAIN <domain>
 *   REQUEUE <ID>...
 *   STATS
 * Every answer line is "ok TEXT", "err TEXT", "event TEXT" or "stat NAME VALUE", and the
 * answer ends with the line "end". Who may connect is decided by the socket file's mode
 * (0600: relayd's user) — the kernel checks it. */
#ifndef HF_CTL_H
#define HF_CTL_H

#include "relayd.h"

/* Opens the control socket (cfg->control_socket; a stale socket file left by a dead relayd
 * is replaced, a live one is refused) and, when cfg->metrics_listen is set, the metrics
 * endpoint. Returns 0 or a negative code (logged). */
int ctl_init(struct relayd *rd);
/* Closes the listeners and the open control connections; removes the socket file. */
void ctl_shutdown(struct relayd *rd);
void ctl_free(struct relayd *rd);

#endif
