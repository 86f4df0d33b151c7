/* Unit tests for mx.c: ordering, tie shuffling with a scripted random function, the null
 * MX, the self-MX rule by name and by address, the implicit MX, and flattening into
 * attempts, merging duplicate records and keeping the most preferred. Records are written
 * compactly as "host:pref host:pref". */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "hf_err.h"
#include "mx.h"

#define MAXH 16

/* Parses "a:10 b:20" into hosts; returns the count. */
static size_t parse_hosts(const char *spec, struct mx_host *out)
{
    char buf[512];
    size_t n = 0;
    snprintf(buf, sizeof(buf), "%s", spec);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        char *colon = strrchr(tok, ':');
        assert_non_null(colon);
        *colon = '\0';
        assert_int_equal(mx_host_set(&out[n++], tok, (unsigned)atoi(colon + 1)), 0);
    }
    return n;
}

/* Writes the plan's names as "a b c". */
static const char *names(const struct mx_host *h, size_t n, char *buf, size_t sz)
{
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(buf + k, sz - k, "%s%s", i ? " " : "", h[i].name);
    return buf;
}

static struct sockaddr_storage sa4(const char *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, s, &((struct sockaddr_in *)&ss)->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage sa6(const char *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
    return ss;
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t sz)
{
    const void *src = ss->ss_family == AF_INET
                          ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                          : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    return inet_ntop(ss->ss_family, src, buf, (socklen_t)sz);
}

/* A scripted random function: returns the values in turn, counts the calls. */
struct script {
    const uint32_t *v;
    size_t n, calls;
};

static uint32_t script_rand(void *arg)
{
    struct script *s = arg;
    uint32_t v = s->calls < s->n ? s->v[s->calls] : 0;
    s->calls++;
    return v;
}

struct plan_case {
    const char *records; /* "" for none */
    const char *self;    /* one self name or NULL */
    int rc;
    const char *plan; /* expected order, no shuffling */
};

static const struct plan_case plan_cases[] = {
    /* { records, self, rc, plan } */
    {"b.test:20 a.test:10 c.test:30", NULL, 0, "a.test b.test c.test"},
    {"x.test:10 y.test:10 z.test:5", NULL, 0, "z.test x.test y.test"}, /* stable ties */
    {"MX1.Test.:10", NULL, 0, "mx1.test"},                             /* normalised */
    {"", NULL, 0, "dom.test"},                                         /* implicit MX */
    {".:0", NULL, HF_ENULLMX, ""},                                     /* RFC 7505 */
    {".:10", NULL, HF_ENULLMX, ""},       /* a lone "." at any preference */
    {".:0 a.test:10", NULL, 0, "a.test"}, /* "." among others names no host */
    /* The self-MX rule (RFC 5321 5.1): drop ours and everything not better. */
    {"a.test:10 relay.test:20 c.test:30 d.test:20", "RELAY.TEST.", 0, "a.test"},
    {"a.test:10 relay.test:10 b.test:5", "relay.test", 0, "b.test"},
    {"relay.test:10 a.test:20", "relay.test", -ELOOP, ""},             /* we are the best MX */
    {"a.test:10 relay.test:10", "relay.test", -ELOOP, ""},             /* equal preference too */
    {"", "dom.test", -ELOOP, ""},                                      /* implicit MX is us */
    {"relay.test:30 relay.test.x:5", "relay.test", 0, "relay.test.x"}, /* whole names */
};

static void test_plan_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(plan_cases) / sizeof(plan_cases[0]); i++) {
        const struct plan_case *pc = &plan_cases[i];
        struct mx_host in[MAXH], out[MAXH + 1];
        size_t n = parse_hosts(pc->records, in), nout = 99;
        const char *selfnames[1] = {pc->self};
        struct mx_self self = {selfnames, pc->self ? 1 : 0, NULL, 0};
        char buf[512];
        int rc = mx_plan("dom.test", in, n, &self, NULL, NULL, out, &nout);
        if (rc != pc->rc)
            fail_msg("case %zu (%s): rc %d, want %d", i, pc->records, rc, pc->rc);
        if (rc != 0) {
            assert_int_equal(nout, 0);
            continue;
        }
        if (strcmp(names(out, nout, buf, sizeof(buf)), pc->plan) != 0)
            fail_msg("case %zu (%s): plan \"%s\", want \"%s\"", i, pc->records, buf, pc->plan);
    }
}

