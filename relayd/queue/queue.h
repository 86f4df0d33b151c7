/* The queue interface: durable storage of held messages and their recipients.
 * No LMDB type appears here; queue_lmdb.c is the only file that includes <lmdb.h>.
 *
 * All functions are synchronous and may block on disk: call them from the writer thread
 * (queue_wr.c) or from a process that only reads (relayctl), never from the event loop.
 * Readers in other processes may open the same directory read-only at any time.
 *
 * Layout (one LMDB environment, file queue_dir/data.mdb):
 *   meta:   "version" -> u32; "created" -> i64
 *   msg:    id (u64 BE) -> envelope
 *   body:   id (u64 BE) + chunk (u32 BE) -> up to QUEUE_CHUNK octets of the message
 *   rcpt:   domain key ("test.branch.") + '\0' + id (u64 BE) + idx (u32 BE) -> recipient
 *   domain: domain key -> counters (messages, rcpts, bytes, oldest arrival) + hold flag
 *   due:    due time (u64 BE) + id + idx -> domain key: one entry per queued recipient, at
 *           the time something is next to be decided about it (a retry, a delay warning,
 *           expiry; the due function says which, queue_set_due_fn), kept in step with rcpt
 *           in the same transactions. A timer reads it from the start up to "now" only, so
 *           a tick with nothing due costs one cursor seek, whatever the queue holds.
 * Bodies are stored in fixed-size chunks so that deleting them after delivery frees ordinary
 * pages instead of long contiguous overflow runs. */
#ifndef HF_QUEUE_H
#define HF_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_cmd.h"

#define QUEUE_CHUNK   (32u * 1024u)
#define QUEUE_ID_STR  17 /* 16 upper-case hex digits + NUL */
#define QUEUE_ERR_MAX 512

/* Envelope flags. */
#define QUEUE_F_8BITMIME 0x1u
#define QUEUE_F_SMTPUTF8 0x2u
#define QUEUE_F_HELD     0x4u /* message on hold (relayctl hold ID) */

enum queue_rcpt_state {
    QUEUE_RS_PENDING = 0, /* never tried */
    QUEUE_RS_DEFERRED,    /* 4xx or connection failure; retry at next_attempt */
    QUEUE_RS_FAILED,      /* 5xx; kept with the reply for the bounce */
};

struct queue_env {
    uint64_t id;
    int64_t arrival; /* unix seconds */
    uint64_t size;   /* octets of the stored message (Received: header included) */
    unsigned flags;  /* QUEUE_F_* */
    int ret;         /* enum smtp_ret */
    char envid[SMTP_XTEXT_MAX + 1];
    char sender[SMTP_PATH_MAX + 1]; /* "" for the null reverse-path */
    char client_name[256];          /* HELO/EHLO name */
    char client_addr[64];           /* textual IP address */
    uint32_t nrcpt;                 /* recipients still queued */
};

struct queue_rcpt {
    uint64_t id;  /* message */
    uint32_t idx; /* recipient number within the message, from 0 */
    char addr[SMTP_PATH_MAX + 1];
    char domain[256]; /* lower-case domain of addr */
    char orcpt[SMTP_XTEXT_MAX + 1];
    unsigned notify; /* SMTP_NOTIFY_* */
    int state;       /* enum queue_rcpt_state */
    uint32_t attempts;
    int64_t next_attempt; /* unix seconds; 0 = now */
    int64_t last_attempt; /* unix seconds; 0 = never */
    char last_error[QUEUE_ERR_MAX];
    bool warned; /* a delay DSN was sent for this recipient (once per recipient) */
    int64_t due; /* read-only: its time in the due index (set by the store) */
};

/* A message to store: envelope, recipients and the complete body (Received: included). */
struct queue_new_msg {
    struct queue_env env; /* env.id must be set (queue_id_next); env.nrcpt = nrcpt */
    struct queue_rcpt *rcpts;
    size_t nrcpt;
    char *body; /* malloc'd */
    size_t body_len;
};

/* Frees m, its rcpts array and its body (all malloc'd). NULL is allowed. */
void queue_new_msg_free(struct queue_new_msg *m);

