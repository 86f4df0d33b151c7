/* The configuration reference, written from the key table (cfg_keys): which keys a reload
 * keeps (read at start only), README's markdown table
 * (relayd --config-reference) and the roff entries of holdfast.conf(5) (scripts/man/mkman.c).
 * Both come from the one table, so the reference, the man page and the parser cannot drift.
 * Pure: text into a caller's buffer. */
#include "cfg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Keys read once at start: what they set up (sockets, the queue, the resolver, the user,
 * the log) is not rebuilt by a SIGHUP reload, which keeps their running values. */
static const char *const cfg_restart_keys[] = {
    "hostname",   "listen",     "listen_tls",     "queue_dir",      "control_socket",
    "log",        "map_size",   "max_map_size",   "dns_servers",    "dns_timeout",
    "self_names", "self_addrs", "retry_interval", "metrics_listen", "tls_ca_file",
    "pid_file",   "user",       "group",          "allow_root",     "listen_odmr",
    "listen_odmr_tls",
};

bool cfg_key_is_restart(const struct cfg_key *k)
{
    if (k->section != CFG_SEC_GLOBAL)
        return false;
    for (size_t i = 0; i < sizeof(cfg_restart_keys) / sizeof(cfg_restart_keys[0]); i++)
        if (strcmp(k->name, cfg_restart_keys[i]) == 0)
            return true;
    return false;
}

static const char *const cfg_ref_sections[] = {"top", "domain", "group", "relay"};

/* Appends printf output at *o; returns 0 or -ENOSPC. */
static int cfg_ref_put(char *buf, size_t sz, size_t *o, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int cfg_ref_put(char *buf, size_t sz, size_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *o, sz - *o, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sz - *o)
        return -ENOSPC;
    *o += (size_t)n;
    return 0;
}

int cfg_reference_md(char *buf, size_t sz)
{
    size_t o = 0;
    if (sz == 0 || cfg_ref_put(buf, sz, &o,
                               "| section | key | default | meaning |\n"
                               "|---|---|---|---|\n") < 0)
        return -ENOSPC;
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        char def[96];
        if (k->choices && k->def)
            snprintf(def, sizeof(def), "`%s` (%s)", k->def, k->choices);
        else if (k->choices) /* the default depends on other keys: the help says how */
            snprintf(def, sizeof(def), "(none) (%s)", k->choices);
        else if (k->def && *k->def)
            snprintf(def, sizeof(def), "`%s`", k->def);
        else
            snprintf(def, sizeof(def), "(none)");
        if (cfg_ref_put(buf, sz, &o, "| %s | `%s` | %s | %s%s |\n", cfg_ref_sections[k->section],
                        k->name, def, k->help,
                        cfg_key_is_restart(k) ? " (read at start only)" : "") < 0)
            return -ENOSPC;
    }
    return (int)o;
}

/* Appends s with roff's special characters escaped: backslash, a leading dot or quote
 * (a request), and '-' as \- (a real minus in keys, values and file names). */
static int cfg_ref_roff(char *buf, size_t sz, size_t *o, const char *s)
{
    for (const char *p = s; *p; p++) {
        const char *rep = NULL;
        char one[2] = {*p, '\0'};
        if (*p == '\\')
            rep = "\\e";
        else if (*p == '-')
            rep = "\\-";
        else if ((*p == '.' || *p == '\'') && (*o == 0 || buf[*o - 1] == '\n'))
            rep = *p == '.' ? "\\&." : "\\&'";
        if (cfg_ref_put(buf, sz, o, "%s", rep ? rep : one) < 0)
            return -ENOSPC;
    }
    return 0;
}

int cfg_reference_man(enum cfg_section sec, char *buf, size_t sz)
{
    size_t o = 0;
    if (sz == 0)
        return -ENOSPC;
    buf[0] = '\0';
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        if (k->section != sec)
            continue;
        int rc = cfg_ref_put(buf, sz, &o, ".TP\n.B ");
        if (rc == 0)
            rc = cfg_ref_roff(buf, sz, &o, k->name);
        if (rc == 0)
            rc = cfg_ref_put(buf, sz, &o, "\n");
        if (rc == 0)
            rc = cfg_ref_roff(buf, sz, &o, k->help);
        if (rc == 0 && cfg_key_is_restart(k))
            rc = cfg_ref_put(buf, sz, &o, "; read at start only");
        if (rc == 0)
            rc = cfg_ref_put(buf, sz, &o, ".\nDefault: ");
        if (rc == 0 && k->def && *k->def) {
            rc = cfg_ref_put(buf, sz, &o, "\\fB");
            if (rc == 0)
                rc = cfg_ref_roff(buf, sz, &o, k->def);
            if (rc == 0)
                rc = cfg_ref_put(buf, sz, &o, "\\fR");
        } else if (rc == 0) {
            rc = cfg_ref_put(buf, sz, &o, "none");
        }
        if (rc == 0 && k->choices) {
            rc = cfg_ref_put(buf, sz, &o, "; one of ");
            if (rc == 0)
                rc = cfg_ref_roff(buf, sz, &o, k->choices);
        }
        if (rc == 0)
            rc = cfg_ref_put(buf, sz, &o, ".\n");
        if (rc < 0)
            return rc;
    }
    return (int)o;
}
