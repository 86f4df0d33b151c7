/* Unit tests for fetchd/nlmsg.c: rtnetlink messages as the kernel sends them (built here
 * byte for byte: nlmsghdr, family header, rtattr attributes, 4-octet padding) decoded into
 * link events; loopback and host-scope addresses ignored; non-default routes ignored;
 * several messages in one datagram; and every kind of truncated or garbage buffer giving
 * -EBADMSG, never a crash (run under ASan/UBSan, including at odd alignments). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>

#include <cmocka.h>

#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "nlmsg.h"

#define A4(n) (((n) + 3u) & ~(size_t)3u)

/* A datagram under construction. */
struct dgram {
    _Alignas(8) uint8_t b[4096];
    size_t len;
    size_t msg; /* offset of the message being built */
};

static void msg_begin(struct dgram *d, uint16_t type, const void *fixed, size_t flen)
{
    d->msg = d->len;
    struct nlmsghdr h = {.nlmsg_type = type, .nlmsg_flags = 0, .nlmsg_seq = 0, .nlmsg_pid = 0};
    memcpy(d->b + d->len, &h, sizeof(h));
    d->len += sizeof(h);
    memcpy(d->b + d->len, fixed, flen);
    d->len += A4(flen);
}

static void attr(struct dgram *d, uint16_t type, const void *data, size_t dlen)
{
    struct rtattr a = {.rta_len = (unsigned short)(sizeof(a) + dlen), .rta_type = type};
    memcpy(d->b + d->len, &a, sizeof(a));
    memcpy(d->b + d->len + sizeof(a), data, dlen);
    d->len += A4(sizeof(a) + dlen);
}

static void msg_end(struct dgram *d)
{
    uint32_t l = (uint32_t)(d->len - d->msg);
    memcpy(d->b + d->msg, &l, sizeof(l)); /* nlmsg_len is the first field */
}

static void newlink(struct dgram *d, uint16_t type, int index, unsigned flags, const char *name)
{
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = index, .ifi_flags = flags};
    msg_begin(d, type, &ifi, sizeof(ifi));
    if (name)
        attr(d, IFLA_IFNAME, name, strlen(name) + 1);
    msg_end(d);
}

static void newaddr(struct dgram *d, int family, int index, unsigned char scope, const char *label)
{
    struct ifaddrmsg ifa = {.ifa_family = (unsigned char)family,
                            .ifa_prefixlen = family == AF_INET ? 24 : 64,
                            .ifa_scope = scope,
                            .ifa_index = (unsigned)index};
    msg_begin(d, RTM_NEWADDR, &ifa, sizeof(ifa));
    uint8_t addr[16] = {10, 0, 0, 2};
    attr(d, IFA_ADDRESS, addr, family == AF_INET ? 4 : 16);
    if (label)
        attr(d, IFA_LABEL, label, strlen(label) + 1);
    msg_end(d);
}

static void newroute(struct dgram *d, uint16_t type, int family, unsigned char dst_len,
                     unsigned char table, unsigned char rtype, int oif)
{
    struct rtmsg rt = {.rtm_family = (unsigned char)family,
                       .rtm_dst_len = dst_len,
                       .rtm_table = table,
                       .rtm_protocol = RTPROT_BOOT,
                       .rtm_scope = RT_SCOPE_UNIVERSE,
                       .rtm_type = rtype};
    msg_begin(d, type, &rt, sizeof(rt));
    uint32_t t32 = table;
    attr(d, RTA_TABLE, &t32, 4);
    if (dst_len) {
        uint8_t dst[16] = {192, 0, 2, 0};
        attr(d, RTA_DST, dst, family == AF_INET ? 4 : 16);
    }
    uint8_t gw[16] = {10, 0, 0, 1};
    attr(d, RTA_GATEWAY, gw, family == AF_INET ? 4 : 16);
    if (oif) {
        uint32_t o = (uint32_t)oif;
        attr(d, RTA_OIF, &o, 4);
    }
    msg_end(d);
}

struct got {
    struct nlmsg_event ev[16];
    int n;
};

static void collect(const struct nlmsg_event *ev, void *arg)
{
    struct got *g = arg;
    assert_true(g->n < 16);
    g->ev[g->n++] = *ev;
}

static int decode(const struct dgram *d, struct got *g)
{
    memset(g, 0, sizeof(*g));
    return nlmsg_decode(d->b, d->len, collect, g);
}