static void test_plan_shuffles_ties(void **state)
{
    (void)state;
    struct mx_host in[MAXH], out[MAXH + 1];
    size_t n = parse_hosts("a.test:10 b.test:10 c.test:10 d.test:20 e.test:20 f.test:5", in);
    size_t nout;
    char buf[512];

    /* Fisher-Yates within each run: [a b c] i=2 j=0 -> [c b a], i=1 j=0 -> [b c a];
     * [d e] i=1 j=1 % 2 = 1 -> [d e]; the lone f.test needs no draw. */
    const uint32_t v[] = {0, 0, 1};
    struct script s = {v, 3, 0};
    assert_int_equal(mx_plan("dom.test", in, n, NULL, script_rand, &s, out, &nout), 0);
    assert_string_equal(names(out, nout, buf, sizeof(buf)),
                        "f.test b.test c.test a.test d.test e.test");
    assert_int_equal(s.calls, 3);

    /* Other draws, other order; never across preferences. */
    const uint32_t w[] = {5, 1, 4}; /* 5%3=2 (stay), 1%2=1 (stay), 4%2=0 (swap) */
    struct script t = {w, 3, 0};
    assert_int_equal(mx_plan("dom.test", in, n, NULL, script_rand, &t, out, &nout), 0);
    assert_string_equal(names(out, nout, buf, sizeof(buf)),
                        "f.test a.test b.test c.test e.test d.test");
}

static void test_plan_self_by_address(void **state)
{
    (void)state;
    struct mx_host in[MAXH], out[MAXH + 1];
    size_t n = parse_hosts("a.test:10 b.test:20 c.test:30", in), nout;
    struct sockaddr_storage a_addrs[] = {sa4("192.0.2.1")};
    struct sockaddr_storage b_addrs[] = {sa4("192.0.2.2"), sa6("2001:db8::7")};
    in[0].addrs = a_addrs;
    in[0].naddrs = 1;
    in[1].addrs = b_addrs;
    in[1].naddrs = 2;
    struct sockaddr_storage mine[] = {sa6("2001:db8::7")};
    struct mx_self self = {NULL, 0, mine, 1};
    char buf[256];

    assert_int_equal(mx_plan("dom.test", in, n, &self, NULL, NULL, out, &nout), 0);
    assert_string_equal(names(out, nout, buf, sizeof(buf)), "a.test");
    assert_ptr_equal(out[0].addrs, a_addrs); /* borrowed, not copied */

    /* An IPv4-mapped IPv6 address of ours matches the host's IPv4 address. */
    struct sockaddr_storage mapped[] = {sa6("::ffff:192.0.2.1")};
    struct mx_self self2 = {NULL, 0, mapped, 1};
    assert_int_equal(mx_plan("dom.test", in, n, &self2, NULL, NULL, out, &nout), -ELOOP);
    assert_int_equal(nout, 0);
}

static void test_host_set(void **state)
{
    (void)state;
    struct mx_host h;
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    longname[256] = '\0';
    assert_int_equal(mx_host_set(&h, longname, 1), HF_EADDR);
    longname[255] = '\0';
    assert_int_equal(mx_host_set(&h, longname, 1), 0);
    longname[255] = '.'; /* 255 octets plus the root dot still fit */
    assert_int_equal(mx_host_set(&h, longname, 1), 0);
    assert_int_equal(strlen(h.name), 255);
    assert_int_equal(mx_host_set(&h, "", 0), 0);
    assert_true(mx_host_is_null(&h));
    assert_int_equal(mx_host_set(&h, "Mail.Example.TEST.", 7), 0);
    assert_string_equal(h.name, "mail.example.test");
    assert_int_equal(h.pref, 7);
    assert_int_equal(h.err, 0);
    assert_int_equal(h.naddrs, 0);

    struct mx_host out[2];
    size_t nout;
    longname[255] = 'a';
    longname[256] = '\0';
    assert_int_equal(mx_plan(longname, NULL, 0, NULL, NULL, NULL, out, &nout), HF_EADDR);
}

