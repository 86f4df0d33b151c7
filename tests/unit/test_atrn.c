/* Unit tests for atrn.c: which domains an ATRN releases for a user (RFC 2645 4.2), and
 * cram_store.c: the CRAM-MD5 secrets file and what a bad line is. */
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

#include "atrn.h"
#include "cram_store.h"
#include "hf_err.h"

static bool serves_test(void *arg, const char *d)
{
    (void)arg;
    return strcmp(d, "branch.test") == 0 || strcmp(d, "second.test") == 0 ||
           strcmp(d, "other.test") == 0;
}

static char *doms_branch[] = {"branch.test", "second.test"};
static const struct auth_user U_BRANCH = {.name = "branch", .domains = doms_branch, .ndomains = 2};
static const struct auth_user U_ALL = {.name = "ops", .all_domains = true};
static const struct auth_user U_NONE = {.name = "submit"};

static void test_no_argument(void **state)
{
    (void)state;
    struct atrn_ask a;
    char why[64];
    const char *queued[] = {"other.test", "branch.test", "notours.test"};
    assert_int_equal(atrn_ask_domains(&U_BRANCH, "", serves_test, NULL, queued, 3, &a, why,
                                      sizeof(why)),
                     0);
    assert_int_equal(a.n, 2);
    assert_false(a.named);
    assert_string_equal(a.domains[0], "branch.test");
    assert_string_equal(a.domains[1], "second.test");
    /* "*": every served domain with mail waiting, never one we do not serve. */
    assert_int_equal(atrn_ask_domains(&U_ALL, "", serves_test, NULL, queued, 3, &a, why,
                                      sizeof(why)),
                     0);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.domains[0], "other.test");
    assert_string_equal(a.domains[1], "branch.test");
    /* No domains, or no auth_file entry: nothing (the caller answers 453). */
    assert_int_equal(atrn_ask_domains(&U_NONE, "", serves_test, NULL, queued, 3, &a, why,
                                      sizeof(why)),
                     0);
    assert_int_equal(a.n, 0);
    assert_int_equal(atrn_ask_domains(NULL, "", serves_test, NULL, queued, 3, &a, why,
                                      sizeof(why)),
                     0);
    assert_int_equal(a.n, 0);
}

static void test_named(void **state)
{
    (void)state;
    struct atrn_ask a;
    char why[64];
    /* Case and a trailing dot do not make another domain; repeats count once. */
    assert_int_equal(atrn_ask_domains(&U_BRANCH, "Branch.TEST,second.test.,branch.test",
                                      serves_test, NULL, NULL, 0, &a, why, sizeof(why)),
                     0);
    assert_true(a.named);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.domains[0], "branch.test");
    assert_string_equal(a.domains[1], "second.test");
    /* One that is not the user's refuses the whole request, naming it. */
    assert_int_equal(atrn_ask_domains(&U_BRANCH, "branch.test,other.test", serves_test, NULL,
                                      NULL, 0, &a, why, sizeof(why)),
                     450);
    assert_string_equal(why, "other.test");
    /* "*" may name any served domain, not one we do not serve. */
    assert_int_equal(
        atrn_ask_domains(&U_ALL, "other.test", serves_test, NULL, NULL, 0, &a, why, sizeof(why)),
        0);
    assert_int_equal(atrn_ask_domains(&U_ALL, "notours.test", serves_test, NULL, NULL, 0, &a, why,
                                      sizeof(why)),
                     450);
    assert_string_equal(why, "notours.test");
    assert_int_equal(
        atrn_ask_domains(NULL, "branch.test", serves_test, NULL, NULL, 0, &a, why, sizeof(why)),
        450);
}

static void test_limits(void **state)
{
    (void)state;
    struct atrn_ask a;
    char why[64];
    /* ATRN_DOMAINS_MAX distinct names pass, one more is 501. */
    static char arg[ATRN_DOMAINS_MAX * 12 + 16];
    size_t o = 0;
    for (int i = 0; i < ATRN_DOMAINS_MAX; i++)
        o += (size_t)snprintf(arg + o, sizeof(arg) - o, "%sd%d.test", i ? "," : "", i);
    assert_int_equal(atrn_ask_domains(&U_ALL, arg, serves_test, NULL, NULL, 0, &a, why,
                                      sizeof(why)),
                     450); /* all accepted as names; the first is not served */
    snprintf(arg + o, sizeof(arg) - o, ",extra.test");
    assert_int_equal(atrn_ask_domains(&U_ALL, arg, serves_test, NULL, NULL, 0, &a, why,
                                      sizeof(why)),
                     501);
    assert_int_equal(atrn_ask_domains(&U_BRANCH, "branch.test,", serves_test, NULL, NULL, 0, &a,
                                      why, sizeof(why)),
                     501);
    assert_int_equal(
        atrn_ask_domains(&U_BRANCH, ".", serves_test, NULL, NULL, 0, &a, why, sizeof(why)), 501);
}

static void test_cram_store(void **state)
{
    (void)state;
    /* "c2VjcmV0" = "secret", "b3RoZXI=" = "other". */
    static const char text[] = "# comment\n"
                               "\n"
                               "branch:c2VjcmV0\n"
                               "  other:b3RoZXI=  \r\n"
                               "nocolon\n"
                               "bad user:c2VjcmV0\n"
                               "branch:b3RoZXI=\n"
                               "empty:\n"
                               "badb64:c2VjcmV0=\n"
                               "nul:AA==\n";
    struct cram_store cs;
    struct cfg_errors errs = {0};
    assert_int_equal(cram_store_parse(text, strlen(text), "cram", &cs, &errs), HF_ECONFIG);
    assert_int_equal(cs.n, 2);
    const struct cram_entry *e = cram_store_find(&cs, "branch", 6);
    assert_non_null(e);
    assert_string_equal(e->secret, "secret");
    assert_int_equal(e->len, 6);
    assert_int_equal(e->line, 3);
    e = cram_store_find(&cs, "other", 5);
    assert_non_null(e);
    assert_string_equal(e->secret, "other");
    assert_null(cram_store_find(&cs, "branc", 5));
    assert_null(cram_store_find(&cs, "nobody", 6));
    /* Each bad line reported with its number: 5 nocolon, 6 space, 7 twice, 8 empty, 9 bad
     * padding, 10 NUL. */
    assert_int_equal(errs.n, 6);
    static const int lines[] = {5, 6, 7, 8, 9, 10};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(errs.v[i].line, lines[i]);
    cram_store_free(&cs);
    cfg_errors_free(&errs);
}

static void test_cram_file_mode(void **state)
{
    (void)state;
    char path[] = "/tmp/hf-cram-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "u:c2VjcmV0\n", 11), 11);
    close(fd);
    struct cram_store cs;
    struct cfg_errors errs = {0};
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(cram_store_load(path, &cs, &errs), 0);
    assert_int_equal(cs.n, 1);
    cram_store_free(&cs);
    /* Readable by group or others: refused, with the mode in the message. */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(cram_store_load(path, &cs, &errs), HF_ECONFIG);
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.v[0].msg, "0640"));
    cram_store_free(&cs);
    unlink(path);
    assert_int_equal(cram_store_load(path, &cs, &errs), HF_ECONFIG);
    assert_int_equal(errs.n, 2);
    cram_store_free(&cs);
    cfg_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_argument), cmocka_unit_test(test_named),
        cmocka_unit_test(test_limits),      cmocka_unit_test(test_cram_store),
        cmocka_unit_test(test_cram_file_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
