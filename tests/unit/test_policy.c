/* Unit tests for policy.c: the verdict for every kind of recipient (served domains with and
 * without subdomains = yes, longest match, label boundaries, address literals, relay tricks),
 * recipient lists (local parts and full addresses, case-insensitive, unknown users),
 * recipients files (comments, blank lines, CRLF, bad lines reported as file:line, a missing
 * file named in the error) and policy_add_recipient(). Files live in a mkdtemp() directory
 * that every test removes again. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr.h"
#include "cfg.h"
#include "hf_err.h"
#include "policy.h"

/* ---- fixture: a temporary directory with a configuration and recipients files ---------- */

struct fx {
    char dir[64];
    char *files[8];
    size_t nfiles;
    struct cfg cfg;
    struct cfg_errors errs;
    struct policy *p;
};

static void fx_write(struct fx *f, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
    for (size_t i = 0; i < f->nfiles; i++)
        if (strcmp(f->files[i], path) == 0)
            return; /* rewritten */
    assert_true(f->nfiles < sizeof(f->files) / sizeof(f->files[0]));
    f->files[f->nfiles] = strdup(path);
    assert_non_null(f->files[f->nfiles]);
    f->nfiles++;
}

/* Parses conf (written as relayd.conf in the directory, so relative recipients paths resolve
 * there) and builds the policy. Returns policy_new's result. */
static int fx_build(struct fx *f, const char *conf)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/relayd.conf", f->dir);
    assert_int_equal(cfg_init(&f->cfg), 0);
    int rc = cfg_parse(conf, strlen(conf), path, &f->cfg, &f->errs);
    if (rc != 0)
        cfg_errors_print(&f->errs, stderr, "unexpected config error: ");
    assert_int_equal(rc, 0);
    f->p = NULL;
    return policy_new(&f->cfg, &f->errs, &f->p);
}

