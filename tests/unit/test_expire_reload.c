/* expire_policy_changed: which configuration changes make a reload move the due index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "expire_reload.h"

static void load(struct cfg *c, const char *text)
{
    struct cfg_errors e = {0};
    assert_int_equal(cfg_init(c), 0);
    assert_int_equal(cfg_parse(text, strlen(text), "/etc/t/relayd.conf", c, &e), 0);
    assert_int_equal(e.n, 0);
    cfg_errors_free(&e);
}

static bool changed(const char *a, const char *b)
{
    struct cfg x, y;
    load(&x, a);
    load(&y, b);
    bool r = expire_policy_changed(&x, &y);
    cfg_free(&x);
    cfg_free(&y);
    return r;
}

#define BASE "[domain a.test]\nhold = yes\nmax_queue_lifetime = 28d\n[domain b.test]\n"

static void test_same(void **state)
{
    (void)state;
    assert_false(changed(BASE, BASE));
    /* Keys the due function does not read move nothing. */
    assert_false(changed(BASE, "max_recipients = 7\n" BASE));
    assert_false(changed(BASE, "log_level = debug\n" BASE));
}

static void test_global_keys(void **state)
{
    (void)state;
    assert_true(changed(BASE, "max_queue_lifetime = 1d\n" BASE));
    assert_true(changed(BASE, "delay_warning_time = 0\n" BASE));
    assert_true(changed(BASE, "retry_interval = 5\n" BASE));
    /* The default written out is no change. */
    assert_false(changed(BASE, "max_queue_lifetime = 5d\n" BASE));
}

static void test_domain_keys(void **state)
{
    (void)state;
    assert_true(changed(BASE, "[domain a.test]\nhold = yes\nmax_queue_lifetime = 5d\n"
                              "[domain b.test]\n"));
    assert_true(changed(BASE, "[domain a.test]\nmax_queue_lifetime = 28d\n[domain b.test]\n"));
    assert_true(changed(BASE, BASE "delay_warning_time = 1h\n"));
    /* A domain added or removed. */
    assert_true(changed(BASE, BASE "[domain c.test]\n"));
    assert_true(changed(BASE, "[domain a.test]\nhold = yes\nmax_queue_lifetime = 28d\n"));
    /* Order of sections is no change. */
    assert_false(changed(BASE, "[domain b.test]\n[domain a.test]\nhold = yes\n"
                               "max_queue_lifetime = 28d\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_global_keys),
        cmocka_unit_test(test_domain_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
