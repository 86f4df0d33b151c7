/* Unit tests for privdrop.c: user and group lookup (names, numbers, unknowns), the ownership
 * rules for what relayd hands to its user (root's or the user's own: taken; a third user's:
 * refused, untouched; a symbolic link: refused), and the control socket directory check
 * (group- or world-writable refused unless sticky). Ownership cases that need chown run
 * only as root. privdrop_apply is irreversible and is tested end to end
 * (tests/e2e/test_ops_privdrop.py). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "privdrop.h"

static void test_resolve(void **state)
{
    (void)state;
    static const struct {
        const char *user, *group;
        int rc;
        long uid, gid; /* -1: not checked */
    } cases[] = {
        {"root", NULL, 0, 0, 0},
        {"root", "", 0, 0, 0},
        {"0", NULL, 0, 0, 0},
        {"nobody", NULL, 0, 65534, -1},
        {"nobody", "0", 0, 65534, 0},
        {"root", "nogroup", 0, 0, 65534},
        {"hf-no-such-user", NULL, -ENOENT, -1, -1},
        {"root", "hf-no-such-group", -ENOENT, -1, -1},
        {"", NULL, -EINVAL, -1, -1},
        {NULL, NULL, -EINVAL, -1, -1},
        {"12x", NULL, -ENOENT, -1, -1}, /* not a number, not a name */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct privdrop p;
        char why[256] = "";
        int rc = privdrop_resolve(cases[i].user, cases[i].group, &p, why, sizeof(why));
        assert_int_equal(rc, cases[i].rc);
        if (rc < 0) {
            assert_true(why[0] != '\0');
            continue;
        }
        if (cases[i].uid >= 0)
            assert_int_equal(p.uid, cases[i].uid);
        if (cases[i].gid >= 0)
            assert_int_equal(p.gid, cases[i].gid);
        assert_true(p.user[0] && p.group[0]);
    }
}

static char tmpl[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpl, sizeof(tmpl), "/tmp/hf-privdrop-XXXXXX");
    assert_non_null(mkdtemp(tmpl));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
    return system(cmd) == 0 ? 0 : -1;
}

static void path(char *buf, size_t sz, const char *name)
{
    snprintf(buf, sz, "%s/%s", tmpl, name);
}

static void test_check_dir(void **state)
{
    (void)state;
    static const struct {
        mode_t mode;
        int rc;
    } cases[] = {
        {0700, 0},      {0755, 0},      {0750, 0},  {0775, -EPERM},
        {0757, -EPERM}, {0777, -EPERM}, {01777, 0}, /* sticky, as /tmp: nobody can replace another's
                                                       socket */
    };
    char dir[128], sock[160];
    path(dir, sizeof(dir), "sockdir");
    snprintf(sock, sizeof(sock), "%s/relayd.sock", dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(chmod(dir, cases[i].mode), 0);
        char why[512] = "";
        assert_int_equal(privdrop_check_dir(NULL, sock, why, sizeof(why)), cases[i].rc);
        if (cases[i].rc)
            assert_non_null(strstr(why, "writable by group or others"));
    }
    /* A directory that is not there: the errno. */
    char why[512];
    assert_int_equal(privdrop_check_dir(NULL, "/nonexistent-dir/x.sock", why, sizeof(why)),
                     -ENOENT);
}

static void test_own(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    struct privdrop p;
    char why[512];
    assert_int_equal(privdrop_resolve("nobody", NULL, &p, why, sizeof(why)), 0);
    char q[128], f[160], other[160], link[160];
    path(q, sizeof(q), "queue");
    snprintf(f, sizeof(f), "%s/data.mdb", q);
    snprintf(other, sizeof(other), "%s/foreign", tmpl);
    snprintf(link, sizeof(link), "%s/link", tmpl);
    assert_int_equal(mkdir(q, 0700), 0);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fclose(fp);
    /* Root's directory and file: handed over. */
    assert_int_equal(privdrop_own(&p, q, true, why, sizeof(why)), 0);
    struct stat st;
    assert_int_equal(stat(q, &st), 0);
    assert_int_equal(st.st_uid, p.uid);
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_uid, p.uid);
    assert_int_equal(st.st_gid, p.gid);
    /* Already the user's: still fine (a second start). */
    assert_int_equal(privdrop_own(&p, q, true, why, sizeof(why)), 0);
    /* A third user's file inside: refused and left as it was. */
    assert_int_equal(chown(f, 1, 1), 0);
    assert_int_equal(privdrop_own(&p, q, true, why, sizeof(why)), -EPERM);
    assert_non_null(strstr(why, "is owned by uid 1"));
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_uid, 1);
    /* A third user's directory: refused. */
    assert_int_equal(mkdir(other, 0700), 0);
    assert_int_equal(chown(other, 1, 1), 0);
    assert_int_equal(privdrop_own(&p, other, false, why, sizeof(why)), -EPERM);
    /* A symbolic link: refused, whatever it points at. */
    assert_int_equal(symlink(q, link), 0);
    assert_int_equal(privdrop_own(&p, link, false, why, sizeof(why)), -EPERM);
    assert_non_null(strstr(why, "symbolic link"));
    /* Missing: the errno. */
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/missing", tmpl);
    assert_int_equal(privdrop_own(&p, missing, false, why, sizeof(why)), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test_setup_teardown(test_check_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
