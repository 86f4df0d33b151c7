/* Configuration parser: key table, defaults, per-line errors, cross-key checks.
 *
 * Why not inih: Debian's packaged inih has a 200-octet line limit and does not pass line
 * numbers to the handler (that needs a compile-time option the package does not set), and
 * every error here must carry file:line and parsing must go on to report all of them. The
 * grammar is small (key = value, [type name] sections), so it is parsed here. */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "hf_err.h"

#define G(f)  offsetof(struct cfg, f)
#define D(f)  offsetof(struct cfg_domain, f)
#define R(f)  offsetof(struct cfg_relay, f)
#define GR(f) offsetof(struct cfg_group, f)
#define KIB   1024ull
#define MIB   (1024ull * 1024ull)
#define GIB   (1024ull * 1024ull * 1024ull)

/* The one table of keys. Keep README's "Configuration reference" in step: a unit test
 * compares them (relayd --config-reference prints the table README holds). */
const struct cfg_key cfg_keys[] = {
    /* relayd, global */
    {CFG_SEC_GLOBAL, "hostname", CFG_T_STR, G(hostname), 0, 0, NULL, "",
     "name in the greeting, EHLO and Received: (default: the system's host name)"},
    {CFG_SEC_GLOBAL, "listen", CFG_T_STR, G(listen), 0, 0, NULL, "127.0.0.1:25",
     "SMTP listeners, space-separated host:port ([v6addr]:port for IPv6)"},
    {CFG_SEC_GLOBAL, "queue_dir", CFG_T_PATH, G(queue_dir), 0, 0, NULL, "/var/spool/holdfast",
     "directory of the LMDB queue (created 0700 if missing)"},
    {CFG_SEC_GLOBAL, "control_socket", CFG_T_PATH, G(control_socket), 0, 0, NULL,
     "/run/holdfast/relayd.sock", "Unix socket relayctl uses for actions (mode 0600)"},
    {CFG_SEC_GLOBAL, "log", CFG_T_ENUM, G(log), 0, 0, "stderr|syslog", "stderr",
     "where log lines go (syslog facility mail)"},
    {CFG_SEC_GLOBAL, "log_level", CFG_T_ENUM, G(log_level), 0, 0, "err|warn|info|debug", "info",
     "lowest level logged"},
    {CFG_SEC_GLOBAL, "max_message_size", CFG_T_SIZE, G(max_message_size), 1 * KIB, 1 * GIB, NULL,
     "10M", "largest message accepted, octets (SIZE; 552 5.3.4 beyond)"},
    {CFG_SEC_GLOBAL, "max_data_memory", CFG_T_SIZE, G(max_data_memory), 1 * MIB, 1024 * GIB, NULL,
     "512M", "memory for messages being received, all sessions together (452 4.3.1 beyond)"},
    {CFG_SEC_GLOBAL, "max_recipients", CFG_T_U64, G(max_recipients), 1, 100000, NULL, "100",
     "recipients per message (452 4.5.3 beyond)"},
    {CFG_SEC_GLOBAL, "max_connections", CFG_T_U64, G(max_connections), 1, 1000000, NULL, "1000",
     "simultaneous inbound sessions (421 4.7.0 beyond)"},
    {CFG_SEC_GLOBAL, "max_connections_per_ip", CFG_T_U64, G(max_connections_per_ip), 1, 1000000,
     NULL, "50", "simultaneous sessions from one client address (421 4.7.0 beyond)"},
    {CFG_SEC_GLOBAL, "max_bad_commands", CFG_T_U64, G(max_bad_commands), 1, 1000, NULL, "10",
     "bad commands before the session is dropped with 421 4.7.0"},
    {CFG_SEC_GLOBAL, "timeout_command", CFG_T_SECONDS, G(timeout_command), 1, 86400, NULL, "300",
     "idle time waiting for a command (RFC 5321 4.5.3.2.7: 5 minutes)"},
    {CFG_SEC_GLOBAL, "timeout_data", CFG_T_SECONDS, G(timeout_data), 1, 86400, NULL, "600",
     "idle time waiting for the next DATA block"},
    {CFG_SEC_GLOBAL, "bare_lf", CFG_T_ENUM, G(bare_lf), 0, 0, "reject|normalise", "reject",
     "bare LF or CR in a message: refuse it (554 5.6.0) or store CRLF instead"},
    {CFG_SEC_GLOBAL, "map_size", CFG_T_SIZE, G(map_size), 1 * MIB, 1024 * GIB, NULL, "256M",
     "initial LMDB map size; it grows by doubling when full"},
    {CFG_SEC_GLOBAL, "max_map_size", CFG_T_SIZE, G(max_map_size), 1 * MIB, 1024 * GIB, NULL, "64G",
     "largest LMDB map; past it new mail gets 452 4.3.1"},
    {CFG_SEC_GLOBAL, "dns_servers", CFG_T_STR, G(dns_servers), 0, 0, NULL, "",
     "resolvers as host:port list (default: /etc/resolv.conf)"},
    {CFG_SEC_GLOBAL, "dns_timeout", CFG_T_SECONDS, G(dns_timeout), 1, 300, NULL, "5",
     "seconds per DNS try"},
    {CFG_SEC_GLOBAL, "smtp_port", CFG_T_U64, G(smtp_port), 1, 65535, NULL, "25",
     "port of the MX hosts relayd delivers to"},
    {CFG_SEC_GLOBAL, "self_names", CFG_T_STR, G(self_names), 0, 0, NULL, "",
     "host names that are this relay, for the backup-MX rule (hostname is always one)"},
    {CFG_SEC_GLOBAL, "self_addrs", CFG_T_STR, G(self_addrs), 0, 0, NULL, "",
     "addresses that are this relay, for the backup-MX rule (listen addresses are always)"},
    {CFG_SEC_GLOBAL, "etrn", CFG_T_BOOL, G(etrn_enable), 0, 0, NULL, "yes",
     "offer and accept ETRN"},
    {CFG_SEC_GLOBAL, "etrn_allow", CFG_T_STR, G(etrn_allow), 0, 0, NULL, "0.0.0.0/0 ::/0",
     "client networks that may send ETRN"},
    {CFG_SEC_GLOBAL, "etrn_require_auth", CFG_T_BOOL, G(etrn_require_auth), 0, 0, NULL, "no",
     "ETRN only after AUTH"},
    {CFG_SEC_GLOBAL, "etrn_trusted", CFG_T_STR, G(etrn_trusted), 0, 0, NULL, "127.0.0.0/8 ::1/128",
     "client networks that get queue counts (251/252/253) in ETRN replies"},
    {CFG_SEC_GLOBAL, "etrn_rate_client", CFG_T_U64, G(etrn_rate_client), 1, 100000, NULL, "10",
     "ETRN commands per minute from one client address (458 beyond)"},
    {CFG_SEC_GLOBAL, "etrn_rate_domain", CFG_T_U64, G(etrn_rate_domain), 1, 100000, NULL, "6",
     "queue runs started per minute for one domain (458 beyond)"},
    {CFG_SEC_GLOBAL, "flush_connections", CFG_T_U64, G(flush_connections), 1, 100, NULL, "2",
     "parallel outbound connections per domain during a flush"},
    {CFG_SEC_GLOBAL, "timeout_connect", CFG_T_SECONDS, G(timeout_connect), 1, 600, NULL, "30",
     "outbound connection timeout"},
    {CFG_SEC_GLOBAL, "retry_interval", CFG_T_SECONDS, G(retry_interval), 0, 86400, NULL, "60",
     "how often due mail of domains without hold = yes is retried (0: only on request)"},
    {CFG_SEC_GLOBAL, "metrics_listen", CFG_T_STR, G(metrics_listen), 0, 0, NULL, "",
     "address:port of the Prometheus metrics endpoint (empty: off; keep it on loopback)"},
    {CFG_SEC_GLOBAL, "listen_tls", CFG_T_STR, G(listen_tls), 0, 0, NULL, "",
     "implicit-TLS SMTP listeners (RFC 8314), host:port list; needs tls_cert"},
    {CFG_SEC_GLOBAL, "tls_cert", CFG_T_PATH, G(tls_cert), 0, 0, NULL, "",
     "server certificate chain (PEM); with tls_key enables STARTTLS; reloaded on SIGHUP"},
    {CFG_SEC_GLOBAL, "tls_key", CFG_T_PATH, G(tls_key), 0, 0, NULL, "",
     "private key of tls_cert (PEM)"},
    {CFG_SEC_GLOBAL, "tls_ca_file", CFG_T_PATH, G(tls_ca_file), 0, 0, NULL, "",
     "CAs trusted for outbound tls = verify and by fetchd (default: the system store)"},
    {CFG_SEC_GLOBAL, "auth_file", CFG_T_PATH, G(auth_file), 0, 0, NULL, "",
     "credentials (user:scrypt-hash:domains); AUTH is offered over TLS when set"},
    {CFG_SEC_GLOBAL, "submission", CFG_T_BOOL, G(submission), 0, 0, NULL, "yes",
     "authenticated clients may relay to any domain"},
    {CFG_SEC_GLOBAL, "submission_users", CFG_T_STR, G(submission_users), 0, 0, NULL, "",
     "users allowed to relay when submission = yes (empty: every authenticated user)"},
    {CFG_SEC_GLOBAL, "received_auth_user", CFG_T_BOOL, G(received_auth_user), 0, 0, NULL, "no",
     "name the authenticated user in the Received: header (privacy: off by default)"},
    {CFG_SEC_GLOBAL, "auth_fail_limit", CFG_T_U64, G(auth_fail_limit), 1, 1000, NULL, "5",
     "failed AUTH attempts per client address per minute before 454 4.7.0"},
    {CFG_SEC_GLOBAL, "user", CFG_T_STR, G(user), 0, 0, NULL, "",
     "started as root: run as this user once ports, queue and keys are open"},
    {CFG_SEC_GLOBAL, "group", CFG_T_STR, G(group), 0, 0, NULL, "",
     "group for user (default: the user's primary group)"},
    {CFG_SEC_GLOBAL, "allow_root", CFG_T_BOOL, G(allow_root), 0, 0, NULL, "no",
     "accept running as root after start-up (no: a warning, or an error with user = root)"},
    {CFG_SEC_GLOBAL, "max_queue_lifetime", CFG_T_SECONDS, G(max_queue_lifetime), 60, 31536000, NULL,
     "5d", "how long mail is kept undelivered before it bounces (per domain too)"},
    {CFG_SEC_GLOBAL, "delay_warning_time", CFG_T_SECONDS, G(delay_warning_time), 0, 31536000, NULL,
     "4h", "send the sender one delay DSN after this long undelivered (0: never; per domain too)"},
    {CFG_SEC_GLOBAL, "expiry_warning_time", CFG_T_SECONDS, G(expiry_warning_time), 0, 31536000,
     NULL, "1d", "warn a domain's postmaster this long before its mail expires, once a period"},
    {CFG_SEC_GLOBAL, "probe_interval", CFG_T_SECONDS, G(probe_interval), 1, 86400, NULL, "60",
     "how often the primary MX of accept_only_if_primary_down domains is probed"},
    {CFG_SEC_GLOBAL, "probe_timeout", CFG_T_SECONDS, G(probe_timeout), 1, 300, NULL, "10",
     "bound on each step of a probe (connect, greeting, EHLO)"},
    {CFG_SEC_GLOBAL, "bounce_size_limit", CFG_T_SIZE, G(bounce_size_limit), 1 * KIB, 100 * MIB,
     NULL, "100K", "largest message returned whole in a DSN; bigger ones: headers only"},
    {CFG_SEC_GLOBAL, "double_bounce_to", CFG_T_STR, G(double_bounce_to), 0, 0, NULL, "",
     "address that gets undeliverable DSNs (null sender); empty: dropped and logged"},
    /* fetchd, global */
    {CFG_SEC_GLOBAL, "pid_file", CFG_T_PATH, G(pid_file), 0, 0, NULL, "",
     "fetchd: pid file written when running as a daemon"},
    {CFG_SEC_GLOBAL, "interval", CFG_T_SECONDS, G(interval), 0, 604800, NULL, "0",
     "fetchd: periodic release every N seconds (0: off)"},
    {CFG_SEC_GLOBAL, "debounce", CFG_T_SECONDS, G(debounce), 0, 3600, NULL, "5",
     "fetchd: quiet time after a link change before releasing"},
    {CFG_SEC_GLOBAL, "local_mta", CFG_T_STR, G(local_mta), 0, 0, NULL, "127.0.0.1:25",
     "fetchd: the local MTA that receives the mail (host:port)"},
    {CFG_SEC_GLOBAL, "local_mta_wait", CFG_T_SECONDS, G(local_mta_wait), 0, 3600, NULL, "60",
     "fetchd: how long to wait for the local MTA to accept connections"},
    {CFG_SEC_GLOBAL, "retry_limit", CFG_T_U64, G(retry_limit), 0, 1000, NULL, "5",
     "fetchd: retries of a relay that is down or answers 4xx"},
    {CFG_SEC_GLOBAL, "retry_delay", CFG_T_SECONDS, G(retry_delay), 1, 86400, NULL, "30",
     "fetchd: wait before the first retry of a relay; doubles each retry (jittered)"},
    {CFG_SEC_GLOBAL, "retry_delay_max", CFG_T_SECONDS, G(retry_delay_max), 1, 86400, NULL, "900",
     "fetchd: longest wait between retries of a relay"},
    /* [domain NAME] */
    {CFG_SEC_DOMAIN, "subdomains", CFG_T_BOOL, D(subdomains), 0, 0, NULL, "no",
     "also relay for every subdomain"},
    {CFG_SEC_DOMAIN, "recipients", CFG_T_PATH, D(recipients), 0, 0, NULL, NULL,
     "file of valid recipients (local parts or addresses); others get 550 5.1.1"},
    {CFG_SEC_DOMAIN, "next_hop", CFG_T_STR, D(next_hop), 0, 0, NULL, NULL,
     "static next hop [addr]:port instead of DNS (not DNS-verified)"},
    {CFG_SEC_DOMAIN, "etrn_allow", CFG_T_STR, D(etrn_allow), 0, 0, NULL, NULL,
     "more client networks trusted with this domain's ETRN counts"},
    {CFG_SEC_DOMAIN, "hold", CFG_T_BOOL, D(hold), 0, 0, NULL, "no",
     "never deliver on the retry timer; only ETRN, ATRN or relayctl release"},
    {CFG_SEC_DOMAIN, "tls", CFG_T_ENUM, D(tls), 0, 0, "none|may|encrypt|verify|dane", "may",
     "outbound TLS policy for this domain"},
    {CFG_SEC_DOMAIN, "max_queue_lifetime", CFG_T_SECONDS, D(max_queue_lifetime), 60, 31536000, NULL,
     NULL, "this domain's queue lifetime (default: the global one; e.g. 28d for hold)"},
    {CFG_SEC_DOMAIN, "accept_only_if_primary_down", CFG_T_BOOL, D(accept_only_if_primary_down), 0,
     0, NULL, "no", "RCPT gets 451 4.7.1 while a more-preferred MX answers probes"},
    {CFG_SEC_DOMAIN, "expiry_warning_time", CFG_T_SECONDS, D(expiry_warning_time), 0, 31536000,
     NULL, NULL, "this domain's expiry warning time (default: the global one; 0: never)"},
    {CFG_SEC_DOMAIN, "expiry_warning_to", CFG_T_STR, D(expiry_warning_to), 0, 0, NULL, NULL,
     "who gets the expiry warning (default: postmaster@DOMAIN)"},
    {CFG_SEC_DOMAIN, "delay_warning_time", CFG_T_SECONDS, D(delay_warning_time), 0, 31536000, NULL,
     NULL, "this domain's delay warning time (default: the global one; 0: never)"},
    /* [group NAME] */
    {CFG_SEC_GROUP, "domains", CFG_T_STR, GR(domains), 0, 0, NULL, NULL,
     "domains released together by ETRN #NAME"},
    /* [relay NAME] (fetchd) */
    {CFG_SEC_RELAY, "host", CFG_T_STR, R(host), 0, 0, NULL, NULL,
     "relay host name or address (empty or absent: every MX host of each domain)"},
    {CFG_SEC_RELAY, "port", CFG_T_U64, R(port), 1, 65535, NULL, "25", "relay SMTP port"},
    {CFG_SEC_RELAY, "domains", CFG_T_STR, R(domains), 0, 0, NULL, NULL,
     "domains to release from this relay"},
    {CFG_SEC_RELAY, "mode", CFG_T_ENUM, R(mode), 0, 0, "etrn|atrn", "etrn", "how to release"},
    {CFG_SEC_RELAY, "tls", CFG_T_ENUM, R(tls), 0, 0, "no|may|require", "may",
     "STARTTLS towards the relay"},
    {CFG_SEC_RELAY, "auth_user", CFG_T_STR, R(auth_user), 0, 0, NULL, NULL, "AUTH user name"},
    {CFG_SEC_RELAY, "auth_password_file", CFG_T_PATH, R(auth_password_file), 0, 0, NULL, NULL,
     "file holding the AUTH password (first line; no access for group or others)"},
    {CFG_SEC_RELAY, "tls_verify", CFG_T_ENUM, R(tls_verify), 0, 0, "auto|yes|no", "auto",
     "check the relay's certificate and host name (auto: yes with require or auth_user)"},
};
const size_t cfg_nkeys = sizeof(cfg_keys) / sizeof(cfg_keys[0]);

