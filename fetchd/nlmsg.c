/* rtnetlink decoder (see nlmsg.h). Netlink framing: a stream of nlmsghdr-led messages,
 * each padded to 4 octets; inside, a fixed family header then rtattr attributes, also
 * padded to 4 (rtnetlink(7)). Nothing here trusts a length before checking it against
 * what is left, and nothing is read through a cast pointer into buf: fields are memcpy'd,
 * because a datagram need not be aligned for the structs (and UBSan checks that). */
#include "nlmsg.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#define NLMSG_A4(n) (((n) + 3u) & ~(size_t)3u) /* netlink's 4-octet alignment */

bool nlmsg_event_is_up(const struct nlmsg_event *ev)
{
    return ev->kind != NLMSG_EV_LINK_DOWN;
}

const char *nlmsg_kind_name(enum nlmsg_kind kind)
{
    switch (kind) {
    case NLMSG_EV_LINK_UP:
        return "link-up";
    case NLMSG_EV_LINK_DOWN:
        return "link-down";
    case NLMSG_EV_ADDR_ADD:
        return "addr-add";
    case NLMSG_EV_ROUTE_DEFAULT:
        return "default-route";
    }
    return "?";
}

/* Walks the attributes in p[0..len): calls fn for each. Returns 0 or -EBADMSG. */
typedef void (*nlmsg_attr_fn)(unsigned type, const uint8_t *data, size_t len, void *arg);

static int nlmsg_attrs(const uint8_t *p, size_t len, nlmsg_attr_fn fn, void *arg)
{
    size_t off = 0;
    while (len - off >= sizeof(struct rtattr)) {
        struct rtattr a;
        memcpy(&a, p + off, sizeof(a));
        if (a.rta_len < sizeof(a) || a.rta_len > len - off)
            return -EBADMSG;
        fn(a.rta_type, p + off + sizeof(a), a.rta_len - sizeof(a), arg);
        size_t step = NLMSG_A4((size_t)a.rta_len);
        if (step >= len - off)
            return 0; /* the last attribute may omit its padding */
        off += step;
    }
    return off == len ? 0 : -EBADMSG;
}

struct nlmsg_attr_ctx {
    struct nlmsg_event *ev;
    unsigned name_type; /* IFLA_IFNAME or IFA_LABEL */
    bool has_table;
    uint32_t table; /* RTA_TABLE */
    bool has_oif;
    uint32_t oif; /* RTA_OIF */
};

static void nlmsg_attr_cb(unsigned type, const uint8_t *data, size_t len, void *arg)
{
    struct nlmsg_attr_ctx *x = arg;
    if (x->name_type && type == x->name_type) {
        size_t n = strnlen((const char *)data, len);
        if (n >= sizeof(x->ev->ifname))
            n = sizeof(x->ev->ifname) - 1;
        memcpy(x->ev->ifname, data, n);
        x->ev->ifname[n] = '\0';
    } else if (!x->name_type && type == RTA_TABLE && len >= 4) {
        memcpy(&x->table, data, 4);
        x->has_table = true;
    } else if (!x->name_type && type == RTA_OIF && len >= 4) {
        memcpy(&x->oif, data, 4);
        x->has_oif = true;
    }
}

/* Decodes one message body; returns 1 with *ev filled, 0 for no event, -EBADMSG. */
static int nlmsg_one(uint16_t type, const uint8_t *p, size_t len, struct nlmsg_event *ev)
{
    struct nlmsg_attr_ctx x = {.ev = ev};
    memset(ev, 0, sizeof(*ev));
    switch (type) {
    case RTM_NEWLINK:
    case RTM_DELLINK: {
        struct ifinfomsg ifi;
        if (len < sizeof(ifi))
            return -EBADMSG;
        memcpy(&ifi, p, sizeof(ifi));
        x.name_type = IFLA_IFNAME;
        if (nlmsg_attrs(p + NLMSG_A4(sizeof(ifi)), len - NLMSG_A4(sizeof(ifi)), nlmsg_attr_cb, &x) <
            0)
            return -EBADMSG;
        if (ifi.ifi_flags & IFF_LOOPBACK)
            return 0;
        ev->ifindex = ifi.ifi_index;
        bool up = type == RTM_NEWLINK && (ifi.ifi_flags & IFF_UP) && (ifi.ifi_flags & IFF_RUNNING);
        ev->kind = up ? NLMSG_EV_LINK_UP : NLMSG_EV_LINK_DOWN;
        return 1;
    }
    case RTM_NEWADDR: {
        struct ifaddrmsg ifa;
        if (len < sizeof(ifa))
            return -EBADMSG;
        memcpy(&ifa, p, sizeof(ifa));
        x.name_type = IFA_LABEL;
        if (nlmsg_attrs(p + NLMSG_A4(sizeof(ifa)), len - NLMSG_A4(sizeof(ifa)), nlmsg_attr_cb, &x) <
            0)
            return -EBADMSG;
        /* 127.0.0.1 and ::1 have host scope: the loopback says nothing about the link. A
         * link-scope address (IPv6 fe80::, which also reappears a moment after every
         * link-up when duplicate address detection ends) reaches no relay: a second
         * release for one link-up would be all it brings. */
        if (ifa.ifa_scope >= RT_SCOPE_LINK)
            return 0;
        ev->kind = NLMSG_EV_ADDR_ADD;
        ev->family = ifa.ifa_family;
        ev->ifindex = (int)ifa.ifa_index;
        return 1;
    }
    case RTM_NEWROUTE: {
        struct rtmsg rt;
        if (len < sizeof(rt))
            return -EBADMSG;
        memcpy(&rt, p, sizeof(rt));
        if (nlmsg_attrs(p + NLMSG_A4(sizeof(rt)), len - NLMSG_A4(sizeof(rt)), nlmsg_attr_cb, &x) <
            0)
            return -EBADMSG;
        uint32_t table = x.has_table ? x.table : rt.rtm_table;
        if (rt.rtm_dst_len != 0 || rt.rtm_type != RTN_UNICAST || table == RT_TABLE_LOCAL)
            return 0;
        if (rt.rtm_family != AF_INET && rt.rtm_family != AF_INET6)
            return 0;
        ev->kind = NLMSG_EV_ROUTE_DEFAULT;
        ev->family = rt.rtm_family;
        ev->ifindex = x.has_oif ? (int)x.oif : 0;
        return 1;
    }
    case RTM_DELADDR:
    case RTM_DELROUTE:
    default:
        return 0;
    }
}

int nlmsg_decode(const void *buf, size_t len, nlmsg_event_cb cb, void *arg)
{
    const uint8_t *p = buf;
    size_t off = 0;
    int n = 0;
    while (off < len) {
        struct nlmsghdr h;
        if (len - off < sizeof(h))
            return -EBADMSG;
        memcpy(&h, p + off, sizeof(h));
        if (h.nlmsg_len < sizeof(h) || h.nlmsg_len > len - off)
            return -EBADMSG;
        if (h.nlmsg_type == NLMSG_DONE)
            return n;
        struct nlmsg_event ev;
        int rc = nlmsg_one(h.nlmsg_type, p + off + NLMSG_A4(sizeof(h)),
                           h.nlmsg_len - NLMSG_A4(sizeof(h)), &ev);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            cb(&ev, arg);
            n++;
        }
        size_t step = NLMSG_A4((size_t)h.nlmsg_len);
        if (step >= len - off)
            break;
        off += step;
    }
    return n;
}
