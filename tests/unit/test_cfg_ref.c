/* Unit tests for cfg_ref.c: the read-at-start key list names real keys only (a renamed key
 * would otherwise silently become reloadable), the man page entries escape roff, and both
 * writers refuse a buffer that is too small instead of cutting an entry. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"

static const struct cfg_key *find(enum cfg_section sec, const char *name)
{
    for (size_t i = 0; i < cfg_nkeys; i++)
        if (cfg_keys[i].section == sec && strcmp(cfg_keys[i].name, name) == 0)
            return &cfg_keys[i];
    return NULL;
}

static void test_restart_keys(void **state)
{
    (void)state;
    static const struct {
        enum cfg_section sec;
        const char *name;
        bool restart;
    } cases[] = {
        {CFG_SEC_GLOBAL, "listen", true},
        {CFG_SEC_GLOBAL, "listen_tls", true},
        {CFG_SEC_GLOBAL, "listen_odmr", true},
        {CFG_SEC_GLOBAL, "listen_odmr_tls", true},
        {CFG_SEC_GLOBAL, "cram_file", false},
        {CFG_SEC_GLOBAL, "timeout_atrn", false},
        {CFG_SEC_GLOBAL, "queue_dir", true},
        {CFG_SEC_GLOBAL, "control_socket", true},
        {CFG_SEC_GLOBAL, "user", true},
        {CFG_SEC_GLOBAL, "group", true},
        {CFG_SEC_GLOBAL, "allow_root", true},
        {CFG_SEC_GLOBAL, "dns_servers", true},
        {CFG_SEC_GLOBAL, "max_recipients", false},
        {CFG_SEC_GLOBAL, "tls_cert", false},
        {CFG_SEC_GLOBAL, "auth_file", false},
        {CFG_SEC_GLOBAL, "etrn_allow", false},
        {CFG_SEC_DOMAIN, "etrn_allow", false},
        {CFG_SEC_DOMAIN, "recipients", false},
        {CFG_SEC_RELAY, "host", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct cfg_key *k = find(cases[i].sec, cases[i].name);
        assert_non_null(k);
        assert_int_equal(cfg_key_is_restart(k), cases[i].restart);
    }
    /* Every key the list names exists: count them through the table. */
    size_t n = 0;
    for (size_t i = 0; i < cfg_nkeys; i++)
        n += cfg_key_is_restart(&cfg_keys[i]);
    assert_int_equal(n, 21);
}

static void test_man_entries(void **state)
{
    (void)state;
    static char buf[1 << 17];
    int n = cfg_reference_man(CFG_SEC_GLOBAL, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    /* One .TP per global key, each with its name in bold and escaped minus signs. */
    size_t tp = 0, keys = 0;
    for (const char *p = buf; (p = strstr(p, ".TP\n.B ")) != NULL; p++)
        tp++;
    for (size_t i = 0; i < cfg_nkeys; i++)
        keys += cfg_keys[i].section == CFG_SEC_GLOBAL;
    assert_int_equal(tp, keys);
    assert_non_null(strstr(buf, ".TP\n.B max_message_size\n"));
    assert_non_null(strstr(buf, "Default: \\fB127.0.0.1:25\\fR"));
    assert_non_null(strstr(buf, "space\\-separated"));
    assert_non_null(strstr(buf, "read at start only.\nDefault: \\fB/var/spool/holdfast\\fR"));
    /* No line starts with a stray dot: only the .TP and .B requests we write. */
    assert_true(strncmp(buf, ".TP\n", 4) == 0);
    for (const char *p = buf; *p; p++)
        if (*p == '\n' && p[1] == '.')
            assert_true(strncmp(p + 1, ".TP\n", 4) == 0 || strncmp(p + 1, ".B ", 3) == 0);
    /* Other sections are left out. */
    assert_null(strstr(buf, ".B subdomains\n"));
    n = cfg_reference_man(CFG_SEC_DOMAIN, buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, ".B subdomains\n"));
    assert_non_null(strstr(buf, "one of none|may|encrypt|verify|dane"));
}

static void test_small_buffers(void **state)
{
    (void)state;
    static char buf[1 << 17];
    int full = cfg_reference_md(buf, sizeof(buf));
    assert_true(full > 0);
    static const size_t sizes[] = {0, 1, 10, 100, 1000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_int_equal(cfg_reference_md(buf, sizes[i]), -ENOSPC);
        assert_int_equal(cfg_reference_man(CFG_SEC_GLOBAL, buf, sizes[i]), -ENOSPC);
    }
    assert_int_equal(cfg_reference_md(buf, (size_t)full), -ENOSPC); /* no room for NUL */
    assert_int_equal(cfg_reference_md(buf, (size_t)full + 1), full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_keys),
        cmocka_unit_test(test_man_entries),
        cmocka_unit_test(test_small_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
