/* Unit tests for auth.c: the credentials file (good and bad lines with their numbers), scrypt
 * hashes (RFC 7914's test vector, hash then verify, wrong password, unknown user), AUTH PLAIN
 * and LOGIN decoding with strict base64, and the --hash-password command. */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "hf_err.h"

/* RFC 7914 12: scrypt("pleaseletmein", "SodiumChloride", N=16384, r=8, p=1, dkLen=64). */
#define KAT_KEY                                                                                    \
    "cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofLVQylVYT8Pz2LUlwUkKpr55h6F3A1lHkDfzwF7RVdYhw"
#define KAT "$scrypt$ln=14,r=8,p=1$U29kaXVtQ2hsb3JpZGU$" KAT_KEY

static int parse(const char *text, struct auth_store *s, struct cfg_errors *e)
{
    memset(e, 0, sizeof(*e));
    return auth_store_parse(text, strlen(text), "/etc/holdfast/users", s, e);
}

static void test_file_good_and_bad(void **state)
{
    (void)state;
    static const char text[] = "# users of the relay\n"                   /* 1 */
                               "\n"                                       /* 2 */
                               "alice:" KAT ":branch.test, Backup.TEST\n" /* 3 */
                               "bob:" KAT "\n"                            /* 4 */
                               "ops:" KAT ":*\n"                          /* 5 */
                               "   carol:" KAT ":   \n"                   /* 6 */
                               "nohash\n"                                 /* 7 */
                               ":" KAT "\n"                               /* 8 */
                               "dave:$2y$10$abcdefghijklmnopqrstuv\n"     /* 9 */
                               "erin:$scrypt$ln=30,r=8,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA\n"
                               "frank:" KAT ":bad..domain\n" /* 11 */
                               "alice:" KAT "\n"             /* 12 */
                               "gina:" KAT ":a.test:b\n"     /* 13 */
                               "hank:" KAT ":*,a.test\n"     /* 14 */
                               "ivan:$scrypt$ln=14,r=8,p=1$U29k!XVtQ2hsb3JpZGU$cCO9yzr9c0hG\n"
                               "jo e:" KAT "\n"                 /* 16 */
                               "kim:" KAT ":a.test,,b.test\r\n" /* 17 */
                               "lou:$scrypt$ln=14,r=8,p=1$U29kaXVtQ2hsb3JpZGV$" KAT_KEY "\n"
                               "last:" KAT ""; /* 19 */
    static const struct {
        int line;
        const char *msg;
    } want[] = {
        {7, "expected user:hash[:domains]"},
        {8, "empty user name"},
        {9, "not a \"$scrypt$ln=N,r=R,p=P$salt$key\" hash"},
        {10, "scrypt parameters out of range"},
        {11, "bad domain 'bad..domain'"},
        {12, "duplicate user 'alice' (first on line 3)"},
        {13, "too many ':' fields"},
        {14, "'*' stands for every domain"},
        {15, "bad base64"},
        {16, "user name contains a space"},
        {17, "empty domain in the list"},
        {18, "bad base64"}, /* stray bits in the salt's last character */
    };
    struct auth_store s;
    struct cfg_errors e;
    assert_int_equal(parse(text, &s, &e), HF_ECONFIG);
    if (e.n != sizeof(want) / sizeof(want[0]))
        for (size_t i = 0; i < e.n; i++)
            printf("  %s:%d: %s\n", e.v[i].file, e.v[i].line, e.v[i].msg);
    assert_int_equal(e.n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < e.n; i++) {
        assert_string_equal(e.v[i].file, "/etc/holdfast/users");
        assert_int_equal(e.v[i].line, want[i].line);
        assert_non_null(strstr(e.v[i].msg, want[i].msg));
    }
    assert_int_equal(s.n, 5);
    const struct auth_user *u = auth_user_find(&s, "alice");
    assert_non_null(u);
    assert_int_equal(u->line, 3);
    assert_int_equal(u->ndomains, 2);
    assert_string_equal(u->domains[1], "backup.test");
    assert_true(auth_user_may_release(u, "branch.test"));
    assert_true(auth_user_may_release(u, "BACKUP.test"));
    assert_false(auth_user_may_release(u, "other.test"));
    assert_false(auth_user_may_release(u, "sub.branch.test"));
    u = auth_user_find(&s, "bob");
    assert_non_null(u);
    assert_false(auth_user_may_release(u, "branch.test"));
    u = auth_user_find(&s, "ops");
    assert_true(u->all_domains);
    assert_true(auth_user_may_release(u, "anything.test"));
    u = auth_user_find(&s, "carol");
    assert_non_null(u);
    assert_int_equal(u->ndomains, 0);
    assert_non_null(auth_user_find(&s, "last"));
    assert_null(auth_user_find(&s, "Alice")); /* user names are exact */
    assert_null(auth_user_find(&s, "frank"));
    auth_store_free(&s);
    cfg_errors_free(&e);

    assert_int_equal(parse("# nothing\n\n", &s, &e), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(e.n, 0);
    auth_store_free(&s);
}

static void test_file_load(void **state)
{
    (void)state;
    char path[] = "/tmp/hf-test-auth-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "alice:" KAT ":branch.test\nbad line\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct auth_store s;
    struct cfg_errors e = {0};
    assert_int_equal(auth_store_load(path, &s, &e), HF_ECONFIG);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.v[0].file, path);
    assert_int_equal(e.v[0].line, 2);
    assert_int_equal(s.n, 1);
    auth_store_free(&s);
    cfg_errors_free(&e);
    unlink(path);

    assert_int_equal(auth_store_load(path, &s, &e), HF_ECONFIG);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.v[0].line, 0);
    assert_non_null(strstr(e.v[0].msg, "cannot read"));
    auth_store_free(&s);
    cfg_errors_free(&e);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_known_answer(void **state)
{
    (void)state;
    struct auth_store s;
    struct cfg_errors e;
    assert_int_equal(parse("kat:" KAT "\n", &s, &e), 0);
    const struct auth_user *u = NULL;
    assert_int_equal(auth_verify(&s, "kat", "pleaseletmein", &u), 0);
    assert_non_null(u);
    assert_string_equal(u->name, "kat");
    assert_int_equal(auth_verify(&s, "kat", "pleaseletmeim", NULL), -EACCES);
    assert_int_equal(auth_verify(&s, "kat", "", NULL), -EACCES);
    auth_store_free(&s);
}