static const char *const cfg_section_names[] = {"global", "domain", "group", "relay"};

int cfg_errors_add(struct cfg_errors *e, const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct cfg_error *v = realloc(e->v, (e->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    e->v = v;
    v[e->n].file = strdup(file ? file : "-");
    v[e->n].msg = strdup(msg);
    v[e->n].line = line;
    if (!v[e->n].file || !v[e->n].msg) {
        free(v[e->n].file);
        free(v[e->n].msg);
        return -ENOMEM;
    }
    e->n++;
    return 0;
}

/* Parses an unsigned number with an optional unit suffix. */
static int cfg_parse_num(const char *s, enum cfg_type t, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    uint64_t mul = 1;
    if (*end && t == CFG_T_SIZE) {
        switch (*end) {
        case 'k':
        case 'K':
            mul = KIB;
            break;
        case 'm':
        case 'M':
            mul = MIB;
            break;
        case 'g':
        case 'G':
            mul = GIB;
            break;
        default:
            return -EINVAL;
        }
        end++;
    } else if (*end && t == CFG_T_SECONDS) {
        switch (*end) {
        case 's':
            mul = 1;
            break;
        case 'm':
            mul = 60;
            break;
        case 'h':
            mul = 3600;
            break;
        case 'd':
            mul = 86400;
            break;
        default:
            return -EINVAL;
        }
        end++;
    }
    if (*end)
        return -EINVAL;
    if (mul > 1 && v > UINT64_MAX / mul)
        return -ERANGE;
    *out = (uint64_t)v * mul;
    return 0;
}

static int cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static bool cfg_enum_has(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && strncmp(p, v, l) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

static char *cfg_join_path(const char *dir, const char *v)
{
    if (v[0] == '/' || v[0] == '\0' || !dir || strcmp(dir, ".") == 0)
        return strdup(v);
    size_t n = strlen(dir) + strlen(v) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, v);
    return p;
}

/* Stores value v for key k into the struct at base. Returns 0, -EINVAL/-ERANGE with a
 * reason in why, or -ENOMEM. */
static int cfg_set(const struct cfg_key *k, void *base, const char *v, const char *dir, char *why,
                   size_t whysz)
{
    char *field = (char *)base + k->offset;
    switch (k->type) {
    case CFG_T_STR:
    case CFG_T_ENUM:
    case CFG_T_PATH: {
        if (k->type == CFG_T_ENUM && !cfg_enum_has(k->choices, v)) {
            snprintf(why, whysz, "must be one of %s", k->choices);
            return -EINVAL;
        }
        char *s = k->type == CFG_T_PATH ? cfg_join_path(dir, v) : strdup(v);
        if (!s)
            return -ENOMEM;
        char **slot = (char **)(void *)field;
        free(*slot);
        *slot = s;
        return 0;
    }
    case CFG_T_U64:
    case CFG_T_SIZE:
    case CFG_T_SECONDS: {
        uint64_t n;
        int rc = cfg_parse_num(v, k->type, &n);
        if (rc < 0) {
            snprintf(why, whysz, "%s",
                     k->type == CFG_T_SIZE      ? "must be a number with optional K, M or G"
                     : k->type == CFG_T_SECONDS ? "must be a number with optional s, m, h or d"
                                                : "must be a whole number");
            return -EINVAL;
        }
        if (n < k->min || n > k->max) {
            snprintf(why, whysz, "must be between %" PRIu64 " and %" PRIu64, k->min, k->max);
            return -ERANGE;
        }
        memcpy(field, &n, sizeof(n));
        return 0;
    }
    case CFG_T_BOOL: {
        bool b;
        if (cfg_parse_bool(v, &b) < 0) {
            snprintf(why, whysz, "must be yes or no");
            return -EINVAL;
        }
        memcpy(field, &b, sizeof(b));
        return 0;
    }
    }
    return -EINVAL;
}

static const struct cfg_key *cfg_find_key(enum cfg_section sec, const char *name)
{
    for (size_t i = 0; i < cfg_nkeys; i++)
        if (cfg_keys[i].section == sec && strcmp(cfg_keys[i].name, name) == 0)
            return &cfg_keys[i];
    return NULL;
}

/* Applies the defaults of section sec to the struct at base. */
static int cfg_defaults(enum cfg_section sec, void *base)
{
    char why[128];
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        if (k->section != sec || !k->def)
            continue;
        int rc = cfg_set(k, base, k->def, NULL, why, sizeof(why));
        if (rc == -ENOMEM)
            return rc;
    }
    return 0;
}

int cfg_init(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    return cfg_defaults(CFG_SEC_GLOBAL, c);
}

static char *cfg_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static bool cfg_name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return false;
    return true;
}