static void test_self_predicates(void **state)
{
    (void)state;
    const char *nm[] = {"relay.test.", NULL};
    struct sockaddr_storage ad[] = {sa4("0.0.0.0"), sa4("192.0.2.9"), sa6("::")};
    struct mx_self self = {nm, 2, ad, 3};
    assert_true(mx_self_has_name(&self, "Relay.Test"));
    assert_false(mx_self_has_name(&self, "xrelay.test"));
    assert_false(mx_self_has_name(&self, "relay.test.x"));
    assert_false(mx_self_has_name(NULL, "relay.test"));
    struct sockaddr_storage q = sa4("192.0.2.9"), z = sa4("0.0.0.0"), z6 = sa6("::");
    struct sockaddr_storage m = sa6("::ffff:192.0.2.9"), other = sa4("192.0.2.10");
    ((struct sockaddr_in *)&q)->sin_port = htons(25); /* ports never matter */
    assert_true(mx_self_has_addr(&self, &q));
    assert_true(mx_self_has_addr(&self, &m));
    assert_false(mx_self_has_addr(&self, &other));
    /* The wildcard addresses identify nobody. */
    assert_false(mx_self_has_addr(&self, &z));
    assert_false(mx_self_has_addr(&self, &z6));
}

/* Formats attempts as "host=addr host=addr". */
static const char *attempts_str(const struct mx_attempt *at, size_t n, char *buf, size_t sz)
{
    size_t k = 0;
    char a[INET6_ADDRSTRLEN];
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(buf + k, sz - k, "%s%s=%s", i ? " " : "", at[i].host,
                              addr_str(&at[i].addr, a, sizeof(a)));
    return buf;
}

static void test_attempts_flatten(void **state)
{
    (void)state;
    struct mx_host plan[MAXH];
    size_t n = parse_hosts("a.test:10 b.test:10 c.test:20 d.test:30", plan);
    struct sockaddr_storage aa[] = {sa4("192.0.2.1"), sa6("2001:db8::1")};
    struct sockaddr_storage ca[] = {sa4("192.0.2.3")};
    struct sockaddr_storage da[] = {sa4("192.0.2.4")};
    plan[0].addrs = aa;
    plan[0].naddrs = 2;
    plan[1].err = HF_EDNS; /* b.test has no address: skipped */
    plan[2].addrs = ca;
    plan[2].naddrs = 1;
    plan[3].addrs = da;
    plan[3].naddrs = 1;
    struct mx_attempt at[8];
    size_t nat;
    char buf[512];

    assert_int_equal(mx_attempts(plan, n, NULL, at, 8, &nat), 0);
    assert_string_equal(attempts_str(at, nat, buf, sizeof(buf)),
                        "a.test=192.0.2.1 a.test=2001:db8::1 c.test=192.0.2.3 d.test=192.0.2.4");
    assert_int_equal(at[2].pref, 20);

    /* cap limits the run */
    assert_int_equal(mx_attempts(plan, n, NULL, at, 3, &nat), 0);
    assert_int_equal(nat, 3);
    assert_int_equal(mx_attempts(plan, n, NULL, at, 0, &nat), -EINVAL);

    /* c.test resolves to us: c and d go, a stays. */
    struct sockaddr_storage mine[] = {sa4("192.0.2.3")};
    struct mx_self self = {NULL, 0, mine, 1};
    assert_int_equal(mx_attempts(plan, n, &self, at, 8, &nat), 0);
    assert_string_equal(attempts_str(at, nat, buf, sizeof(buf)),
                        "a.test=192.0.2.1 a.test=2001:db8::1");

    /* a.test is us by address: the best MX is us. */
    struct sockaddr_storage mine2[] = {sa6("2001:db8::1")};
    struct mx_self self2 = {NULL, 0, mine2, 1};
    assert_int_equal(mx_attempts(plan, n, &self2, at, 8, &nat), -ELOOP);
    assert_int_equal(nat, 0);
}