struct queue_domain_stats {
    char domain[256];
    uint64_t messages; /* messages with at least one recipient in this domain */
    uint64_t rcpts;
    uint64_t bytes;    /* sum of sizes of those messages */
    int64_t oldest;    /* arrival of the oldest such message; 0 when none */
    bool held;         /* relayctl hold DOMAIN */
    int64_t warned_at; /* when its postmaster was last warned of expiring mail; 0: never */
};

struct queue;

#define QUEUE_O_RDONLY 0x1u

/* Opens (creating when absent and not read-only) the queue in directory dir.
 * map_size: initial LMDB map size in octets (0: 256 MiB); the map grows by doubling on
 * MDB_MAP_FULL up to max_map_size (0: 64 GiB).
 * Runs a stale-reader check. Returns 0 and *out (free with queue_close), or:
 *   -ENOENT      dir or the queue does not exist (read-only open)
 *   -EACCES      no permission
 *   HF_ECORRUPT  the file is not an LMDB environment or its tables are damaged
 *   HF_EVERSION  the queue was written by an incompatible layout version
 *   other -errno from the system. */
int queue_open(const char *dir, unsigned flags, size_t map_size, size_t max_map_size,
               struct queue **out);
void queue_close(struct queue *q);

/* Returns a new queue id: unique within the process and time-ordered (48 bits of
 * milliseconds since the epoch, 16 bits of sequence), never repeating an id already in the
 * queue even if the clock steps back. Thread-safe. */
uint64_t queue_id_next(struct queue *q);
/* Formats id as 16 upper-case hex digits into buf (QUEUE_ID_STR octets); returns buf. */
char *queue_id_str(uint64_t id, char *buf);
/* Parses 16 hex digits (any case). Returns 0 or -EINVAL. */
int queue_id_parse(const char *s, uint64_t *out);

/* Stores n messages in one transaction (group commit), synced to disk before returning.
 * Borrows msgs. All or nothing: returns 0, or -ENOSPC (map cannot grow / disk full),
 * -EIO, or another -errno; then none of them is stored. */
int queue_put_batch(struct queue *q, struct queue_new_msg *const *msgs, size_t n);

/* Reads the envelope of id. Returns 0, -ENOENT, HF_ECORRUPT. */
int queue_get_env(struct queue *q, uint64_t id, struct queue_env *out);

/* Calls cb for each recipient of message id still queued, in idx order. Returns 0,
 * -ENOENT for an unknown id, or cb's non-zero return value (which stops the walk). */
typedef int (*queue_rcpt_cb)(const struct queue_rcpt *r, void *arg);
int queue_get_rcpts(struct queue *q, uint64_t id, queue_rcpt_cb cb, void *arg);

/* Calls cb with the message's bytes in order, chunk by chunk. The data pointer is valid only
 * during the call. Returns 0, -ENOENT, HF_ECORRUPT (missing chunk), or cb's non-zero. */
typedef int (*queue_body_cb)(const char *data, size_t len, void *arg);
int queue_read_body(struct queue *q, uint64_t id, queue_body_cb cb, void *arg);

/* Calls cb for each queued recipient of domain (exactly), or of domain and every
 * subdomain when subdomains is true (label boundaries: "example.com" never matches
 * "badexample.com"); domain NULL means every recipient. Order: by domain key, then
 * message id, then idx. Returns 0 or cb's non-zero return value. */
int queue_scan_rcpts(struct queue *q, const char *domain, bool subdomains, queue_rcpt_cb cb,
                     void *arg);

/* Per-domain counters from the domain table (no scan of rcpt). Returns 0 or -ENOENT when the
 * domain holds nothing (out zeroed, out->domain set). */
int queue_domain_stats(struct queue *q, const char *domain, struct queue_domain_stats *out);

/* Calls cb for each domain with queued recipients (or held), in key order. */
typedef int (*queue_domain_cb)(const struct queue_domain_stats *s, void *arg);
int queue_scan_domains(struct queue *q, queue_domain_cb cb, void *arg);