/* Frees the policy, the configuration and the errors; the directory stays. */
static void fx_reset(struct fx *f)
{
    policy_free(f->p);
    f->p = NULL;
    cfg_free(&f->cfg);
    cfg_errors_free(&f->errs);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/hf-policy-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* Runs after a failed test too, so the directory never stays behind. */
static int fx_teardown(void **state)
{
    struct fx *f = *state;
    int rc = 0;
    fx_reset(f);
    for (size_t i = 0; i < f->nfiles; i++) {
        if (unlink(f->files[i]) != 0)
            rc = -1;
        free(f->files[i]);
    }
    if (rmdir(f->dir) != 0)
        rc = -1;
    free(f);
    return rc;
}

/* Parses addr and asks the policy; *section receives the matched section name or NULL. */
static enum policy_verdict check(const struct policy *p, const char *addr, const char **section)
{
    struct addr_mailbox mb;
    int rc = addr_parse_mailbox(addr, strlen(addr), true, &mb);
    if (rc != 0)
        fail_msg("addr_parse_mailbox(\"%s\") = %d", addr, rc);
    const struct cfg_domain *d = (const struct cfg_domain *)1; /* must be overwritten */
    enum policy_verdict v = policy_check_rcpt(p, &mb, &d);
    if (v == POLICY_OK || v == POLICY_UNKNOWN_USER)
        assert_non_null(d);
    else
        assert_null(d); /* nothing matched, or a trick that is refused before matching */
    *section = d ? d->name : NULL;
    /* NULL for domain_out is allowed too and gives the same verdict. */
    assert_int_equal(policy_check_rcpt(p, &mb, NULL), v);
    return v;
}

struct rcpt_case {
    const char *addr;
    enum policy_verdict verdict;
    const char *section; /* section that matched, NULL when none */
};

static void run_cases(const struct policy *p, const struct rcpt_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *sec = NULL;
        enum policy_verdict v = check(p, cases[i].addr, &sec);
        if (v != cases[i].verdict)
            fail_msg("case %zu <%s>: verdict %d, expected %d", i, cases[i].addr, (int)v,
                     (int)cases[i].verdict);
        if (cases[i].section == NULL ? sec != NULL
                                     : (sec == NULL || strcmp(sec, cases[i].section) != 0))
            fail_msg("case %zu <%s>: section %s, expected %s", i, cases[i].addr,
                     sec ? sec : "(none)", cases[i].section ? cases[i].section : "(none)");
    }
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char domains_conf[] = "hostname = mx.test\n"
                                   "[domain branch.test]\n"
                                   "[domain backup.test]\n"
                                   "subdomains = yes\n"
                                   "[domain deep.backup.test]\n"
                                   "recipients = deep.rcpts\n"
                                   "[domain Example.COM]\n"
                                   "subdomains = yes\n"
                                   "[domain a.example.com]\n"
                                   "subdomains = yes\n";

/* Domains only; deep.backup.test has a list so the longest match is visible. */
static void test_domains(void **state)
{
    struct fx *f = *state;
    fx_write(f, "deep.rcpts", "only\n");
    assert_int_equal(fx_build(f, domains_conf), 0);
    static const struct rcpt_case cases[] = {
        /* exact domain, any user (no list) */
        {"anyone@branch.test", POLICY_OK, "branch.test"},
        {"x@BRANCH.Test", POLICY_OK, "branch.test"},
        /* branch.test has no subdomains = yes */
        {"x@sub.branch.test", POLICY_RELAY_DENIED, NULL},
        /* label boundaries: a suffix that is not a whole label never matches */
        {"x@badbranch.test", POLICY_RELAY_DENIED, NULL},
        {"x@badbackup.test", POLICY_RELAY_DENIED, NULL},
        {"x@x.badbackup.test", POLICY_RELAY_DENIED, NULL},
        {"x@branch.test.evil.test", POLICY_RELAY_DENIED, NULL},
        {"x@test", POLICY_RELAY_DENIED, NULL},
        {"x@elsewhere.test", POLICY_RELAY_DENIED, NULL},
        /* subdomains = yes */
        {"x@backup.test", POLICY_OK, "backup.test"},
        {"x@a.backup.test", POLICY_OK, "backup.test"},
        {"x@a.b.c.backup.test", POLICY_OK, "backup.test"},
        /* longest match wins: deep.backup.test's own section (and its list) applies */
        {"only@deep.backup.test", POLICY_OK, "deep.backup.test"},
        {"ONLY@deep.backup.test", POLICY_OK, "deep.backup.test"},
        {"other@deep.backup.test", POLICY_UNKNOWN_USER, "deep.backup.test"},
        /* deep.backup.test has no subdomains: its subdomains fall back to backup.test */
        {"other@x.deep.backup.test", POLICY_OK, "backup.test"},
        /* configured name was lower-cased; nested sections with subdomains */
        {"x@example.com", POLICY_OK, "example.com"},
        {"x@b.example.com", POLICY_OK, "example.com"},
        {"x@a.example.com", POLICY_OK, "a.example.com"},
        {"x@z.a.example.com", POLICY_OK, "a.example.com"},
        {"x@za.example.com", POLICY_OK, "example.com"},
        {"x@badexample.com", POLICY_RELAY_DENIED, NULL},
        /* address literals are never ours */
        {"x@[127.0.0.1]", POLICY_RELAY_DENIED, NULL},
        {"x@[IPv6:::1]", POLICY_RELAY_DENIED, NULL},
        {"only@[192.0.2.1]", POLICY_RELAY_DENIED, NULL},
        /* relay tricks in a served domain */
        {"user%elsewhere.test@branch.test", POLICY_RELAY_TRICK, NULL},
        {"elsewhere.test!user@branch.test", POLICY_RELAY_TRICK, NULL},
        {"\"user@elsewhere.test\"@branch.test", POLICY_RELAY_TRICK, NULL},
        {"user%x@a.backup.test", POLICY_RELAY_TRICK, NULL},
        {"only%x@deep.backup.test", POLICY_RELAY_TRICK, NULL},
        /* ... and in a domain we do not serve: plain relay denied */
        {"user%branch.test@elsewhere.test", POLICY_RELAY_DENIED, NULL},
        {"a!b@elsewhere.test", POLICY_RELAY_DENIED, NULL},
    };
    run_cases(f->p, cases, N(cases));

    assert_true(policy_serves(f->p, "branch.test"));
    assert_true(policy_serves(f->p, "Branch.TEST"));
    assert_false(policy_serves(f->p, "sub.branch.test"));
    assert_true(policy_serves(f->p, "sub.backup.test"));
    assert_true(policy_serves(f->p, "x.deep.backup.test"));
    assert_false(policy_serves(f->p, "badbackup.test"));
    assert_false(policy_serves(f->p, "test"));
    assert_false(policy_serves(f->p, ""));
}

/* Recipient lists from files: local parts for the section's own domain, full addresses for
 * any domain the section covers; comments, blank lines, indentation and CRLF. */
static void test_recipient_lists(void **state)
{
    struct fx *f = *state;
    fx_write(f, "branch.rcpts",
             "# valid recipients of branch.test\n"
             "alice\n"
             "\n"
             "  Bob  \t\n"
             "\tcarol\r\n"
             "Dave@Branch.Test\n"
             "   # indented comment\n"
             "erin@other.test\n"
             "last-without-newline");
    fx_write(f, "corp.rcpts",
             "ceo\n"
             "ops@eu.corp.test\n"
             "Sales@DE.Corp.Test\n");
    assert_int_equal(fx_build(f, "[domain branch.test]\n"
                                 "recipients = branch.rcpts\n"
                                 "[domain corp.test]\n"
                                 "subdomains = yes\n"
                                 "recipients = corp.rcpts\n"
                                 "[domain open.test]\n"),
                     0);
    static const struct rcpt_case cases[] = {
        {"alice@branch.test", POLICY_OK, "branch.test"},
        {"ALICE@BRANCH.TEST", POLICY_OK, "branch.test"},
        {"Alice@branch.test", POLICY_OK, "branch.test"},
        {"bob@branch.test", POLICY_OK, "branch.test"},
        {"carol@branch.test", POLICY_OK, "branch.test"}, /* CRLF line */
        {"dave@branch.test", POLICY_OK, "branch.test"},  /* full address entry */
        {"DAVE@branch.TEST", POLICY_OK, "branch.test"},
        {"last-without-newline@branch.test", POLICY_OK, "branch.test"},
        {"eve@branch.test", POLICY_UNKNOWN_USER, "branch.test"},
        {"alic@branch.test", POLICY_UNKNOWN_USER, "branch.test"},
        {"alicea@branch.test", POLICY_UNKNOWN_USER, "branch.test"},
        {"#@branch.test", POLICY_UNKNOWN_USER, "branch.test"}, /* comments are not entries */
        /* "erin@other.test" in branch.test's list does not make other.test ours */
        {"erin@other.test", POLICY_RELAY_DENIED, NULL},
        {"erin@branch.test", POLICY_UNKNOWN_USER, "branch.test"},
        /* a local part is valid only for the section's own domain */
        {"ceo@corp.test", POLICY_OK, "corp.test"},
        {"ceo@eu.corp.test", POLICY_UNKNOWN_USER, "corp.test"},
        {"ops@eu.corp.test", POLICY_OK, "corp.test"},
        {"OPS@EU.CORP.TEST", POLICY_OK, "corp.test"},
        {"ops@corp.test", POLICY_UNKNOWN_USER, "corp.test"},
        {"ops@us.corp.test", POLICY_UNKNOWN_USER, "corp.test"},
        {"sales@de.corp.test", POLICY_OK, "corp.test"},
        {"ceo@badcorp.test", POLICY_RELAY_DENIED, NULL},
        /* no list: everybody is */
        {"anyone@open.test", POLICY_OK, "open.test"},
        /* tricks are refused even when the local part would be listed */
        {"alice%x@branch.test", POLICY_RELAY_TRICK, NULL},
    };
    run_cases(f->p, cases, N(cases));
}

/* policy_add_recipient(): the entry point tests and relayctl use. */
static void test_add_recipient(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_build(f, "[domain branch.test]\n"
                                 "[domain backup.test]\n"
                                 "subdomains = yes\n"),
                     0);
    static const struct rcpt_case before[] = {
        {"anyone@branch.test", POLICY_OK, "branch.test"},
        {"anyone@backup.test", POLICY_OK, "backup.test"},
    };
    run_cases(f->p, before, N(before));

    char long_entry[400];
    memset(long_entry, 'a', 321);
    long_entry[321] = '\0';
    assert_int_equal(policy_add_recipient(f->p, "nowhere.test", "alice"), -ENOENT);
    assert_int_equal(policy_add_recipient(f->p, "sub.backup.test", "alice"), -ENOENT);
    assert_int_equal(policy_add_recipient(f->p, "branch.test", ""), -EINVAL);
    assert_int_equal(policy_add_recipient(f->p, "branch.test", "two words"), -EINVAL);
    assert_int_equal(policy_add_recipient(f->p, "branch.test", long_entry), -EINVAL);
    /* refused entries leave the domain open */
    run_cases(f->p, before, N(before));

    long_entry[320] = '\0'; /* 320 octets is the longest entry */
    assert_int_equal(policy_add_recipient(f->p, "BRANCH.test", "Zed"), 0);
    assert_int_equal(policy_add_recipient(f->p, "branch.test", "alice"), 0);
    assert_int_equal(policy_add_recipient(f->p, "branch.test", "alice"), 0); /* duplicate */
    assert_int_equal(policy_add_recipient(f->p, "branch.test", long_entry), 0);
    assert_int_equal(policy_add_recipient(f->p, "backup.test", "Ops@Sub.Backup.Test"), 0);
    static const struct rcpt_case after[] = {
        {"zed@branch.test", POLICY_OK, "branch.test"},
        {"ZED@branch.test", POLICY_OK, "branch.test"},
        {"alice@branch.test", POLICY_OK, "branch.test"},
        {"anyone@branch.test", POLICY_UNKNOWN_USER, "branch.test"}, /* a list now exists */
        {"ops@sub.backup.test", POLICY_OK, "backup.test"},
        {"ops@backup.test", POLICY_UNKNOWN_USER, "backup.test"},
        {"anyone@backup.test", POLICY_UNKNOWN_USER, "backup.test"},
    };
    run_cases(f->p, after, N(after));

    /* Many entries, added out of order: each one is found (the list stays sorted). */
    for (int i = 999; i >= 0; i--) {
        char e[32];
        snprintf(e, sizeof(e), "user%03d", (i * 7) % 1000);
        assert_int_equal(policy_add_recipient(f->p, "branch.test", e), 0);
    }
    for (int i = 0; i < 1000; i++) {
        char a[64];
        const char *sec;
        snprintf(a, sizeof(a), "User%03d@branch.test", i);
        assert_int_equal(check(f->p, a, &sec), POLICY_OK);
    }
    const char *sec;
    assert_int_equal(check(f->p, "user1000@branch.test", &sec), POLICY_UNKNOWN_USER);
}

