/* Log sink: stderr with timestamps, or syslog(LOG_MAIL). One write per line. */
#include "log.h"

#include <errno.h>
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

void log_init(const char *prog, bool use_syslog, enum log_level level)
{
    log_prog = prog;
    log_syslog = use_syslog;
    log_level_cur = level;
    if (use_syslog)
        openlog(prog, LOG_PID | LOG_NDELAY, LOG_MAIL);
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

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    if (log_syslog) {
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        syslog(prio[level], "%s", line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d]: %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_prog, (int)getpid(), log_names[level]);
    if (n < 0)
        n = 0;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
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