static void test_link_up_and_down(void **state)
{
    (void)state;
    struct dgram d = {0};
    struct got g;
    newlink(&d, RTM_NEWLINK, 3, IFF_UP | IFF_RUNNING | IFF_LOWER_UP, "eth0");
    assert_int_equal(decode(&d, &g), 1);
    assert_int_equal(g.ev[0].kind, NLMSG_EV_LINK_UP);
    assert_int_equal(g.ev[0].ifindex, 3);
    assert_string_equal(g.ev[0].ifname, "eth0");
    assert_true(nlmsg_event_is_up(&g.ev[0]));

    /* Administratively up but no carrier: not up yet. */
    d.len = 0;
    newlink(&d, RTM_NEWLINK, 3, IFF_UP, "eth0");
    assert_int_equal(decode(&d, &g), 1);
    assert_int_equal(g.ev[0].kind, NLMSG_EV_LINK_DOWN);
    assert_false(nlmsg_event_is_up(&g.ev[0]));

    d.len = 0;
    newlink(&d, RTM_NEWLINK, 3, 0, "eth0");
    assert_int_equal(decode(&d, &g), 1);
    assert_int_equal(g.ev[0].kind, NLMSG_EV_LINK_DOWN);

    d.len = 0;
    newlink(&d, RTM_DELLINK, 7, IFF_UP | IFF_RUNNING, "ppp0");
    assert_int_equal(decode(&d, &g), 1);
    assert_int_equal(g.ev[0].kind, NLMSG_EV_LINK_DOWN);
    assert_string_equal(g.ev[0].ifname, "ppp0");

    /* No IFLA_IFNAME: the index is all there is. */
    d.len = 0;
    newlink(&d, RTM_NEWLINK, 9, IFF_UP | IFF_RUNNING, NULL);
    assert_int_equal(decode(&d, &g), 1);
    assert_string_equal(g.ev[0].ifname, "");
    assert_int_equal(g.ev[0].ifindex, 9);
}

static void test_loopback_ignored(void **state)
{
    (void)state;
    struct dgram d = {0};
    struct got g;
    newlink(&d, RTM_NEWLINK, 1, IFF_UP | IFF_RUNNING | IFF_LOOPBACK, "lo");
    newaddr(&d, AF_INET, 1, RT_SCOPE_HOST, "lo");  /* 127.0.0.1/8 */
    newaddr(&d, AF_INET6, 1, RT_SCOPE_HOST, NULL); /* ::1 */
    newaddr(&d, AF_INET6, 1, RT_SCOPE_NOWHERE, NULL);
    newlink(&d, RTM_DELLINK, 1, IFF_LOOPBACK, "lo");
    assert_int_equal(decode(&d, &g), 0);
    assert_int_equal(g.n, 0);
}

static void test_addresses(void **state)
{
    (void)state;
    struct dgram d = {0};
    struct got g;
    newaddr(&d, AF_INET, 4, RT_SCOPE_UNIVERSE, "ppp0");
    newaddr(&d, AF_INET6, 4, RT_SCOPE_LINK, NULL); /* fe80:: after DAD: reaches no relay */
    newaddr(&d, AF_INET6, 4, RT_SCOPE_UNIVERSE, NULL);
    assert_int_equal(decode(&d, &g), 2);
    assert_int_equal(g.ev[0].kind, NLMSG_EV_ADDR_ADD);
    assert_int_equal(g.ev[0].family, AF_INET);
    assert_int_equal(g.ev[0].ifindex, 4);
    assert_string_equal(g.ev[0].ifname, "ppp0");
    assert_int_equal(g.ev[1].kind, NLMSG_EV_ADDR_ADD);
    assert_int_equal(g.ev[1].family, AF_INET6);

    /* A deleted address is no event. */
    d.len = 0;
    struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_scope = RT_SCOPE_UNIVERSE, .ifa_index = 4};
    msg_begin(&d, RTM_DELADDR, &ifa, sizeof(ifa));
    msg_end(&d);
    assert_int_equal(decode(&d, &g), 0);
}

