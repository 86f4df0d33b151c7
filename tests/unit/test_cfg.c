/* Unit tests for cfg.c: good files, every kind of bad line with its line number, defaults,
 * section rules, and README's reference table against the key table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "hf_err.h"

static int parse(const char *text, struct cfg *c, struct cfg_errors *e)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(cfg_init(c), 0);
    return cfg_parse(text, strlen(text), "/etc/t/relayd.conf", c, e);
}

static void test_defaults(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_errors e;
    assert_int_equal(parse("", &c, &e), 0);
    assert_int_equal(e.n, 0);
    assert_string_equal(c.listen, "127.0.0.1:25");
    assert_int_equal(c.max_message_size, 10 * 1024 * 1024);
    assert_int_equal(c.max_recipients, 100);
    assert_int_equal(c.timeout_command, 300);
    assert_string_equal(c.bare_lf, "reject");
    assert_true(c.etrn_enable);
    assert_int_equal(c.smtp_port, 25);
    cfg_free(&c);
    cfg_errors_free(&e);
}

static void test_good_file(void **state)
{
    (void)state;
    static const char text[] = "# comment\n"
                               "hostname = relay.example.test\n"
                               "listen = 127.0.0.1:2525 [::1]:2525\n"
                               "queue_dir = ../var/queue\n"
                               "max_message_size = 20M\n"
                               "timeout_data = 2m\n"
                               "bare_lf = normalise\n"
                               "\n"
                               "[domain Branch.Test]\n"
                               "recipients = branch.rcpts\n"
                               "[domain backup.test]\n"
                               "subdomains = yes\n"
                               "next_hop = [127.0.0.2]:2526\n"
                               "[group offices]\n"
                               "domains = branch.test backup.test\n"
                               "[relay r1]\n"
                               "host = relay.example.test\n"
                               "domains = branch.test\n";
    struct cfg c;
    struct cfg_errors e;
    int rc = parse(text, &c, &e);
    for (size_t i = 0; i < e.n; i++)
        fprintf(stderr, "%d: %s\n", e.v[i].line, e.v[i].msg);
    assert_int_equal(rc, 0);
    assert_string_equal(c.hostname, "relay.example.test");
    assert_string_equal(c.queue_dir, "/etc/t/../var/queue");
    assert_int_equal(c.max_message_size, 20 * 1024 * 1024);
    assert_int_equal(c.timeout_data, 120);
    assert_int_equal(c.ndomains, 2);
    assert_string_equal(c.domains[0].name, "branch.test");
    assert_string_equal(c.domains[0].recipients, "/etc/t/branch.rcpts");
    assert_false(c.domains[0].subdomains);
    assert_string_equal(c.domains[0].tls, "may");
    assert_true(c.domains[1].subdomains);
    assert_string_equal(c.domains[1].next_hop, "[127.0.0.2]:2526");
    assert_int_equal(c.ngroups, 1);
    assert_int_equal(c.nrelays, 1);
    assert_int_equal(c.relays[0].port, 0); /* unset: fetchd picks 25 or 366 by mode */
    assert_string_equal(c.relays[0].mode, "etrn");
    assert_ptr_equal(cfg_find_domain(&c, "BRANCH.test"), &c.domains[0]);
    assert_null(cfg_find_domain(&c, "sub.branch.test"));
    assert_ptr_equal(cfg_find_domain(&c, "a.b.backup.test"), &c.domains[1]);
    assert_null(cfg_find_domain(&c, "xbackup.test"));
    cfg_free(&c);
    cfg_errors_free(&e);
}

struct bad_case {
    const char *text;
    int line;          /* line the error must name */
    const char *words; /* a fragment the message must contain */
};

static const struct bad_case bad_cases[] = {
    {"nosuchkey = 1\n", 1, "unknown key 'nosuchkey'"},
    {"\n\nmax_recipients = lots\n", 3, "whole number"},
    {"max_recipients = 0\n", 1, "between 1 and 100000"},
    {"max_message_size = 10X\n", 1, "K, M or G"},
    {"timeout_command = 5y\n", 1, "s, m, h or d"},
    {"bare_lf = maybe\n", 1, "reject|normalise"},
    {"etrn = perhaps\n", 1, "yes or no"},
    {"just some words\n", 1, "key = value"},
    {"[domain]\n", 1, "exactly one name"},
    {"[domain a b]\n", 1, "exactly one name"},
    {"[zone x.test]\n", 1, "unknown section type"},
    {"[domain bad_domain!]\n", 1, "invalid domain"},
    {"[domain a.test\n", 1, "[type name]"},
    {"[domain a.test]\n[domain A.test]\n", 2, "already defined at line 1"},
    {"subdomains = yes\n", 1, "belongs in a [domain] section"},
    {"[domain a.test]\nlisten = 1.2.3.4:25\n", 2, "belongs at the top"},
    {"[domain a.test]\n[group g]\ndomains = b.test\n", 2, "not a configured [domain]"},
    {"[group g]\ndomains =\n", 1, "at least one domain"},
    {"max_recipients =\n", 1, "needs a value"},
    {"[relay r]\nhost = h\nport = 70000\ndomains = a.test\n", 3, "between 1 and 65535"},
};