/* Opens a new section; returns the struct to fill, NULL with an error recorded. */
static void *cfg_open_section(struct cfg *c, enum cfg_section sec, char *name, int line,
                              const char *file, struct cfg_errors *errs, int *rc)
{
    void *base = NULL;
    *rc = 0;
    if (sec == CFG_SEC_DOMAIN) {
        addr_lower(name);
        if (!addr_domain_is_valid(name, strlen(name), false)) {
            *rc = cfg_errors_add(errs, file, line, "invalid domain name '%s'", name);
            return NULL;
        }
        for (size_t i = 0; i < c->ndomains; i++)
            if (strcmp(c->domains[i].name, name) == 0) {
                *rc = cfg_errors_add(errs, file, line, "domain %s already defined at line %d", name,
                                     c->domains[i].line);
                return NULL;
            }
        struct cfg_domain *v = realloc(c->domains, (c->ndomains + 1) * sizeof(*v));
        if (!v)
            goto nomem;
        c->domains = v;
        base = &v[c->ndomains];
        memset(base, 0, sizeof(*v));
        v[c->ndomains].name = strdup(name);
        v[c->ndomains].line = line;
        /* Lifetimes not given in the section come from the global keys. */
        v[c->ndomains].max_queue_lifetime = v[c->ndomains].delay_warning_time = CFG_INHERIT;
        v[c->ndomains].expiry_warning_time = CFG_INHERIT;
        if (!v[c->ndomains].name)
            goto nomem;
        c->ndomains++;
    } else if (sec == CFG_SEC_GROUP) {
        if (!cfg_name_ok(name)) {
            *rc = cfg_errors_add(errs, file, line, "invalid group name '%s'", name);
            return NULL;
        }
        for (size_t i = 0; i < c->ngroups; i++)
            if (strcmp(c->groups[i].name, name) == 0) {
                *rc = cfg_errors_add(errs, file, line, "group %s already defined at line %d", name,
                                     c->groups[i].line);
                return NULL;
            }
        struct cfg_group *v = realloc(c->groups, (c->ngroups + 1) * sizeof(*v));
        if (!v)
            goto nomem;
        c->groups = v;
        base = &v[c->ngroups];
        memset(base, 0, sizeof(*v));
        v[c->ngroups].name = strdup(name);
        v[c->ngroups].line = line;
        if (!v[c->ngroups].name)
            goto nomem;
        c->ngroups++;
    } else {
        if (!cfg_name_ok(name)) {
            *rc = cfg_errors_add(errs, file, line, "invalid relay name '%s'", name);
            return NULL;
        }
        for (size_t i = 0; i < c->nrelays; i++)
            if (strcmp(c->relays[i].name, name) == 0) {
                *rc = cfg_errors_add(errs, file, line, "relay %s already defined at line %d", name,
                                     c->relays[i].line);
                return NULL;
            }
        struct cfg_relay *v = realloc(c->relays, (c->nrelays + 1) * sizeof(*v));
        if (!v)
            goto nomem;
        c->relays = v;
        base = &v[c->nrelays];
        memset(base, 0, sizeof(*v));
        v[c->nrelays].name = strdup(name);
        v[c->nrelays].line = line;
        if (!v[c->nrelays].name)
            goto nomem;
        c->nrelays++;
    }
    if (cfg_defaults(sec, base) < 0)
        goto nomem;
    return base;
nomem:
    *rc = -ENOMEM;
    return NULL;
}

