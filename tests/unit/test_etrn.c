/* Unit tests for etrn.c: argument syntax, domain matching on label boundaries, networks,
 * rate limits and the exact RFC 1985 reply for every situation. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "etrn.h"
#include "hf_err.h"

struct parse_case {
    const char *arg;
    int rc;
    enum etrn_kind kind;
    const char *name;
};

static const struct parse_case parse_cases[] = {
    {"branch.test", 0, ETRN_DOMAIN, "branch.test"},
    {"Branch.TEST", 0, ETRN_DOMAIN, "branch.test"},
    {"@branch.test", 0, ETRN_SUBTREE, "branch.test"},
    {"#offices", 0, ETRN_GROUP, "offices"},
    {"", HF_ESYNTAX, 0, NULL},            /* empty */
    {"@", HF_ESYNTAX, 0, NULL},           /* @ alone */
    {"#", HF_ESYNTAX, 0, NULL},           /* # alone */
    {"bad_domain!", HF_ESYNTAX, 0, NULL}, /* not a domain */
    {"a..b", HF_ESYNTAX, 0, NULL},        /* empty label */
    {"#off ices", HF_ESYNTAX, 0, NULL},   /* space in group */
    {"@@x.test", HF_ESYNTAX, 0, NULL},
};

static void test_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        struct etrn_req r;
        int rc = etrn_parse(parse_cases[i].arg, &r);
        if (rc != parse_cases[i].rc) {
            fprintf(stderr, "case '%s': rc %d\n", parse_cases[i].arg, rc);
            fail();
        }
        if (rc == 0) {
            assert_int_equal(r.kind, parse_cases[i].kind);
            assert_string_equal(r.name, parse_cases[i].name);
        }
    }
}

static void count_cb(const struct cfg_domain *d, const char *name, void *arg)
{
    (void)d;
    char *out = arg;
    strcat(out, name);
    strcat(out, ";");
}

static void test_match(void **state)
{
    (void)state;
    static const char text[] = "[domain example.com]\n"
                               "[domain badexample.com]\n"
                               "[domain sub.example.com]\n"
                               "[domain backup.test]\nsubdomains = yes\n"
                               "[group g]\ndomains = example.com backup.test\n";
    struct cfg c;
    struct cfg_errors e = {0};
    cfg_init(&c);
    assert_int_equal(cfg_parse(text, strlen(text), "t.conf", &c, &e), 0);
    struct {
        const char *arg;
        size_t n;
        const char *names;
    } cases[] = {
        {"example.com", 1, "example.com;"},
        {"@example.com", 2, "example.com;sub.example.com;"}, /* never badexample.com */
        {"badexample.com", 1, "badexample.com;"},
        {"x.example.com", 0, ""},                   /* no subdomains=yes on example.com */
        {"a.b.backup.test", 1, "a.b.backup.test;"}, /* inside subdomains=yes */
        {"@backup.test", 1, "backup.test;"},
        {"other.test", 0, ""},
        {"#g", 2, "example.com;backup.test;"},
        {"#nope", 0, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct etrn_req r;
        assert_int_equal(etrn_parse(cases[i].arg, &r), 0);
        char names[512] = "";
        size_t n = etrn_match(&c, &r, count_cb, names);
        if (n != cases[i].n || strcmp(names, cases[i].names) != 0) {
            fprintf(stderr, "case %s: n=%zu names=%s\n", cases[i].arg, n, names);
            fail();
        }
    }
    cfg_free(&c);
    cfg_errors_free(&e);
}

static struct sockaddr_storage sa(const char *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;
    if (inet_pton(AF_INET, s, &in->sin_addr) == 1)
        in->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1)
        in6->sin6_family = AF_INET6;
    return ss;
}