static void test_hash_and_verify(void **state)
{
    (void)state;
    char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
    assert_int_equal(auth_hash_password("correct horse", h1, sizeof(h1)), 0);
    assert_int_equal(auth_hash_password("correct horse", h2, sizeof(h2)), 0);
    assert_int_equal(strncmp(h1, "$scrypt$ln=15,r=8,p=1$", 22), 0);
    assert_int_equal(strlen(h1), 22 + 22 + 1 + 43); /* 16-octet salt, 32-octet key */
    assert_string_not_equal(h1, h2);                /* fresh salt each time */

    char text[512];
    snprintf(text, sizeof(text), "bob:%s:branch.test\nann:%s\n", h1, h2);
    struct auth_store s;
    struct cfg_errors e;
    assert_int_equal(parse(text, &s, &e), 0);
    const struct auth_user *u = NULL;
    /* Timings are the fastest of three, so a busy machine can only make "known" look slower
     * than it is; an unknown user that skipped scrypt would still be far below it. */
    double known = 1e9, unknown = 1e9;
    for (int i = 0; i < 3; i++) {
        double t0 = seconds();
        assert_int_equal(auth_verify(&s, "bob", "correct horse", &u), 0);
        double d = seconds() - t0;
        if (d < known)
            known = d;
    }
    assert_string_equal(u->name, "bob");
    assert_int_equal(auth_verify(&s, "ann", "correct horse", NULL), 0);
    assert_int_equal(auth_verify(&s, "bob", "correct horsE", NULL), -EACCES);
    for (int i = 0; i < 3; i++) {
        u = NULL;
        double t0 = seconds();
        assert_int_equal(auth_verify(&s, "nobody", "correct horse", &u), -EACCES);
        double d = seconds() - t0;
        if (d < unknown)
            unknown = d;
        assert_null(u);
    }
    /* The unknown user pays for a full scrypt run too (a loose bound: no flaky timing). */
    assert_true(unknown > known / 4);
    auth_store_free(&s);

    /* An empty store still costs a computation and refuses. */
    struct auth_store empty = {0};
    assert_int_equal(auth_verify(&empty, "bob", "x", NULL), -EACCES);

    char longpw[300];
    memset(longpw, 'p', sizeof(longpw) - 1);
    longpw[sizeof(longpw) - 1] = '\0';
    assert_int_equal(auth_hash_password(longpw, h1, sizeof(h1)), -EINVAL);
    longpw[255] = '\0';
    assert_int_equal(auth_hash_password(longpw, h1, sizeof(h1)), 0);
    assert_int_equal(auth_hash_password("", h1, sizeof(h1)), -EINVAL);
    assert_int_equal(auth_hash_password("x", h1, 40), -ENOSPC);
}