static void test_attempts_errors(void **state)
{
    (void)state;
    struct mx_host plan[MAXH];
    struct mx_attempt at[4];
    size_t nat;
    size_t n = parse_hosts("a.test:10 b.test:20", plan);

    plan[0].err = HF_EDNS;
    plan[1].err = -ENOENT;
    assert_int_equal(mx_attempts(plan, n, NULL, at, 4, &nat), HF_EDNS);
    plan[1].err = HF_EDNSTEMP; /* one temporary failure: try again later */
    assert_int_equal(mx_attempts(plan, n, NULL, at, 4, &nat), HF_EDNSTEMP);
    assert_int_equal(nat, 0);

    n = parse_hosts(".:0", plan);
    assert_int_equal(mx_attempts(plan, n, NULL, at, 4, &nat), HF_ENULLMX);
    assert_int_equal(mx_attempts(plan, 0, NULL, at, 4, &nat), HF_EDNS);
}

/* mx_hosts_merge and mx_hosts_keep_best: what the resolver does with a raw MX answer. */
static void test_merge_keep_table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t max;
        const char *merged; /* names after the merge */
        const char *prefs;  /* their preferences after the merge, "10 20" */
        const char *kept;   /* names after keep_best(max) */
    } cases[] = {
        {"a.test:10", 4, "a.test", "10", "a.test"},
        /* a duplicate keeps its first place and the best preference */
        {"a.test:20 b.test:10 a.test:5", 4, "a.test b.test", "5 10", "a.test b.test"},
        {"A.Test:20 a.test.:30", 4, "a.test", "20", "a.test"},
        {"b.test:10 a.test:10 b.test:10", 4, "b.test a.test", "10 10", "b.test a.test"},
        /* over the bound: sorted by preference, ties in published order, head kept */
        {"c.test:30 a.test:10 d.test:10 b.test:20", 2, "c.test a.test d.test b.test", "30 10 10 20",
         "a.test d.test"},
        {"c.test:30 a.test:10 b.test:20", 3, "c.test a.test b.test", "30 10 20",
         "c.test a.test b.test"},
        {"x.test:5 y.test:5 z.test:5", 1, "x.test y.test z.test", "5 5 5", "x.test"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mx_host h[MAXH];
        char buf[512], pb[128];
        size_t n = mx_hosts_merge(h, parse_hosts(cases[i].in, h));
        assert_string_equal(names(h, n, buf, sizeof(buf)), cases[i].merged);
        size_t k = 0;
        pb[0] = '\0';
        for (size_t j = 0; j < n; j++)
            k += (size_t)snprintf(pb + k, sizeof(pb) - k, "%s%u", j ? " " : "", h[j].pref);
        assert_string_equal(pb, cases[i].prefs);
        size_t kept = mx_hosts_keep_best(h, n, cases[i].max);
        assert_int_equal(kept, n < cases[i].max ? n : cases[i].max);
        assert_string_equal(names(h, kept, buf, sizeof(buf)), cases[i].kept);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_table),           cmocka_unit_test(test_plan_shuffles_ties),
        cmocka_unit_test(test_plan_self_by_address), cmocka_unit_test(test_host_set),
        cmocka_unit_test(test_self_predicates),      cmocka_unit_test(test_attempts_flatten),
        cmocka_unit_test(test_attempts_errors),      cmocka_unit_test(test_merge_keep_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
