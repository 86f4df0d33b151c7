/* Log sink: stderr with timestamps, or syslog(LOG_MAIL). One write per line.
 *
 * The line is what Postfix writes, so its tools read ours (pflogsumm's patterns): on stderr
 * "2026-12-07T06:40:00.123Z HOST PROG/SERVICE[PID]: TEXT" (RFC 3339 time, host name), in
 * syslog the tag "PROG/SERVICE" with LOG_PID. Informational lines carry no level word,
 * others "warning: ", "error: ", "debug: " first, as Postfix's "warning: " does. Lines
 * logged without a service have the tag PROG alone. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "holdfast";
static bool log_syslog;
static enum log_level log_level_cur = LOG_LVL_INFO;

static const char *const log_names[] = {"error", "warning", "info", "debug"};
static char log_host[256] = "localhost";
/* syslog(3) takes its tag from openlog(): a line of another service opens again with that
 * service's tag, under this lock so that no other thread's line gets the wrong one. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_tag[96];

void log_init(const char *prog, bool use_syslog, enum log_level level)
{
    log_prog = prog;
    log_syslog = use_syslog;
    log_level_cur = level;
    if (gethostname(log_host, sizeof(log_host) - 1) < 0 || !log_host[0])
        snprintf(log_host, sizeof(log_host), "localhost");
    log_host[strcspn(log_host, ". ")] = '\0'; /* syslog's short name, as Postfix logs it */
    if (use_syslog) {
        snprintf(log_tag, sizeof(log_tag), "%s", prog);
        openlog(log_tag, LOG_PID | LOG_NDELAY, LOG_MAIL);
    }
}

void log_set_level(enum log_level level)
{
    log_level_cur = level;
}

int log_level_parse(const char *s, enum log_level *out)
{
    static const char *const words[] = {"err", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, words[i]) == 0 || strcmp(s, log_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

bool log_enabled(enum log_level level)
{
    return level <= log_level_cur;
}

static void log_vmsg(enum log_level level, const char *svc, const char *fmt, va_list ap)
{
    char line[4096];
    char tag[96];
    if (svc)
        snprintf(tag, sizeof(tag), "%s/%s", log_prog, svc);
    else
        snprintf(tag, sizeof(tag), "%s", log_prog);
    const char *lvl = level == LOG_LVL_INFO ? "" : log_names[level];
    const char *sep = level == LOG_LVL_INFO ? "" : ": ";
    if (log_syslog) {
        int n = snprintf(line, sizeof(line), "%s%s", lvl, sep);
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        pthread_mutex_lock(&log_lock);
        if (strcmp(tag, log_tag) != 0) {
            snprintf(log_tag, sizeof(log_tag), "%s", tag);
            openlog(log_tag, LOG_PID | LOG_NDELAY, LOG_MAIL);
        }
        syslog(prio[level], "%s", line);
        pthread_mutex_unlock(&log_lock);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d]: %s%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log_host, tag, (int)getpid(), lvl, sep);
    if (n < 0)
        n = 0;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, NULL, fmt, ap);
    va_end(ap);
}

void log_svc(enum log_level level, const char *svc, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, svc, fmt, ap);
    va_end(ap);
}

char *log_safe(const char *s, char *buf, unsigned long bufsz)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (bufsz == 0)
        return buf;
    for (; s && *s && o + 5 < bufsz; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x21 || c == 0x7f || c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return buf;
}