static void test_plain_decode(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        const char *authzid, *authcid, *passwd;
    } cases[] = {
        {"AGFsaWNlAHNlY3JldA==", 0, "", "alice", "secret"},
        {"YWRtaW4AYWxpY2UAc2VjcmV0", 0, "admin", "alice", "secret"},
        {"*", -ECANCELED, NULL, NULL, NULL},
        {"YWxpY2UAc2VjcmV0", HF_ESYNTAX, NULL, NULL, NULL},     /* one NUL only */
        {"YWxpY2U=", HF_ESYNTAX, NULL, NULL, NULL},             /* no NUL */
        {"AGFsaWNlAA==", HF_ESYNTAX, NULL, NULL, NULL},         /* empty password */
        {"AABzZWNyZXQ=", HF_ESYNTAX, NULL, NULL, NULL},         /* empty authcid */
        {"AGFsaWNlAHNlYwByZXQ=", HF_ESYNTAX, NULL, NULL, NULL}, /* a third NUL */
        {"", HF_ESYNTAX, NULL, NULL, NULL},
        {"=", HF_ESYNTAX, NULL, NULL, NULL},
        {"AGFsaWNlAHNlY3JldA", HF_ESYNTAX, NULL, NULL, NULL},    /* padding missing */
        {"AGFsaWNlAHNlY3JldA=", HF_ESYNTAX, NULL, NULL, NULL},   /* padding short */
        {"AGFsaWNlAHNlY3JldA===", HF_ESYNTAX, NULL, NULL, NULL}, /* padding long */
        {"AGFsaWNlAHNlY3JldB==", HF_ESYNTAX, NULL, NULL, NULL},  /* stray bits */
        {"AGFs=WNlAHNlY3JldA==", HF_ESYNTAX, NULL, NULL, NULL},  /* '=' inside */
        {"AGFsaWNl AHNlY3JldA=", HF_ESYNTAX, NULL, NULL, NULL},  /* space */
        {"AGFsaWNl\nAHNlY3JldA=", HF_ESYNTAX, NULL, NULL, NULL}, /* line break */
        {"AGFsaWNlAHNlY3Jld-==", HF_ESYNTAX, NULL, NULL, NULL},  /* base64url */
        {"!!!!", HF_ESYNTAX, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct auth_plain p;
        int rc = auth_plain_decode(cases[i].in, strlen(cases[i].in), &p);
        if (rc != cases[i].rc)
            fail_msg("case %zu \"%s\": rc %d, want %d", i, cases[i].in, rc, cases[i].rc);
        if (rc == 0) {
            assert_string_equal(p.authzid, cases[i].authzid);
            assert_string_equal(p.authcid, cases[i].authcid);
            assert_string_equal(p.passwd, cases[i].passwd);
        }
        auth_wipe(&p, sizeof(p));
    }

    /* Over-long fields and input. */
    unsigned char msg[600];
    char b64[1200];
    struct auth_plain p;
    memset(msg, 'a', sizeof(msg));
    msg[0] = 0;   /* no authzid */
    msg[257] = 0; /* authcid of 256 octets */
    assert_int_equal(auth_b64_encode(msg, 262, b64, sizeof(b64)), 0);
    assert_int_equal(auth_plain_decode(b64, strlen(b64), &p), HF_ETOOBIG);
    msg[257] = 'a';
    msg[256] = 0; /* authcid of 255 octets: fine */
    assert_int_equal(auth_b64_encode(msg, 262, b64, sizeof(b64)), 0);
    assert_int_equal(auth_plain_decode(b64, strlen(b64), &p), 0);
    assert_int_equal(strlen(p.authcid), 255);
    assert_string_equal(p.passwd, "aaaaa");
    char huge[1100];
    memset(huge, 'A', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    assert_int_equal(auth_plain_decode(huge, strlen(huge), &p), HF_ETOOBIG);

    /* The client side encodes what the server decodes. */
    char out[64];
    assert_int_equal(auth_plain_encode("alice", "secret", out, sizeof(out)), 0);
    assert_string_equal(out, "AGFsaWNlAHNlY3JldA==");
    assert_int_equal(auth_plain_encode("alice", "secret", out, 10), -ENOSPC);
    assert_int_equal(auth_plain_encode("", "secret", out, sizeof(out)), -EINVAL);
    assert_int_equal(auth_plain_encode("alice", "", out, sizeof(out)), -EINVAL);
}

static void test_login_decode(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        const char *out;
    } cases[] = {
        {"YWxpY2U=", 0, "alice"},        {"VXNlcm5hbWU6", 0, "Username:"},
        {"*", -ECANCELED, NULL},         {"", HF_ESYNTAX, NULL},
        {"=", HF_ESYNTAX, NULL},         {"YWxpY2U", HF_ESYNTAX, NULL}, /* padding missing */
        {"YWxp Y2U=", HF_ESYNTAX, NULL},                                /* space */
        {"YWwAaWNl", HF_ESYNTAX, NULL},                                 /* "al\0ice" */
        {"AGFsaWNl", HF_ESYNTAX, NULL},                                 /* "\0alice" */
        {"YWxpY2V=", HF_ESYNTAX, NULL},                                 /* stray bits */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[AUTH_FIELD_MAX + 1];
        int rc = auth_login_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out));
        if (rc != cases[i].rc)
            fail_msg("case %zu \"%s\": rc %d, want %d", i, cases[i].in, rc, cases[i].rc);
        if (rc == 0)
            assert_string_equal(out, cases[i].out);
    }
    char small[4];
    assert_int_equal(auth_login_decode("YWxpY2U=", 8, small, sizeof(small)), HF_ETOOBIG);
    char name[300], b64[500], out[AUTH_FIELD_MAX + 1];
    memset(name, 'n', sizeof(name));
    assert_int_equal(auth_b64_encode(name, 256, b64, sizeof(b64)), 0);
    assert_int_equal(auth_login_decode(b64, strlen(b64), out, sizeof(out)), HF_ETOOBIG);
    assert_int_equal(auth_b64_encode(name, 255, b64, sizeof(b64)), 0);
    assert_int_equal(auth_login_decode(b64, strlen(b64), out, sizeof(out)), 0);
    assert_int_equal(strlen(out), 255);
    assert_string_equal(AUTH_LOGIN_PASS_PROMPT, "UGFzc3dvcmQ6");
}

