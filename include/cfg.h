/* Configuration: text in, a filled struct cfg and a list of errors out. Pure.
 *
 * Format (one format for relayd and fetchd):
 *   # comment                    whole-line comments only; '#' inside a value is kept
 *   key = value                  global keys
 *   [domain branch.test]         a relay domain and its keys
 *   [group office]               a named group of domains (ETRN #office)
 *   [relay relay1]               fetchd: a relay to ask
 * Every key lives in one table (cfg_keys) with its type, bounds, default and one-line help;
 * the parser, the defaults, `relayd -t` and README's reference all come from it.
 * Errors carry file:line; parsing goes on after an error so all of them are reported. */
#ifndef HF_CFG_H
#define HF_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A per-domain number not set in its section: the global key's value applies. */
#define CFG_INHERIT UINT64_MAX

enum cfg_section { CFG_SEC_GLOBAL = 0, CFG_SEC_DOMAIN, CFG_SEC_GROUP, CFG_SEC_RELAY };

struct cfg_domain {
    char *name; /* lower-case domain */
    int line;
    bool subdomains;
    char *recipients;            /* path (resolved against the config's directory) or NULL */
    char *next_hop;              /* "[addr]:port" static next hop, not DNS-verified; or NULL */
    char *etrn_allow;            /* extra client networks allowed counts for this domain; or NULL */
    bool hold;                   /* hold: never release automatically */
    char *tls;                   /* outbound TLS policy */
    uint64_t max_queue_lifetime; /* seconds, or CFG_INHERIT */
    uint64_t delay_warning_time; /* seconds (0: off), or CFG_INHERIT */
    uint64_t expiry_warning_time;     /* seconds (0: off), or CFG_INHERIT */
    char *expiry_warning_to;          /* address, or NULL: postmaster@name */
    bool accept_only_if_primary_down; /* RCPT 451 while a more-preferred MX answers */
};

struct cfg_group {
    char *name;
    int line;
    char *domains; /* space-separated domain names */
};

struct cfg_relay {
    char *name;
    int line;
    char *host;    /* host or address of the relay */
    uint64_t port; /* its port; 0 when unset (fetchd: 25 for etrn, 366 for atrn) */
    char *domains; /* space-separated domains to release there */
    char *mode;    /* etrn | atrn */
    char *tls;     /* no | may | require */
    char *auth_user;
    char *auth_password_file;
    char *tls_verify; /* auto | yes | no */
};

struct cfg {
    char *path; /* file the text came from */
    char *dir;  /* its directory, for relative paths */

    /* relayd */
    char *hostname;
    char *listen;
    char *queue_dir;
    char *control_socket;
    char *log;
    char *log_level;
    uint64_t max_message_size;
    uint64_t max_data_memory;
    uint64_t max_recipients;
    uint64_t max_connections;
    uint64_t max_connections_per_ip;
    uint64_t max_bad_commands;
    uint64_t timeout_command;
    uint64_t timeout_data;
    char *bare_lf;
    uint64_t map_size;
    uint64_t max_map_size;
    char *dns_servers;
    uint64_t dns_timeout;
    uint64_t smtp_port;
    char *self_names;
    char *self_addrs;
    bool etrn_enable;
    char *etrn_allow;
    bool etrn_require_auth;
    char *etrn_trusted;
    uint64_t etrn_rate_client;
    uint64_t etrn_rate_domain;
    uint64_t flush_connections;
    uint64_t timeout_connect;
    uint64_t retry_interval;
    char *metrics_listen;
    char *listen_tls;
    char *listen_odmr;
    char *listen_odmr_tls;
    char *cram_file;
    uint64_t timeout_atrn; /* seconds */
    char *tls_cert;
    char *tls_key;
    char *tls_ca_file;
    char *auth_file;
    bool submission;
    char *submission_users;
    bool received_auth_user;
    uint64_t auth_fail_limit;
    uint64_t max_queue_lifetime;  /* seconds */
    uint64_t delay_warning_time;  /* seconds; 0: no delay DSNs */
    uint64_t bounce_size_limit;   /* octets returned whole in a DSN */
    uint64_t expiry_warning_time; /* seconds before expiry the postmaster hears; 0: never */
    uint64_t probe_interval;      /* seconds between primary-MX probes */
    uint64_t probe_timeout;       /* seconds per probe step */
    char *double_bounce_to;       /* "" or NULL: double bounces are dropped and logged */
    char *user;      /* run as this user after start-up (relayd and fetchd); "" = stay */
    char *group;     /* its group ("" = the user's primary group) */
    bool allow_root; /* accept running as root after start-up */