static bool has_error(const struct cfg_errors *e, const char *file, int line, const char *needle)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->v[i].file, file) == 0 && e->v[i].line == line &&
            strstr(e->v[i].msg, needle) != NULL)
            return true;
    return false;
}

static void print_errors(const struct cfg_errors *e)
{
    cfg_errors_print(e, stderr, "  got: ");
}

/* Every bad line of every recipients file is reported as file:line, not only the first. */
static void test_bad_lines(void **state)
{
    struct fx *f = *state;
    char long_line[400];
    memset(long_line, 'b', 321);
    long_line[321] = '\0';
    char text[1024];
    snprintf(text, sizeof(text),
             "alice\n"            /* 1 */
             "two words\n"        /* 2: space inside */
             "# comment\n"        /* 3 */
             "%s\n"               /* 4: over 320 octets */
             "bob\n"              /* 5 */
             "a b@branch.test\n", /* 6 */
             long_line);
    fx_write(f, "bad.rcpts", text);
    fx_write(f, "bad2.rcpts", "ok\n\nx y\n");
    int rc = fx_build(f, "[domain branch.test]\n"
                         "recipients = bad.rcpts\n"
                         "[domain backup.test]\n"
                         "recipients = bad2.rcpts\n");
    assert_int_equal(rc, HF_ECONFIG);
    assert_null(f->p);
    char p1[256], p2[256];
    snprintf(p1, sizeof(p1), "%s/bad.rcpts", f->dir);
    snprintf(p2, sizeof(p2), "%s/bad2.rcpts", f->dir);
    if (f->errs.n != 4 || !has_error(&f->errs, p1, 2, "two words") ||
        !has_error(&f->errs, p1, 4, "bbbb") || !has_error(&f->errs, p1, 6, "a b@branch.test") ||
        !has_error(&f->errs, p2, 3, "x y")) {
        print_errors(&f->errs);
        fail_msg("expected 4 errors: bad.rcpts:2, :4, :6 and bad2.rcpts:3");
    }
}