/* Checks that every word of list is a configured domain. */
static int cfg_check_domain_list(const struct cfg *c, const char *list, const char *what,
                                 const char *file, int line, struct cfg_errors *errs)
{
    int rc = 0;
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", list ? list : "");
    char *save = NULL;
    int n = 0;
    for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
        n++;
        addr_lower(w);
        if (!addr_domain_is_valid(w, strlen(w), false))
            rc = cfg_errors_add(errs, file, line, "%s: invalid domain name '%s'", what, w);
        else if (c->ndomains && strcmp(what, "group") == 0 && !cfg_find_domain(c, w))
            rc = cfg_errors_add(errs, file, line, "%s: '%s' is not a configured [domain]", what, w);
        if (rc < 0)
            return rc;
    }
    if (n == 0)
        rc = cfg_errors_add(errs, file, line, "%s: 'domains' must name at least one domain", what);
    return rc;
}

static int cfg_check(struct cfg *c, const char *file, struct cfg_errors *errs)
{
    int rc = 0;
    for (size_t i = 0; i < c->ngroups && rc == 0; i++)
        rc = cfg_check_domain_list(c, c->groups[i].domains, "group", file, c->groups[i].line, errs);
    for (size_t i = 0; i < c->nrelays && rc == 0; i++) {
        /* No host: fetchd asks every MX host of each domain instead. */
        rc = cfg_check_domain_list(c, c->relays[i].domains, "relay", file, c->relays[i].line, errs);
    }
    if (rc == 0 && c->max_map_size < c->map_size)
        rc = cfg_errors_add(errs, file, 0,
                            "max_map_size (%" PRIu64 ") is smaller than map_size (%" PRIu64 ")",
                            c->max_map_size, c->map_size);
    return rc;
}

