/* Waiting for the local MTA: before fetchd asks a relay to send the held mail, the mail
 * server that will receive it (local_mta, host:port) must accept TCP connections, or a link
 * that comes up during boot releases mail into a closed port (the relay would only defer
 * it again, and count a failed attempt). This polls with connect() and a growing pause
 * (100 ms doubling to 2 s) until it succeeds or the bound runs out.
 *
 * Glue over dns.h (the host: an address literal, "localhost", or a name) and conn.h. */
#ifndef HF_FETCHD_MTA_H
#define HF_FETCHD_MTA_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dns.h"

struct mta_wait;

/* status: 0 (a connection was accepted), -ETIMEDOUT (the bound ran out; the last error
 * was logged), -ECANCELED (mta_wait_cancel). */
typedef void (*mta_wait_cb)(int status, void *arg);

/* Splits "host:port", "[v6]:port", "host" or "[v6]" (port 25) into host (without
 * brackets) and port. Pure. Returns 0, or -EINVAL for an empty host, a bad or out-of-range
 * port, or a host longer than hostsz - 1. */
int mta_parse(const char *s, char *host, size_t hostsz, int *port);

/* Starts waiting for hostport (borrowed; parsed at once) to accept a connection, for at
 * most bound_ms. dns is borrowed and must outlive the wait. Returns 0 and *out (cb runs
 * exactly once, from the loop, or from mta_wait_cancel), -EINVAL (hostport does not
 * parse), -ENOMEM; then cb never runs. The wait frees itself after cb. */
int mta_wait_start(uv_loop_t *loop, struct dns *dns, const char *hostport, uint64_t bound_ms,
                   mta_wait_cb cb, void *arg, struct mta_wait **out);

/* Stops the wait: cb runs now with -ECANCELED (unless it already ran: then w must not be
 * passed here). */
void mta_wait_cancel(struct mta_wait *w);

#endif
