/* Log lines: one per event, queue id (or c=N) first, then key=value fields.
 *
 * The sink is stderr (with a timestamp, the host and the program name) or syslog (facility
 * mail), in the form Postfix's tools parse (log.c).
 * log_set_level() drops lines below the level. Safe to call from any thread: each line is
 * formatted into one buffer and written with a single write(2). */
#ifndef HF_LOG_H
#define HF_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN = 1, LOG_LVL_INFO = 2, LOG_LVL_DEBUG = 3 };

/* Sets program name (borrowed; must outlive logging), sink and level. */
void log_init(const char *prog, bool use_syslog, enum log_level level);
void log_set_level(enum log_level level);
/* Parses "err", "warn", "info", "debug"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, for a line of one of the program's services ("smtpd", "qmgr", "smtp",
 * "bounce", "cleanup"): the tag becomes PROG/SERVICE, as in Postfix's "postfix/smtpd". */
void log_svc(enum log_level level, const char *svc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_err(...)   log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) (log_enabled(LOG_LVL_DEBUG) ? log_msg(LOG_LVL_DEBUG, __VA_ARGS__) : (void)0)

/* Copies s into buf (size bufsz) so it is safe inside a log line: control characters,
 * spaces, quotes and backslashes become \xHH. Always NUL-terminates; returns buf. */
char *log_safe(const char *s, char *buf, unsigned long bufsz);

#endif