int cfg_parse(const char *text, size_t len, const char *file, struct cfg *c,
              struct cfg_errors *errs)
{
    int rc = 0;
    size_t nerr0 = errs->n;
    enum cfg_section sec = CFG_SEC_GLOBAL;
    void *base = c;
    char *dir = NULL;

    free(c->path);
    c->path = strdup(file ? file : "-");
    if (!c->path)
        return -ENOMEM;
    const char *slash = file ? strrchr(file, '/') : NULL;
    dir = slash ? strndup(file, (size_t)(slash - file) + (slash == file)) : strdup(".");
    if (!dir)
        return -ENOMEM;
    free(c->dir);
    c->dir = dir;

    int line = 0;
    size_t pos = 0;
    while (pos < len && rc >= 0) {
        line++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char *buf = strndup(text + pos, l);
        pos += l + (nl ? 1 : 0);
        if (!buf)
            return -ENOMEM;
        if (strlen(buf) != l) {
            rc = cfg_errors_add(errs, file, line, "NUL byte in line");
            free(buf);
            continue;
        }
        char *s = cfg_trim(buf);
        if (*s == '\0' || *s == '#' || *s == ';') {
            free(buf);
            continue;
        }
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end || cfg_trim(end + 1)[0] != '\0') {
                rc = cfg_errors_add(errs, file, line, "section header must be [type name]");
                base = NULL;
                free(buf);
                continue;
            }
            *end = '\0';
            char *type = cfg_trim(s + 1);
            char *name = type + strcspn(type, " \t");
            if (*name)
                *name++ = '\0';
            name = cfg_trim(name);
            enum cfg_section ns;
            if (strcmp(type, "domain") == 0)
                ns = CFG_SEC_DOMAIN;
            else if (strcmp(type, "group") == 0)
                ns = CFG_SEC_GROUP;
            else if (strcmp(type, "relay") == 0)
                ns = CFG_SEC_RELAY;
            else {
                rc = cfg_errors_add(errs, file, line,
                                    "unknown section type '%s' (domain, group or relay)", type);
                base = NULL;
                free(buf);
                continue;
            }
            if (!*name || strchr(name, ' ') || strchr(name, '\t')) {
                rc = cfg_errors_add(errs, file, line, "[%s] needs exactly one name", type);
                base = NULL;
                free(buf);
                continue;
            }
            sec = ns;
            base = cfg_open_section(c, sec, name, line, file, errs, &rc);
            free(buf);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = cfg_errors_add(errs, file, line, "expected 'key = value'");
            free(buf);
            continue;
        }
        *eq = '\0';
        char *key = cfg_trim(s);
        char *val = cfg_trim(eq + 1);
        const struct cfg_key *k = cfg_find_key(sec, key);
        if (!k) {
            const struct cfg_key *other = NULL;
            for (int t = 0; t < 4 && !other; t++)
                other = cfg_find_key((enum cfg_section)t, key);
            if (other)
                rc = cfg_errors_add(
                    errs, file, line, "key '%s' belongs %s%s%s, not %s%s%s", key,
                    other->section == CFG_SEC_GLOBAL ? "at the top (a [global] " : "in a [",
                    other->section == CFG_SEC_GLOBAL ? "key" : cfg_section_names[other->section],
                    other->section == CFG_SEC_GLOBAL ? ")" : "] section",
                    sec == CFG_SEC_GLOBAL ? "at the top" : "in [",
                    sec == CFG_SEC_GLOBAL ? "" : cfg_section_names[sec],
                    sec == CFG_SEC_GLOBAL ? "" : "]");
            else
                rc = cfg_errors_add(errs, file, line, "unknown key '%s'", key);
            free(buf);
            continue;
        }
        if (!base) { /* inside a section whose header was wrong: already reported */
            free(buf);
            continue;
        }
        if (*val == '\0' && k->type != CFG_T_STR) {
            rc = cfg_errors_add(errs, file, line, "'%s' needs a value", key);
            free(buf);
            continue;
        }
        char why[160];
        int r = cfg_set(k, base, val, c->dir, why, sizeof(why));
        if (r == -ENOMEM)
            rc = r;
        else if (r < 0)
            rc = cfg_errors_add(errs, file, line, "'%s = %s': %s", key, val, why);
        free(buf);
    }
    if (rc >= 0)
        rc = cfg_check(c, file, errs);
    if (rc == -ENOMEM)
        return rc;
    return errs->n > nerr0 ? HF_ECONFIG : 0;
}