static void test_bad_lines(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct cfg c;
        struct cfg_errors e;
        int rc = parse(bad_cases[i].text, &c, &e);
        if (rc != HF_ECONFIG || e.n < 1 || e.v[0].line != bad_cases[i].line ||
            !strstr(e.v[0].msg, bad_cases[i].words)) {
            fprintf(stderr, "case %zu (%s): rc=%d n=%zu line=%d msg=%s\n", i, bad_cases[i].text, rc,
                    e.n, e.n ? e.v[0].line : -1, e.n ? e.v[0].msg : "");
            fail();
        }
        assert_string_equal(e.v[0].file, "/etc/t/relayd.conf");
        cfg_free(&c);
        cfg_errors_free(&e);
    }
}

static void test_all_errors_reported(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_errors e;
    int rc =
        parse("a = 1\nmax_recipients = x\n\nbare_lf = no\nlisten = 127.0.0.1:25\nb=2\n", &c, &e);
    assert_int_equal(rc, HF_ECONFIG);
    assert_int_equal(e.n, 4);
    assert_int_equal(e.v[0].line, 1);
    assert_int_equal(e.v[1].line, 2);
    assert_int_equal(e.v[2].line, 4);
    assert_int_equal(e.v[3].line, 6);
    assert_string_equal(c.listen, "127.0.0.1:25"); /* good lines still applied */
    cfg_free(&c);
    cfg_errors_free(&e);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct cfg c;
    struct cfg_errors e = {0};
    assert_int_equal(cfg_load("/nonexistent/holdfast.conf", &c, &e), HF_ECONFIG);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.v[0].line, 0);
    assert_non_null(strstr(e.v[0].msg, "cannot read"));
    cfg_free(&c);
    cfg_errors_free(&e);
}

static void test_shipped_config(void **state)
{
    (void)state;
    const char *src = getenv("HF_SOURCE_DIR");
    if (!src)
        skip();
    char path[1024];
    snprintf(path, sizeof(path), "%s/conf/relayd.conf", src);
    struct cfg c;
    struct cfg_errors e = {0};
    int rc = cfg_load(path, &c, &e);
    for (size_t i = 0; i < e.n; i++)
        fprintf(stderr, "%s:%d: %s\n", e.v[i].file, e.v[i].line, e.v[i].msg);
    assert_int_equal(rc, 0);
    assert_string_equal(c.listen, "127.0.0.1:2525");
    assert_non_null(cfg_find_domain(&c, "branch.test"));
    assert_non_null(cfg_find_domain(&c, "backup.test"));
    cfg_free(&c);
    cfg_errors_free(&e);
}

/* README's configuration reference must be exactly the table the key table produces. */
static void test_readme_matches_table(void **state)
{
    (void)state;
    const char *src = getenv("HF_SOURCE_DIR");
    if (!src)
        skip();
    char path[1024];
    snprintf(path, sizeof(path), "%s/README.md", src);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char readme[262144];
    size_t n = fread(readme, 1, sizeof(readme) - 1, f);
    fclose(f);
    readme[n] = '\0';
    static char table[65536];
    int tl = cfg_reference_md(table, sizeof(table));
    assert_true(tl > 0);
    const char *begin = strstr(readme, "<!-- config-reference:begin -->\n");
    const char *end = strstr(readme, "<!-- config-reference:end -->");
    assert_non_null(begin);
    assert_non_null(end);
    begin += strlen("<!-- config-reference:begin -->\n");
    if ((size_t)(end - begin) != (size_t)tl || memcmp(begin, table, (size_t)tl) != 0) {
        fprintf(stderr, "README.md's configuration reference differs from the key table; "
                        "regenerate it with: build/bin/relayd --config-reference\n");
        fail();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_shipped_config),
        cmocka_unit_test(test_readme_matches_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