/* Runs auth_passwd_main(argv) in a child with input on stdin; returns its exit status and
 * its stdout in out. */
static int run_passwd(char **argv, int argc, const char *input, char *out, size_t outsz)
{
    int in[2], res[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(res), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(res[1], STDOUT_FILENO);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO);
        close(in[1]);
        close(res[0]);
        _exit(auth_passwd_main(argc, argv));
    }
    close(in[0]);
    close(res[1]);
    /* A usage error exits before reading stdin: the write may then find the pipe closed,
     * which must be EPIPE here, not a SIGPIPE that kills the test (make and dpkg-buildpackage
     * run it with SIGPIPE at its default). */
    signal(SIGPIPE, SIG_IGN);
    ssize_t w = write(in[1], input, strlen(input));
    assert_true(w == (ssize_t)strlen(input) || (w < 0 && errno == EPIPE));
    close(in[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(res[0], out + n, outsz - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(res[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_passwd_main(void **state)
{
    (void)state;
    char out[512];
    char *argv1[] = {"relayd", "alice", "branch.test,backup.test", NULL};
    assert_int_equal(run_passwd(argv1, 3, "s3cret pass\n", out, sizeof(out)), 0);
    /* The printed line is a valid credentials line, and the password verifies. */
    struct auth_store s;
    struct cfg_errors e;
    assert_int_equal(parse(out, &s, &e), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(auth_verify(&s, "alice", "s3cret pass", NULL), 0);
    assert_true(auth_user_may_release(&s.v[0], "backup.test"));
    auth_store_free(&s);

    char *argv0[] = {"relayd", NULL};
    assert_int_equal(run_passwd(argv0, 1, "pw\r\n", out, sizeof(out)), 0);
    assert_int_equal(strncmp(out, "$scrypt$ln=15,r=8,p=1$", 22), 0);

    assert_int_equal(run_passwd(argv0, 1, "", out, sizeof(out)), 1);   /* no password */
    assert_int_equal(run_passwd(argv0, 1, "\n", out, sizeof(out)), 1); /* empty */
    char *bad_user[] = {"relayd", "a:b", NULL};
    assert_int_equal(run_passwd(bad_user, 2, "pw\n", out, sizeof(out)), 2);
    char *bad_dom[] = {"relayd", "alice", "bad..domain", NULL};
    assert_int_equal(run_passwd(bad_dom, 3, "pw\n", out, sizeof(out)), 2);
    char *many[] = {"relayd", "a", "b.test", "c", NULL};
    assert_int_equal(run_passwd(many, 4, "pw\n", out, sizeof(out)), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_good_and_bad), cmocka_unit_test(test_file_load),
        cmocka_unit_test(test_known_answer),      cmocka_unit_test(test_hash_and_verify),
        cmocka_unit_test(test_plain_decode),      cmocka_unit_test(test_login_decode),
        cmocka_unit_test(test_passwd_main),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
