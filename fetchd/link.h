/* Link-up detection on Linux: a NETLINK_ROUTE socket subscribed to link, IPv4/IPv6
 * address and route changes, watched on the libuv loop, decoded by nlmsg.c, and debounced:
 * the callback runs `debounce` after the last change, and only if an "up" event (an
 * interface up and running, an address added, a default route added; never the loopback)
 * came in since the last callback. A link that flaps ten times in a few seconds gives one
 * callback once it has been quiet for `debounce`.
 *
 * Only messages from the kernel (sender port 0) are read. When the socket's buffer
 * overflowed (ENOBUFS: events were lost) the state is unknown and counts as an up event. */
#ifndef HF_FETCHD_LINK_H
#define HF_FETCHD_LINK_H

#include <stdint.h>

#include <uv.h>

struct link_watch;

/* why: a static-lifetime-for-the-call description of the last up event, such as
 * "link-up dev=eth0" (borrowed: valid during the call). */
typedef void (*link_watch_cb)(const char *why, void *arg);

/* Opens the netlink socket and starts watching. Returns 0 and *out, or a negative errno
 * (socket or bind refused: -EPERM, -EAFNOSUPPORT...; -ENOMEM); then nothing was started. */
int link_watch_start(uv_loop_t *loop, uint64_t debounce_ms, link_watch_cb cb, void *arg,
                     struct link_watch **out);

/* Stops watching and closes the socket; memory is released from the loop's close
 * callbacks. No callback runs after this. NULL is allowed. */
void link_watch_close(struct link_watch *w);

#endif
