/* ETRN (RFC 1985) decisions: argument syntax, which configured domains an argument names,
 * who may ask, rate limits, and the exact reply. Pure: the clock, the queue counts and the
 * running flushes come in as arguments; the glue (flush.c) acts on the decision.
 *
 * Replies (RFC 1985 5.1-5.3): 250 queue run started, 251 nothing waiting, 252 pending
 * messages started, 253 <n> pending messages started, 458 cannot queue now, 459 node not
 * allowed (with the reason), 500/501 syntax. Counts tell how much mail is held, so only
 * trusted clients get 251/252/253; others get a plain 250 whatever the queue holds, or 459. */
#ifndef HF_ETRN_H
#define HF_ETRN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cfg.h"

enum etrn_kind {
    ETRN_DOMAIN = 0, /* "ETRN branch.test": that domain only */
    ETRN_SUBTREE,    /* "ETRN @branch.test": the domain and its subdomains */
    ETRN_GROUP,      /* "ETRN #offices": the domains of [group offices] */
};

struct etrn_req {
    enum etrn_kind kind;
    char name[256]; /* lower-case domain, or group name */
};

/* Parses the ETRN argument. Returns 0, or HF_ESYNTAX (empty, "@", "#", bad domain syntax,
 * over-long) — answered 501 5.5.4. */
int etrn_parse(const char *arg, struct etrn_req *out);

/* A network list "10.0.0.0/8 ::1/128 192.0.2.7" parsed once. */
struct etrn_net {
    struct sockaddr_storage addr;
    unsigned bits;
};
struct etrn_nets {
    struct etrn_net *v;
    size_t n;
};
/* Parses list (space or comma separated). Returns 0, -EINVAL (bad entry; *bad gets its
 * index from 0), -ENOMEM. */
int etrn_nets_parse(const char *list, struct etrn_nets *out, size_t *bad);
void etrn_nets_free(struct etrn_nets *n);
bool etrn_nets_match(const struct etrn_nets *n, const struct sockaddr_storage *sa);

/* Everything the decision needs about the request's context. */
struct etrn_ctx {
    bool allowed; /* client address within etrn_allow (and AUTH when required) */
    bool auth_ok; /* etrn_require_auth satisfied */
    bool trusted; /* gets counts: authenticated, etrn_trusted, the domain's etrn_allow */
    bool client_rate_ok;
    bool domain_rate_ok;
    bool running;      /* a flush for (one of) the named domains is already running */
    bool held;         /* the operator holds the domain (relayctl hold) */
    uint64_t messages; /* messages waiting for the named domains */
};

struct etrn_reply {
    int code;
    char enh[8];
    char text[400];
    bool start; /* start the flush */
};

/* Decides the reply for req (already parsed and resolved to served domains: served=false
 * when no configured domain matches). */
void etrn_decide(const struct etrn_req *req, bool served, const struct etrn_ctx *ctx,
                 struct etrn_reply *out);

/* Which configured domains does req name? Calls cb for each [domain] section that is the
 * domain, inside it (subdomains=yes covers it), or (for @domain) below it. For a group,
 * each of the group's domains. Returns how many matched. */
typedef void (*etrn_domain_cb)(const struct cfg_domain *d, const char *name, void *arg);
size_t etrn_match(const struct cfg *c, const struct etrn_req *req, etrn_domain_cb cb, void *arg);

#endif