/* A line longer than the reader's buffer is one line: it is reported once, with its own
 * number, its tail is not taken as a recipient, and later lines keep their numbers. */
static void test_very_long_line(void **state)
{
    struct fx *f = *state;
    static char text[4096];
    char *t = text;
    t += sprintf(t, "alice\n"); /* 1 */
    memset(t, 'x', 1030);       /* 2: 1030 octets */
    t += 1030;
    t += sprintf(t, "\nbad entry\n"); /* 3 */
    fx_write(f, "long.rcpts", text);
    int rc = fx_build(f, "[domain branch.test]\nrecipients = long.rcpts\n");
    char p[256];
    snprintf(p, sizeof(p), "%s/long.rcpts", f->dir);
    bool ok = rc == HF_ECONFIG && f->errs.n == 2 && has_error(&f->errs, p, 2, "xxxx") &&
              has_error(&f->errs, p, 3, "bad entry");
    if (!ok) {
        print_errors(&f->errs);
        fail_msg("1030-octet line 2 and bad line 3: rc %d (expected %d), %zu errors (expected 2 "
                 "at lines 2 and 3)",
                 rc, HF_ECONFIG, f->errs.n);
    }
}

/* The same file without the bad line 3: the long line alone must still be refused, and its
 * tail ("xxxxxxx", octets 1024-1030) must not become a valid recipient. */
