/* The daemon's shared context: what main.c builds and the glue modules (smtpd_io, flush,
 * ctl) use. Only the loop thread touches it. */
#ifndef HF_RELAYD_H
#define HF_RELAYD_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "auth.h"
#include "cfg.h"
#include "etrn.h"
#include "idmap.h"
#include "policy.h"
#include "queue.h"
#include "queue_wr.h"
#include "rate.h"
#include "smtpd.h"

/* Counters since start, served by relayctl stats and the metrics endpoint. */
struct relayd_stats {
    uint64_t connections;
    uint64_t refused_conn_limit;
    uint64_t accepted; /* messages committed */
    uint64_t accepted_bytes;
    uint64_t rejected_rcpt; /* recipients refused */
    uint64_t rejected_data; /* messages refused after DATA */
    uint64_t queue_errors;  /* commits that failed */
    uint64_t delivered;
    uint64_t deferred;
    uint64_t failed;
    uint64_t etrn[6]; /* replies 250, 251, 252, 253, 458, 459 */
};

struct relayd_snap;
struct conn;

/* An ATRN to decide (RFC 2645 4.2), from an authenticated ODMR session. */
struct atrn_req {
    uint64_t session_id;
    const char *user;        /* the authenticated user */
    const char *client_addr; /* "192.0.2.1" */
    int client_port;
    const char *arg; /* "" or the comma list of domains as sent */
    const char *tls; /* "" or "TLSv1.3 with cipher ..." of the session */
};

/* Its answer: the reply, and for 250 the release that takes the connection. */
struct atrn_reply {
    int code;
    char enh[8];
    char text[400];
    void *release; /* 250: hand the connection to rd->atrn_begin (exactly once) */
};

struct relayd {
    uv_loop_t *loop;
    /* The running configuration snapshot (snap.h) and pointers into it; a SIGHUP reload
     * replaces all of them at once. Sessions and queue runs hold their own reference. */
    struct relayd_snap *snap;
    struct cfg *cfg;
    struct policy *policy;
    struct queue *q;
    struct queue_wr *wr;
    struct smtpd_params prm;
    uv_tcp_t *listeners;
    size_t nlisteners;
    unsigned char *listener_kind;  /* per listener: SMTPD_IO_* (smtpd_io.c) */
    struct tls_ctx *tls_server;    /* NULL: no STARTTLS, no implicit TLS */
    struct tls_ctx *tls_client;    /* outbound STARTTLS */
    const struct auth_store *auth; /* credentials (in snap); empty: no AUTH */
    bool auth_loaded;
    struct rate auth_fail; /* failed AUTH per client address per minute */
    struct idmap sessions; /* connection id -> struct session */
    struct idmap per_ip;   /* hash of client address -> open sessions (uintptr_t) */
    uint64_t nsessions;
    size_t data_mem; /* octets of message buffers in sessions and commits (max_data_memory) */
    bool stopping;
    struct relayd_stats stats;
    /* ETRN hook: set by the flush module; answers through smtpd_etrn_done via the session
     * id. NULL means ETRN is answered 458 (no queue runner). */
    void (*etrn)(struct relayd *rd, uint64_t session_id, const char *client_addr, const char *user,
                 const char *arg);
    void *flush; /* the flush module's state */
    /* ATRN hooks, set by flush_atrn_install (flush_atrn.h); NULL: ATRN gets 451. atrn
     * decides (and on 250 prepares the release); atrn_begin hands it the connection once the
     * 250 is written, with the octets the client sent after ATRN. */
    int (*atrn)(struct relayd *rd, const struct atrn_req *req, struct atrn_reply *rep);
    void (*atrn_begin)(struct relayd *rd, void *release, struct conn *c, const char *pre,
                       size_t prelen);
    /* Queue runs as the lifecycle code (bounce.c, expire.c, pmwarn.c) sees them, set by
     * flush_init (flush.h: flush_start_due, flush_running); NULL before. */
    int (*flush_due)(struct relayd *rd, const char *domain);
    bool (*flush_busy)(struct relayd *rd, const char *domain);
    void *etrn_state; /* etrn_io's state */
    void *ctl;        /* the control module's state */
    void *expire;     /* expire.c's state (expiry, delay warnings, relayctl bounce) */
    void *probe;      /* probe.c's state (accept only while the primary is down) */
};

/* Opens every listener of cfg->listen on rd->loop. Returns 0 or a negative code (logged). */
int smtpd_io_listen(struct relayd *rd);
/* Stops listening and closes every session with 421 4.3.2 (shutdown). */
void smtpd_io_shutdown(struct relayd *rd);
/* Adds key=value fields (borrowed) to the log line of the session's next refusal: the
 * reply logs it, so the caller logs no line of its own. No session: nothing. */
void smtpd_io_note(struct relayd *rd, uint64_t session_id, const char *note);
/* Delivers an ETRN answer to session id (if it still exists). */
void smtpd_io_etrn_done(struct relayd *rd, uint64_t session_id, int code, const char *enh,
                        const char *text);

#endif