static void test_routes(void **state)
{
    (void)state;
    static const struct {
        uint16_t type;
        int family;
        unsigned char dst_len, table, rtype;
        int want; /* events */
    } cases[] = {
        /* { type, family, dst_len, table, rtype, events } */
        {RTM_NEWROUTE, AF_INET, 0, RT_TABLE_MAIN, RTN_UNICAST, 1},  /* default via ... */
        {RTM_NEWROUTE, AF_INET6, 0, RT_TABLE_MAIN, RTN_UNICAST, 1}, /* ::/0 */
        {RTM_NEWROUTE, AF_INET, 24, RT_TABLE_MAIN, RTN_UNICAST, 0}, /* 192.0.2.0/24 */
        {RTM_NEWROUTE, AF_INET, 32, RT_TABLE_LOCAL, RTN_LOCAL, 0},  /* local address */
        {RTM_NEWROUTE, AF_INET, 0, RT_TABLE_LOCAL, RTN_UNICAST, 0}, /* local table */
        {RTM_NEWROUTE, AF_INET, 0, RT_TABLE_MAIN, RTN_UNREACHABLE, 0},
        {RTM_NEWROUTE, AF_INET, 0, 100, RTN_UNICAST, 1},             /* policy table */
        {RTM_DELROUTE, AF_INET, 0, RT_TABLE_MAIN, RTN_UNICAST, 0},   /* default removed */
        {RTM_NEWROUTE, AF_PACKET, 0, RT_TABLE_MAIN, RTN_UNICAST, 0}, /* not IP */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dgram d = {0};
        struct got g;
        newroute(&d, cases[i].type, cases[i].family, cases[i].dst_len, cases[i].table,
                 cases[i].rtype, 5);
        int rc = decode(&d, &g);
        if (rc != cases[i].want)
            fail_msg("route case %zu: %d events, want %d", i, rc, cases[i].want);
        if (rc == 1) {
            assert_int_equal(g.ev[0].kind, NLMSG_EV_ROUTE_DEFAULT);
            assert_int_equal(g.ev[0].family, cases[i].family);
            assert_int_equal(g.ev[0].ifindex, 5);
        }
    }
}

static void test_many_in_one_datagram(void **state)
{
    (void)state;
    struct dgram d = {0};
    struct got g;
    /* What "ip link set veth1 up" with an address and a default route produces. */
    newlink(&d, RTM_NEWLINK, 6, IFF_UP, "veth1");
    newlink(&d, RTM_NEWLINK, 6, IFF_UP | IFF_RUNNING | IFF_LOWER_UP, "veth1");
    newroute(&d, RTM_NEWROUTE, AF_INET, 24, RT_TABLE_MAIN, RTN_UNICAST, 6);
    newroute(&d, RTM_NEWROUTE, AF_INET, 0, RT_TABLE_MAIN, RTN_UNICAST, 6);
    newaddr(&d, AF_INET6, 6, RT_SCOPE_LINK, NULL); /* ignored */
    newaddr(&d, AF_INET, 6, RT_SCOPE_UNIVERSE, "veth1");
    struct nlmsghdr done = {.nlmsg_len = sizeof(done), .nlmsg_type = NLMSG_DONE};
    memcpy(d.b + d.len, &done, sizeof(done));
    d.len += sizeof(done);
    /* Anything after NLMSG_DONE is not read. */
    memset(d.b + d.len, 0xff, 8);
    d.len += 8;
    assert_int_equal(decode(&d, &g), 4);
    assert_int_equal(g.ev[0].kind, NLMSG_EV_LINK_DOWN);
    assert_int_equal(g.ev[1].kind, NLMSG_EV_LINK_UP);
    assert_int_equal(g.ev[2].kind, NLMSG_EV_ROUTE_DEFAULT);
    assert_int_equal(g.ev[3].kind, NLMSG_EV_ADDR_ADD);
    assert_string_equal(nlmsg_kind_name(g.ev[1].kind), "link-up");
    assert_string_equal(nlmsg_kind_name(g.ev[2].kind), "default-route");

    /* Messages of no interest (NOOP, ERROR) give nothing and do not stop the walk. */
    d.len = 0;
    struct nlmsghdr noop = {.nlmsg_len = sizeof(noop), .nlmsg_type = NLMSG_NOOP};
    memcpy(d.b, &noop, sizeof(noop));
    d.len = sizeof(noop);
    struct nlmsgerr err = {.error = -EPERM};
    msg_begin(&d, NLMSG_ERROR, &err, sizeof(err));
    msg_end(&d);
    newlink(&d, RTM_NEWLINK, 2, IFF_UP | IFF_RUNNING, "wlan0");
    assert_int_equal(decode(&d, &g), 1);
    assert_string_equal(g.ev[0].ifname, "wlan0");

    assert_int_equal(nlmsg_decode(d.b, 0, collect, &g), 0);
}