/* Changes applied in one transaction by queue_apply(). */
enum queue_op {
    QUEUE_OP_DELIVERED = 0, /* remove recipient (id, idx); the message with its last one */
    QUEUE_OP_DEFERRED,      /* attempts++, last_attempt, next_attempt, last_error, state */
    QUEUE_OP_FAILED,        /* attempts++, last_attempt, last_error, state FAILED */
    QUEUE_OP_DELETE_MSG,    /* remove the message and all its recipients */
    QUEUE_OP_HOLD_MSG,      /* set QUEUE_F_HELD */
    QUEUE_OP_RELEASE_MSG,   /* clear QUEUE_F_HELD */
    QUEUE_OP_HOLD_DOMAIN,   /* set the domain's hold flag (domain field) */
    QUEUE_OP_RELEASE_DOMAIN,
    QUEUE_OP_REQUEUE_MSG,   /* next_attempt = 0 for all its recipients */
    QUEUE_OP_BOUNCED,       /* remove recipient (id, idx) as DELIVERED does: its DSN (if one is
                               owed) is stored in the same transaction (queue_commit) */
    QUEUE_OP_WARNED,        /* mark recipient (id, idx): its delay DSN was sent */
    QUEUE_OP_DOMAIN_WARNED, /* the domain's warned_at = when (domain field) */
    QUEUE_OP_RESCHEDULE,    /* recompute the due time of (id, idx); drops the index entry at
                               `when` too, should it be stale (its recipient gone or moved) */
};

struct queue_update {
    enum queue_op op;
    uint64_t id;
    uint32_t idx;
    int64_t when;         /* last_attempt for DEFERRED/FAILED */
    int64_t next_attempt; /* DEFERRED */
    char domain[256];     /* HOLD/RELEASE_DOMAIN */
    char error[QUEUE_ERR_MAX];
    int result; /* out: 0, or -ENOENT when the id/idx/domain was not found (not fatal) */
    bool removed; /* out: the message left the queue with this update (its last recipient) */
};

/* Applies n updates in one synced transaction, keeping the domain counters in step.
 * An update whose target is gone gets result -ENOENT and does not fail the batch.
 * Returns 0, or -ENOSPC / -EIO / -errno (nothing applied). */
int queue_apply(struct queue *q, struct queue_update *ups, size_t n);

/* Stores nmsgs new messages and applies nups updates in ONE synced transaction: a DSN and
 * the removal of the recipients it reports on are durable together or not at all. Borrows
 * both arrays. Returns as queue_put_batch / queue_apply (nothing stored on error). */
int queue_commit(struct queue *q, struct queue_new_msg *const *msgs, size_t nmsgs,
                 struct queue_update *ups, size_t nups);

/* When a recipient is next to be looked at: called by the store (on the thread that
 * writes) whenever it writes a recipient record, with the message's arrival time. Must be
 * pure and thread-safe. Without one, due = next_attempt. */
typedef int64_t (*queue_due_fn)(const struct queue_rcpt *r, int64_t arrival, void *arg);
/* Sets the due function (before the writer thread starts; arg borrowed for q's life). */
void queue_set_due_fn(struct queue *q, queue_due_fn fn, void *arg);

/* Calls cb for each entry of the due index with a time <= now, in time order, at most max
 * of them: cb gets the entry's time, id and idx, and the recipient (NULL when the entry is
 * stale: its recipient is gone; RESCHEDULE removes it). A queue opened read-only that has
 * no index yet (written by an older version) has nothing due. Returns 0 or cb's non-zero
 * return value, or -errno. */
typedef int (*queue_due_cb)(int64_t due, uint64_t id, uint32_t idx, const struct queue_rcpt *r,
                            void *arg);
int queue_scan_due(struct queue *q, int64_t now, size_t max, queue_due_cb cb, void *arg);

/* Clears stale reader slots left by dead processes; returns how many, or -errno. */
int queue_reader_check(struct queue *q);

/* Totals over all domains without a scan of rcpt: messages, recipients, octets. */
struct queue_totals {
    uint64_t messages;
    uint64_t rcpts;
    uint64_t bytes;
    size_t map_size; /* current LMDB map size */
    size_t map_used; /* octets in use (last page number * page size) */
};
int queue_totals(struct queue *q, struct queue_totals *out);

#endif
