/* Decoding of rtnetlink messages (NETLINK_ROUTE multicast: RTM_NEWLINK, RTM_NEWADDR,
 * RTM_NEWROUTE and their deletions) into the few facts fetchd cares about: did an
 * interface come up, did one get an address, did a default route appear.
 *
 * Pure: bytes in, events out through a callback. The socket, the uv_poll and the debounce
 * timer are link.c's. Every length in the buffer is checked before it is used and fields
 * are copied out with memcpy, so a truncated or hostile buffer gives -EBADMSG, never a read
 * outside it or a misaligned access. */
#ifndef HF_FETCHD_NLMSG_H
#define HF_FETCHD_NLMSG_H

#include <stdbool.h>
#include <stddef.h>

#define NLMSG_IFNAME_MAX 16 /* IFNAMSIZ, with its NUL */

enum nlmsg_kind {
    NLMSG_EV_LINK_UP = 1,   /* RTM_NEWLINK with IFF_UP and IFF_RUNNING (carrier), not loopback */
    NLMSG_EV_LINK_DOWN,     /* RTM_NEWLINK without IFF_UP or IFF_RUNNING, or RTM_DELLINK */
    NLMSG_EV_ADDR_ADD,      /* RTM_NEWADDR with a scope wider than link (not 127.0.0.1, ::1,
                               fe80::) */
    NLMSG_EV_ROUTE_DEFAULT, /* RTM_NEWROUTE: unicast, destination length 0, not the local
                               table (a default route appeared) */
};

struct nlmsg_event {
    enum nlmsg_kind kind;
    int family;                    /* AF_INET / AF_INET6 (addresses, routes), else 0 */
    int ifindex;                   /* interface index; 0 when the message names none */
    char ifname[NLMSG_IFNAME_MAX]; /* IFLA_IFNAME or IFA_LABEL when present, else "" */
};

typedef void (*nlmsg_event_cb)(const struct nlmsg_event *ev, void *arg);

/* True for the kinds that mean "the link may have come up" (everything but LINK_DOWN). */
bool nlmsg_event_is_up(const struct nlmsg_event *ev);

/* A static name for logs: "link-up", "link-down", "addr-add", "default-route". */
const char *nlmsg_kind_name(enum nlmsg_kind kind);

/* Walks the netlink messages in buf[0..len) (one datagram as recv() returned it; borrowed)
 * and calls cb for every message that is one of the events above; other messages
 * (NLMSG_DONE, NLMSG_NOOP, NLMSG_ERROR, deleted addresses and routes, loopback links,
 * host- and link-scope addresses, non-default routes) give none. Events decoded before a bad
 * message have been delivered when the error is returned.
 * Returns the number of events delivered (>= 0), or -EBADMSG: a header shorter than
 * nlmsghdr or longer than what is left, a payload shorter than its fixed part
 * (ifinfomsg, ifaddrmsg, rtmsg), an attribute whose length overruns its message, or
 * trailing bytes that cannot hold a header. len 0 returns 0. */
int nlmsg_decode(const void *buf, size_t len, nlmsg_event_cb cb, void *arg);

#endif