static void test_nets(void **state)
{
    (void)state;
    struct etrn_nets n;
    size_t bad = 99;
    assert_int_equal(etrn_nets_parse("127.0.0.0/8, 192.0.2.7 2001:db8::/32", &n, &bad), 0);
    struct sockaddr_storage a;
    a = sa("127.1.2.3");
    assert_true(etrn_nets_match(&n, &a));
    a = sa("192.0.2.7");
    assert_true(etrn_nets_match(&n, &a));
    a = sa("192.0.2.8");
    assert_false(etrn_nets_match(&n, &a));
    a = sa("2001:db8:1::5");
    assert_true(etrn_nets_match(&n, &a));
    a = sa("2001:db9::5");
    assert_false(etrn_nets_match(&n, &a));
    a = sa("::ffff:127.0.0.1"); /* v4-mapped matches the v4 network */
    assert_true(etrn_nets_match(&n, &a));
    etrn_nets_free(&n);
    assert_int_equal(etrn_nets_parse("10.0.0.0/8 nonsense", &n, &bad), -EINVAL);
    assert_int_equal(bad, 1);
    assert_int_equal(etrn_nets_parse("10.0.0.0/33", &n, &bad), -EINVAL);
    assert_int_equal(etrn_nets_parse("10.0.0.0/", &n, &bad), -EINVAL);
    assert_int_equal(etrn_nets_parse("::/129", &n, &bad), -EINVAL);
}

struct decide_case {
    const char *arg;
    bool served;
    struct etrn_ctx ctx;
    int code;
    bool start;
    const char *text;
};

#define OKCTX(trusted, msgs)                                                                       \
    {                                                                                              \
        true, true, trusted, true, true, false, false, msgs                                        \
    }

static const struct decide_case decide_cases[] = {
    {"branch.test", true, OKCTX(true, 0), 251, false,
     "OK, no messages waiting for node branch.test"},
    {"branch.test", true, OKCTX(false, 0), 250, false, "OK, queuing for node branch.test started"},
    {"branch.test", true, OKCTX(true, 3), 253, true,
     "OK, 3 pending messages for node branch.test started"},
    {"branch.test", true, OKCTX(true, 1), 253, true,
     "OK, 1 pending message for node branch.test started"},
    {"branch.test", true, OKCTX(false, 3), 250, true, "OK, queuing for node branch.test started"},
    {"@branch.test", true, OKCTX(true, 2), 253, true,
     "OK, 2 pending messages for node @branch.test started"},
    {"other.test", false, OKCTX(true, 0), 459, false,
     "Node other.test not allowed: not a domain this relay serves"},
    {"#nope", false, OKCTX(true, 0), 459, false,
     "Node #nope not allowed: no such queue on this relay"},
    {"branch.test",
     true,
     {false, true, false, true, true, false, false, 3},
     459,
     false,
     "Node branch.test not allowed: ETRN is not permitted from your address"},
    {"branch.test",
     true,
     {true, false, false, true, true, false, false, 3},
     459,
     false,
     "Node branch.test not allowed: authenticate first (AUTH)"},
    {"branch.test",
     true,
     {true, true, true, false, true, false, false, 3},
     458,
     false,
     "Unable to queue messages for node branch.test: too many ETRN requests from your address, try "
     "again later"},
    {"branch.test",
     true,
     {true, true, true, true, false, false, false, 3},
     458,
     false,
     "Unable to queue messages for node branch.test: too many queue runs for it recently, try "
     "again later"},
    {"branch.test",
     true,
     {true, true, true, true, true, true, false, 3},
     458,
     false,
     "Unable to queue messages for node branch.test: a queue run for it is already in progress"},
    {"branch.test",
     true,
     {true, true, true, true, true, false, true, 3},
     458,
     false,
     "Unable to queue messages for node branch.test: the operator holds this queue"},
};

static void test_decide(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
        const struct decide_case *dc = &decide_cases[i];
        struct etrn_req r;
        assert_int_equal(etrn_parse(dc->arg, &r), 0);
        struct etrn_reply out;
        etrn_decide(&r, dc->served, &dc->ctx, &out);
        if (out.code != dc->code || out.start != dc->start || strcmp(out.text, dc->text) != 0) {
            fprintf(stderr, "case %zu: %d %d '%s'\n", i, out.code, out.start, out.text);
            fail();
        }
        assert_int_equal(out.enh[0] - '0', dc->code / 100);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_nets),
        cmocka_unit_test(test_decide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
