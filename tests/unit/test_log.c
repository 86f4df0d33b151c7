/* Unit tests for log.c's stderr sink: the line Postfix's tools parse (pflogsumm's RFC 3339
 * pattern): "YYYY-MM-DDTHH:MM:SS.mmmZ HOST PROG[/SERVICE][PID]: [LEVEL: ]TEXT", the host
 * name cut to its first label as syslog writes it, no level word for info, "warning: ",
 * "error: ", "debug: " otherwise, lines below the level dropped, and an over-long line cut
 * to one line that still ends in a newline. stderr is pointed at a temporary file. */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static FILE *cap;
static int saved_err = -1;

static int setup(void **state)
{
    (void)state;
    cap = tmpfile();
    if (!cap)
        return -1;
    fflush(stderr);
    saved_err = dup(2);
    if (saved_err < 0 || dup2(fileno(cap), 2) < 0)
        return -1;
    log_init("relayd", false, LOG_LVL_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dup2(saved_err, 2);
    close(saved_err);
    fclose(cap);
    return 0;
}

/* Everything logged since the last call, as one string (static buffer). */
static const char *captured(void)
{
    static char buf[16384];
    static long done;
    long end = lseek(2, 0, SEEK_END);
    size_t n = (size_t)(end - done);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    ssize_t r = pread(2, buf, n, done);
    buf[r > 0 ? (size_t)r : 0] = '\0';
    done = end;
    return buf;
}

static void assert_line(const char *got, const char *tag_and_text)
{
    char pat[1024];
    snprintf(pat, sizeof(pat),
             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z [^ .]+ %s\n$",
             tag_and_text);
    regex_t rx;
    assert_int_equal(regcomp(&rx, pat, REG_EXTENDED | REG_NOSUB), 0);
    int m = regexec(&rx, got, 0, NULL, 0);
    regfree(&rx);
    if (m != 0)
        fail_msg("line %s does not match %s", got, pat);
}

static void test_service_tag_and_levels(void **state)
{
    (void)state;
    char pid[256];
    captured();
    log_svc(LOG_LVL_INFO, "smtpd", "%s: client=unknown[%s]", "01A2", "127.0.0.1");
    snprintf(pid, sizeof(pid), "relayd/smtpd\\[%d\\]: 01A2: client=unknown\\[127\\.0\\.0\\.1\\]",
             (int)getpid());
    assert_line(captured(), pid);

    log_msg(LOG_LVL_INFO, "flush domain=%s", "a.test");
    snprintf(pid, sizeof(pid), "relayd\\[%d\\]: flush domain=a\\.test", (int)getpid());
    assert_line(captured(), pid);

    log_msg(LOG_LVL_WARN, "disk low");
    snprintf(pid, sizeof(pid), "relayd\\[%d\\]: warning: disk low", (int)getpid());
    assert_line(captured(), pid);

    log_svc(LOG_LVL_ERR, "qmgr", "commit failed");
    snprintf(pid, sizeof(pid), "relayd/qmgr\\[%d\\]: error: commit failed", (int)getpid());
    assert_line(captured(), pid);

    /* Below the level: nothing at all. */
    log_msg(LOG_LVL_DEBUG, "hidden");
    log_svc(LOG_LVL_DEBUG, "smtp", "hidden");
    assert_string_equal(captured(), "");
    log_set_level(LOG_LVL_DEBUG);
    log_debug("state %s", "READY");
    snprintf(pid, sizeof(pid), "relayd\\[%d\\]: debug: state READY", (int)getpid());
    assert_line(captured(), pid);
    log_set_level(LOG_LVL_INFO);
}

/* The host is gethostname()'s first label. */
static void test_host_is_the_short_name(void **state)
{
    (void)state;
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    host[strcspn(host, ".")] = '\0';
    captured();
    log_msg(LOG_LVL_INFO, "x");
    const char *got = captured();
    const char *sp = strchr(got, ' ');
    assert_non_null(sp);
    if (host[0])
        assert_int_equal(strncmp(sp + 1, host, strlen(host)), 0);
    assert_int_equal(sp[1 + strlen(host[0] ? host : "localhost")], ' ');
}

/* A line longer than the buffer is cut, stays one line and ends in a newline. */
static void test_long_line_is_cut(void **state)
{
    (void)state;
    char *big = malloc(10000);
    assert_non_null(big);
    memset(big, 'a', 9999);
    big[9999] = '\0';
    captured();
    log_svc(LOG_LVL_INFO, "smtp", "%s", big);
    free(big);
    const char *got = captured();
    size_t n = strlen(got);
    assert_true(n > 4000 && n <= 4096);
    assert_int_equal(got[n - 1], '\n');
    assert_null(memchr(got, '\n', n - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service_tag_and_levels),
        cmocka_unit_test(test_host_is_the_short_name),
        cmocka_unit_test(test_long_line_is_cut),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