static void test_very_long_line_tail(void **state)
{
    struct fx *f = *state;
    static char text[4096];
    char *t;
    int rc;
    t = text;
    t += sprintf(t, "alice\n");
    memset(t, 'x', 1030);
    t += 1030;
    *t = '\0';
    fx_write(f, "long.rcpts", text);
    rc = fx_build(f, "[domain branch.test]\nrecipients = long.rcpts\n");
    if (rc == 0) {
        const char *sec;
        enum policy_verdict v = check(f->p, "xxxxxxx@branch.test", &sec);
        fail_msg("a 1030-octet recipients line was accepted; xxxxxxx@branch.test gives "
                 "verdict %d",
                 (int)v);
    }
    assert_int_equal(rc, HF_ECONFIG);
}

/* A recipients file that cannot be read: one error at the domain's line of the config,
 * naming the file. Other domains' files are still read (their errors reported too). */
static void test_missing_file(void **state)
{
    struct fx *f = *state;
    fx_write(f, "other.rcpts", "bad line\n");
    int rc = fx_build(f, "hostname = mx.test\n"
                         "[domain branch.test]\n" /* line 2 */
                         "recipients = missing.rcpts\n"
                         "[domain backup.test]\n"
                         "recipients = other.rcpts\n");
    assert_int_equal(rc, HF_ECONFIG);
    assert_null(f->p);
    char conf[256], missing[256], other[256];
    snprintf(conf, sizeof(conf), "%s/relayd.conf", f->dir);
    snprintf(missing, sizeof(missing), "%s/missing.rcpts", f->dir);
    snprintf(other, sizeof(other), "%s/other.rcpts", f->dir);
    bool ok = f->errs.n == 2 && has_error(&f->errs, conf, 2, missing) &&
              has_error(&f->errs, conf, 2, "branch.test") &&
              has_error(&f->errs, conf, 2, "No such file") &&
              has_error(&f->errs, other, 1, "bad line");
    if (!ok) {
        print_errors(&f->errs);
        fail_msg("expected relayd.conf:2 naming %s and other.rcpts:1", missing);
    }
    fx_reset(f);

    /* An absolute path is used as given. */
    rc = fx_build(f, "[domain branch.test]\nrecipients = /nonexistent/hf-policy.rcpts\n");
    assert_int_equal(rc, HF_ECONFIG);
    snprintf(conf, sizeof(conf), "%s/relayd.conf", f->dir);
    if (f->errs.n != 1 || !has_error(&f->errs, conf, 1, "/nonexistent/hf-policy.rcpts")) {
        print_errors(&f->errs);
        fail_msg("expected relayd.conf:1 naming /nonexistent/hf-policy.rcpts");
    }
}

/* A configuration without domains serves nothing. */
static void test_no_domains(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_build(f, "hostname = mx.test\n"), 0);
    static const struct rcpt_case cases[] = {
        {"x@branch.test", POLICY_RELAY_DENIED, NULL},
        {"x@[127.0.0.1]", POLICY_RELAY_DENIED, NULL},
        {"x%y@branch.test", POLICY_RELAY_DENIED, NULL},
    };
    run_cases(f->p, cases, N(cases));
    assert_false(policy_serves(f->p, "branch.test"));
}

/* A recipients file with no entries (only comments and blank lines) means nobody is valid.
 * Last in the list: policy.c sorts the empty list with qsort(NULL, 0, ...), which UBSan
 * stops the program for (C17 7.22.5: the pointer must be valid even for 0 elements). */
static void test_empty_file(void **state)
{
    struct fx *f = *state;
    fx_write(f, "empty.rcpts", "# nobody here\n\n");
    assert_int_equal(fx_build(f, "[domain empty.test]\n"
                                 "recipients = empty.rcpts\n"
                                 "[domain open.test]\n"),
                     0);
    static const struct rcpt_case cases[] = {
        {"anyone@empty.test", POLICY_UNKNOWN_USER, "empty.test"},
        {"anyone@open.test", POLICY_OK, "open.test"},
    };
    run_cases(f->p, cases, N(cases));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_domains, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_recipient_lists, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_add_recipient, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_very_long_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_very_long_line_tail, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_domains, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_empty_file, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