int cfg_load(const char *path, struct cfg *c, struct cfg_errors *errs)
{
    int rc = cfg_init(c);
    if (rc < 0)
        return rc;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        rc = cfg_errors_add(errs, path, 0, "cannot read: %s", strerror(e));
        return rc < 0 ? rc : HF_ECONFIG;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            if (cap > 16 * MIB) {
                fclose(f);
                free(text);
                rc = cfg_errors_add(errs, path, 0, "file larger than 16 MiB");
                return rc < 0 ? rc : HF_ECONFIG;
            }
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) {
                fclose(f);
                free(text);
                return -ENOMEM;
            }
            text = t;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        rc = cfg_errors_add(errs, path, 0, "read error");
        return rc < 0 ? rc : HF_ECONFIG;
    }
    rc = cfg_parse(text, len, path, c, errs);
    free(text);
    return rc;
}

static void cfg_free_fields(enum cfg_section sec, void *base)
{
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        if (k->section != sec)
            continue;
        if (k->type == CFG_T_STR || k->type == CFG_T_ENUM || k->type == CFG_T_PATH) {
            char **slot = (char **)(void *)((char *)base + k->offset);
            free(*slot);
            *slot = NULL;
        }
    }
}

void cfg_free(struct cfg *c)
{
    if (!c)
        return;
    cfg_free_fields(CFG_SEC_GLOBAL, c);
    for (size_t i = 0; i < c->ndomains; i++) {
        cfg_free_fields(CFG_SEC_DOMAIN, &c->domains[i]);
        free(c->domains[i].name);
    }
    for (size_t i = 0; i < c->ngroups; i++) {
        cfg_free_fields(CFG_SEC_GROUP, &c->groups[i]);
        free(c->groups[i].name);
    }
    for (size_t i = 0; i < c->nrelays; i++) {
        cfg_free_fields(CFG_SEC_RELAY, &c->relays[i]);
        free(c->relays[i].name);
    }
    free(c->domains);
    free(c->groups);
    free(c->relays);
    free(c->path);
    free(c->dir);
    memset(c, 0, sizeof(*c));
}

void cfg_errors_print(const struct cfg_errors *e, FILE *f, const char *prefix)
{
    for (size_t i = 0; i < e->n; i++) {
        if (e->v[i].line > 0)
            fprintf(f, "%s%s:%d: %s\n", prefix, e->v[i].file, e->v[i].line, e->v[i].msg);
        else
            fprintf(f, "%s%s: %s\n", prefix, e->v[i].file, e->v[i].msg);
    }
}

void cfg_errors_free(struct cfg_errors *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].file);
        free(e->v[i].msg);
    }
    free(e->v);
    e->v = NULL;
    e->n = 0;
}

const struct cfg_domain *cfg_find_domain(const struct cfg *c, const char *domain)
{
    const struct cfg_domain *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < c->ndomains; i++) {
        const struct cfg_domain *d = &c->domains[i];
        if (!addr_domain_matches(domain, d->name, d->subdomains))
            continue;
        size_t l = strlen(d->name);
        if (!best || l > best_len) {
            best = d;
            best_len = l;
        }
    }
    return best;
}
