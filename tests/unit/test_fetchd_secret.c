/* Unit tests for fetchd's password file (fetchd/secret.c): the first line without its line
 * end; a file open to group or others refused with a sentence naming its mode; empty, too
 * long, NUL-carrying, missing files and directories refused, and nothing left in out. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "secret.h"

struct secret_case {
    const char *content;
    size_t len; /* 0: strlen(content) */
    mode_t mode;
    int rc;
    const char *want; /* the password, or part of why */
};

static const struct secret_case cases[] = {
    /* { file content, length, mode, rc, password or reason } */
    {"hunter2\n", 0, 0600, 0, "hunter2"},
    {"hunter2\r\nsecond line\n", 0, 0400, 0, "hunter2"},
    {"no line end", 0, 0600, 0, "no line end"},
    {"  spaces kept  \n", 0, 0600, 0, "  spaces kept  "},
    {"hunter2\n", 0, 0644, -EPERM, "mode 0644 gives group or others access"},
    {"hunter2\n", 0, 0640, -EPERM, "chmod 600"},
    {"hunter2\n", 0, 0602, -EPERM, "mode 0602"},
    {"\nsecond line\n", 0, 0600, -EINVAL, "empty"},
    {"", 0, 0600, -EINVAL, "empty"},
    {"a\0b\n", 4, 0600, -EINVAL, "NUL"},
};

static void test_cases(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/hf-secret-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char path[256], out[SECRET_BUF], why[256];
    snprintf(path, sizeof(path), "%s/pw", dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct secret_case *k = &cases[i];
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        size_t len = k->len ? k->len : strlen(k->content);
        assert_int_equal(fwrite(k->content, 1, len, f), len);
        fclose(f);
        assert_int_equal(chmod(path, k->mode), 0);
        int rc = secret_load(path, out, sizeof(out), why, sizeof(why));
        if (rc != k->rc)
            fail_msg("case %zu: rc %d, want %d (%s)", i, rc, k->rc, why);
        if (rc == 0) {
            assert_string_equal(out, k->want);
        } else {
            assert_non_null(strstr(why, k->want));
            assert_int_equal(out[0], '\0');
        }
        unlink(path);
    }

    /* 255 octets fit (RFC 4616); 256 do not. */
    char longpw[SECRET_MAX + 3];
    for (size_t n = SECRET_MAX; n <= SECRET_MAX + 1; n++) {
        memset(longpw, 'p', n);
        longpw[n] = '\n';
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(longpw, 1, n + 1, f), n + 1);
        fclose(f);
        assert_int_equal(chmod(path, 0600), 0);
        int rc = secret_load(path, out, sizeof(out), why, sizeof(why));
        assert_int_equal(rc, n == SECRET_MAX ? 0 : -EINVAL);
        if (rc == 0)
            assert_int_equal(strlen(out), SECRET_MAX);
        unlink(path);
    }

    /* Missing file, a directory, a symbolic link (not followed). */
    assert_int_equal(secret_load(path, out, sizeof(out), why, sizeof(why)), -ENOENT);
    assert_non_null(strstr(why, "cannot open"));
    assert_int_equal(chmod(dir, 0700), 0);
    int rc = secret_load(dir, out, sizeof(out), why, sizeof(why));
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(why, "not a regular file"));
    char link[300];
    snprintf(link, sizeof(link), "%s/link", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("hunter2\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(secret_load(link, out, sizeof(out), why, sizeof(why)), -ELOOP);
    unlink(link);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
