/* The data of queue runs, shared by flush.c (queue runs: loading, DNS, TLSA, results, the
 * retry timer), which owns it, and flush_conn.c (one outbound SMTP connection of a run),
 * which reads it and changes it only through struct flush_conn_owner (flush_conn.h). Not a
 * public interface: everything else uses flush.h. */
#ifndef HF_FLUSH_INT_H
#define HF_FLUSH_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "flush.h"
#include "mx.h"
#include "smtpc.h"

#define FLUSH_ATTEMPTS_MAX 32
#define FLUSH_WORKERS_MAX  16
#define FLUSH_LINE_MAX     2048

struct conn;
struct dns;

struct flush_item {
    uint64_t id;
    struct queue_env env;
    struct queue_rcpt *rcpts; /* this domain's recipients of the message */
    size_t nrcpt;
    bool taken;   /* handed to a worker */
    bool done;    /* results decided (committed or being committed) */
    bool hop_dsn; /* the server that decided it offered DSN (NOTIFY was passed on) */
};

struct flush_run;
struct flush_conn_owner;

struct flush_worker {
    struct flush_run *run;
    const struct flush_conn_owner *own; /* the run's side of the interface (flush_conn.h) */
    struct conn *conn;
    size_t attempt; /* index into run->attempts */
    struct smtpc sc;
    bool sc_live;
    struct flush_item *cur;
    struct smtpc_rcpt *cur_rcpts;
    char *cur_notify;     /* NOTIFY strings for cur's recipients, 32 octets each */
    struct smtpc_msg msg; /* the message smtpc borrows until MSG_DONE */
    char line[FLUSH_LINE_MAX];
    size_t line_len;
    bool tls_switch;              /* STARTTLS accepted: drop the rest of this read */
    bool adopted;                 /* ATRN: the client's own connection, reversed (RFC 2645);
                                     TLS is what the session had, never STARTTLS again */
    uint64_t reply_timeout_ms;    /* adopted: how long each reply may take */
    bool dane_required;           /* usable DNSSEC-signed TLSA records must match */
    char why[400];                /* why this connection failed, when we know better than
                                     the dialogue (a TLS check) */
    char relay[MX_NAME_MAX + 64]; /* host[addr]:port of the current attempt, for logs */
    char tls_desc[160];           /* how TLS went on this connection, for delivery lines */
    /* The current body is read from the queue in libuv's thread pool, off the loop. */
    uv_work_t body_work;
    bool body_busy;   /* a read is in flight: the worker may not be freed */
    bool end_pending; /* the worker ended meanwhile: finish that when the read is back */
    uint64_t body_id; /* the message being read */
    char *body_buf;
    size_t body_len, body_cap;
    int body_rc;
};

/* TLSA records of one exchanger (RFC 7672), copied out of the DNS answer. */
struct flush_tlsa_rr {
    uint8_t usage, selector, mtype;
    unsigned char *data;
    size_t len;
};

struct flush_tlsa {
    bool looked_up;
    int status;  /* 0, -ENOENT (none), HF_EDNSTEMP / HF_EDNS (lookup failed) */
    bool secure; /* DNSSEC-validated (AD bit) */
    struct flush_tlsa_rr *rr;
    size_t n;
};

struct relayd_snap;

struct flush_run {
    struct flush *fl;
    struct relayd_snap *snap; /* the configuration the run started with (a reference) */
    uint64_t id;
    char domain[256];
    char reason[32];
    struct flush_watch watch;
    bool watched;
    int64_t started;
    struct flush_item *items;
    size_t nitems, next_item;
    struct mx_attempt attempts[FLUSH_ATTEMPTS_MAX];
    struct flush_tlsa tlsa[FLUSH_ATTEMPTS_MAX]; /* tls = dane: per attempt */
    size_t tlsa_pending;
    size_t nattempts;
    bool static_hop;
    struct flush_worker *workers[FLUSH_WORKERS_MAX];
    size_t nworkers, workers_live;
    size_t pending_commits;
    bool finishing;
    bool due_only; /* retry timer: only recipients whose next attempt has come */
    int64_t now;
    struct flush_summary sum;
    char last_relay[MX_NAME_MAX + 64]; /* the last exchanger a connection was tried to */
    char **also;                       /* ATRN: the run's other domains (malloc'd) */
    size_t nalso;
    uint64_t bytes;  /* sum of the sizes of the run's messages */
    char audit[800]; /* ATRN: "user=U client=[A] domains=D tls=T", logged at the end */
};

struct flush {
    struct relayd *rd;
    struct dns *dns;
    struct idmap runs; /* run id -> run (for DNS answers and commits) */
    struct flush_run **active;
    size_t nactive;
    uint64_t next_id;
    const char **self_names;
    size_t nself_names;
    struct sockaddr_storage *self_addrs;
    size_t nself_addrs;
    bool stopping;
};

/* Shared by flush.c, flush_setup.c and flush_atrn.c. */
void flush_set_port(struct sockaddr_storage *ss, int port);
void flush_run_free(struct flush_run *run);
/* The run releasing domain now (as its domain or one of an ATRN run's), or NULL. */
struct flush_run *flush_find_active(struct flush *fl, const char *domain);
/* A new run (not yet active) for domain, with its snapshot reference; NULL without memory. */
struct flush_run *flush_run_new(struct relayd *rd, const char *domain, const char *reason,
                                const struct flush_watch *watch);
/* Appends domain's waiting recipients (not failed, not busy in expiry, not of held messages)
 * to run's items. Returns 0 or a negative code. */
int flush_run_load(struct flush_run *run, const char *domain);
/* Makes run active (one run per domain) and logs its start. Returns 0 or -ENOMEM (the
 * caller frees run). */
int flush_run_register(struct flush_run *run);
/* What a run lends its connections (flush.c). */
extern const struct flush_conn_owner flush_run_conn_owner;

#endif