static void test_long_name_is_cut(void **state)
{
    (void)state;
    struct dgram d = {0};
    struct got g;
    /* An IFLA_IFNAME without NUL and longer than IFNAMSIZ: cut, terminated. */
    struct ifinfomsg ifi = {.ifi_index = 2, .ifi_flags = IFF_UP | IFF_RUNNING};
    msg_begin(&d, RTM_NEWLINK, &ifi, sizeof(ifi));
    attr(&d, IFLA_IFNAME, "abcdefghijklmnopqrstuvwxyz", 26);
    msg_end(&d);
    assert_int_equal(decode(&d, &g), 1);
    assert_string_equal(g.ev[0].ifname, "abcdefghijklmno");
}

static void test_garbage(void **state)
{
    (void)state;
    struct dgram good = {0};
    newlink(&good, RTM_NEWLINK, 3, IFF_UP | IFF_RUNNING, "eth0");
    struct got g;

    /* Every truncation of a valid message is an error, never a read past the end. */
    for (size_t cut = 1; cut < good.len; cut++) {
        uint8_t *copy = malloc(cut); /* exact size: ASan sees any overrun */
        memcpy(copy, good.b, cut);
        memset(&g, 0, sizeof(g));
        assert_int_equal(nlmsg_decode(copy, cut, collect, &g), -EBADMSG);
        free(copy);
    }

    /* nlmsg_len larger than the datagram, smaller than its header, zero. */
    static const uint32_t bad_lens[] = {0, 4, 15, 4096, 0xffffffffu};
    for (size_t i = 0; i < sizeof(bad_lens) / sizeof(bad_lens[0]); i++) {
        struct dgram d = good;
        memcpy(d.b, &bad_lens[i], 4);
        assert_int_equal(decode(&d, &g), -EBADMSG);
    }

    /* A payload shorter than ifinfomsg / ifaddrmsg / rtmsg. */
    static const uint16_t types[] = {RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct dgram d = {0};
        uint32_t four = 0;
        msg_begin(&d, types[i], &four, 4);
        msg_end(&d);
        assert_int_equal(decode(&d, &g), -EBADMSG);
    }

    /* An attribute whose length overruns its message, or is below its own header. */
    static const unsigned short bad_rta[] = {0, 3, 200, 0xffff};
    for (size_t i = 0; i < sizeof(bad_rta) / sizeof(bad_rta[0]); i++) {
        struct dgram d = good;
        size_t at = NLMSG_HDRLEN + A4(sizeof(struct ifinfomsg));
        memcpy(d.b + at, &bad_rta[i], 2);
        assert_int_equal(decode(&d, &g), -EBADMSG);
    }

    /* A valid message then garbage: the first event is delivered, then the error. */
    struct dgram d = good;
    memset(d.b + d.len, 0xA5, 7);
    d.len += 7;
    assert_int_equal(decode(&d, &g), -EBADMSG);
    assert_int_equal(g.n, 1);

    /* Random bytes at every alignment: an error or some events, never a crash. */
    uint32_t x = 2463534242u;
    static uint8_t noise[600];
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < sizeof(noise); i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise[i] = (uint8_t)x;
        }
        /* Plausible headers now and then, so the walk goes past the first message. */
        if (round % 2) {
            uint32_t l = 16 + x % 64;
            uint16_t t = (uint16_t)(RTM_NEWLINK + x % 24);
            memcpy(noise, &l, 4);
            memcpy(noise + 4, &t, 2);
        }
        size_t off = (size_t)round % 7, len = (size_t)(x >> 7) % (sizeof(noise) - 8);
        memset(&g, 0, sizeof(g));
        int rc = nlmsg_decode(noise + off, len, collect, &g);
        assert_true(rc == -EBADMSG || (rc >= 0 && rc == g.n));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_up_and_down),
        cmocka_unit_test(test_loopback_ignored),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_many_in_one_datagram),
        cmocka_unit_test(test_long_name_is_cut),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