    /* fetchd */
    char *pid_file;
    uint64_t interval;
    uint64_t debounce;
    char *local_mta;
    char *local_mta_protocol; /* smtp | lmtp (ATRN: how mail is handed to local_mta) */
    uint64_t local_mta_wait;
    uint64_t retry_limit;
    uint64_t retry_delay;
    uint64_t retry_delay_max;

    struct cfg_domain *domains;
    size_t ndomains;
    struct cfg_group *groups;
    size_t ngroups;
    struct cfg_relay *relays;
    size_t nrelays;
};

struct cfg_error {
    char *file;
    int line; /* 0 when the error is about the whole file */
    char *msg;
};

struct cfg_errors {
    struct cfg_error *v;
    size_t n;
};

/* One entry of the key table. */
enum cfg_type {
    CFG_T_STR,
    CFG_T_PATH,
    CFG_T_U64,
    CFG_T_SIZE,
    CFG_T_SECONDS,
    CFG_T_BOOL,
    CFG_T_ENUM
};

struct cfg_key {
    enum cfg_section section;
    const char *name;
    enum cfg_type type;
    size_t offset;       /* in struct cfg / cfg_domain / cfg_group / cfg_relay */
    uint64_t min, max;   /* numeric bounds */
    const char *choices; /* CFG_T_ENUM: "a|b|c" */
    const char *def;     /* default as config text, NULL for none */
    const char *help;
};

/* True for a key read once at start (listen, queue_dir, user, ...): a SIGHUP reload keeps
 * its running value and says so. */
bool cfg_key_is_restart(const struct cfg_key *k); /* lib/cfg_ref.c */

extern const struct cfg_key cfg_keys[];
extern const size_t cfg_nkeys;

/* Sets every global default in *c (zeroing it first). Returns 0 or -ENOMEM. */
int cfg_init(struct cfg *c);

/* Parses text[0..len) that came from file (borrowed; used in errors and to resolve relative
 * paths) into *c, which cfg_init() prepared. Each problem is appended to *errs with its line.
 * Checks cross-key rules at the end (duplicate domains, groups naming unknown domains...).
 * Returns 0 when there were no errors, HF_ECONFIG when errs holds at least one, -ENOMEM. */
int cfg_parse(const char *text, size_t len, const char *file, struct cfg *c,
              struct cfg_errors *errs);

/* Reads path and parses it (cfg_init + cfg_parse). A file that cannot be read is reported
 * as one error with line 0. Returns as cfg_parse. */
int cfg_load(const char *path, struct cfg *c, struct cfg_errors *errs);

/* Appends an error "file:line: message" to e (printf-style message, cut at 511 octets); line 0
 * for the whole file. Used by every parser of a configuration-like file (credentials,
 * recipient lists, fetchd's checks) so all report alike. Returns 0 or -ENOMEM. */
int cfg_errors_add(struct cfg_errors *e, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prints every error of e to f as "PREFIXfile:line: message" (prefix may be ""). */
void cfg_errors_print(const struct cfg_errors *e, FILE *f, const char *prefix);

/* Frees everything c owns (not c itself). */
void cfg_free(struct cfg *c);
void cfg_errors_free(struct cfg_errors *e);

/* Finds the domain section whose zone covers domain (exact, or a parent with subdomains=yes;
 * the longest match wins). Returns NULL when none. */
const struct cfg_domain *cfg_find_domain(const struct cfg *c, const char *domain);

/* Writes README's reference table (markdown) for all keys to buf; returns length or -ENOSPC.
 * (lib/cfg_ref.c) */
int cfg_reference_md(char *buf, size_t sz);

/* Writes the same reference as roff (man(7)) for holdfast.conf(5): one .TP entry per key of
 * the given section (keys of other sections are skipped), for the man page generator.
 * Returns length or -ENOSPC. (lib/cfg_ref.c) */
int cfg_reference_man(enum cfg_section sec, char *buf, size_t sz);

#endif
