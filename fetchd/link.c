/* The netlink watcher (see link.h): socket, uv_poll on it, a debounce uv_timer. Decoding is
 * nlmsg.c's; this file only reads datagrams, checks their sender and restarts the timer. */
#include "link.h"

#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "hf_err.h"
#include "log.h"
#include "nlmsg.h"

struct link_watch {
    int fd;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;
    uint64_t debounce_ms;
    bool up_seen; /* an up event since the last callback */
    bool closing;
    unsigned events; /* link events in the current window, for the log */
    char why[96];
    link_watch_cb cb;
    void *arg;
};

static void link_on_timer(uv_timer_t *t)
{
    struct link_watch *w = t->data;
    if (w->closing)
        return;
    if (!w->up_seen) {
        log_debug("link settled after %u change(s), nothing came up", w->events);
        w->events = 0;
        return;
    }
    char why[sizeof(w->why) + 32];
    snprintf(why, sizeof(why), "%s changes=%u", w->why, w->events);
    w->up_seen = false;
    w->events = 0;
    w->cb(why, w->arg);
}

static void link_on_event(const struct nlmsg_event *ev, void *arg)
{
    struct link_watch *w = arg;
    char name[IF_NAMESIZE] = "";
    if (ev->ifname[0])
        snprintf(name, sizeof(name), "%s", ev->ifname);
    else if (ev->ifindex > 0 && !if_indextoname((unsigned)ev->ifindex, name))
        name[0] = '\0';
    log_debug("netlink %s dev=%s ifindex=%d family=%d", nlmsg_kind_name(ev->kind),
              name[0] ? name : "?", ev->ifindex, ev->family);
    w->events++;
    if (nlmsg_event_is_up(ev)) {
        w->up_seen = true;
        snprintf(w->why, sizeof(w->why), "%s dev=%s", nlmsg_kind_name(ev->kind),
                 name[0] ? name : "?");
    }
    /* Debounce: every change, up or down, restarts the quiet period. */
    uv_timer_start(&w->timer, link_on_timer, w->debounce_ms, 0);
}

static void link_on_poll(uv_poll_t *p, int status, int events)
{
    struct link_watch *w = p->data;
    (void)events;
    if (w->closing)
        return;
    if (status < 0) {
        log_warn("netlink poll failed err=%s", hf_errname(status));
        return;
    }
    /* Aligned for nlmsghdr; 32 KiB holds any rtnetlink multicast datagram. */
    static _Alignas(8) unsigned char buf[32768];
    for (int i = 0; i < 64; i++) {
        struct sockaddr_nl from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(w->fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            if (errno == ENOBUFS) {
                /* The kernel dropped events: the link may have come up unseen. */
                log_info("netlink buffer overrun: events lost, assuming a change");
                struct nlmsg_event ev = {.kind = NLMSG_EV_LINK_UP};
                snprintf(ev.ifname, sizeof(ev.ifname), "overrun");
                link_on_event(&ev, w);
                continue;
            }
            log_warn("netlink recv failed err=%s", hf_errname(-errno));
            return;
        }
        if (fl < sizeof(from) || from.nl_family != AF_NETLINK || from.nl_pid != 0) {
            log_debug("netlink message not from the kernel ignored (pid %u)",
                      (unsigned)from.nl_pid);
            continue;
        }
        int rc = nlmsg_decode(buf, (size_t)n, link_on_event, w);
        if (rc < 0)
            log_warn("netlink message of %zd octets undecodable err=%s", n, hf_errname(rc));
    }
}

int link_watch_start(uv_loop_t *loop, uint64_t debounce_ms, link_watch_cb cb, void *arg,
                     struct link_watch **out)
{
    struct link_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    int rc;
    w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (w->fd < 0) {
        rc = -errno;
        goto fail;
    }
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE |
                   RTMGRP_IPV6_ROUTE;
    if (bind(w->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = uv_poll_init_socket(loop, &w->poll, w->fd);
    if (rc < 0)
        goto fail;
    uv_timer_init(loop, &w->timer);
    w->poll.data = w;
    w->timer.data = w;
    w->open_handles = 2;
    w->debounce_ms = debounce_ms;
    w->cb = cb;
    w->arg = arg;
    rc = uv_poll_start(&w->poll, UV_READABLE, link_on_poll);
    if (rc < 0) {
        /* Handles are initialised: close them through the normal path. */
        link_watch_close(w);
        return rc;
    }
    *out = w;
    return 0;
fail:
    if (w->fd >= 0)
        close(w->fd);
    free(w);
    return rc;
}

static void link_handle_closed(uv_handle_t *h)
{
    struct link_watch *w = h->data;
    if (--w->open_handles == 0) {
        close(w->fd);
        free(w);
    }
}

void link_watch_close(struct link_watch *w)
{
    if (!w || w->closing)
        return;
    w->closing = true;
    uv_poll_stop(&w->poll);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->poll, link_handle_closed);
    uv_close((uv_handle_t *)&w->timer, link_handle_closed);
}
