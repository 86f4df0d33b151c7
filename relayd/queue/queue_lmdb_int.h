/* Inside the LMDB queue store only (queue_lmdb*.c, the only files that include <lmdb.h>):
 * the store's struct and what queue_lmdb.c lends the write and scan files. Calls go one
 * way: queue_lmdb_write.c and queue_lmdb_scan.c -> queue_lmdb.c. */
#ifndef HF_QUEUE_LMDB_INT_H
#define HF_QUEUE_LMDB_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "queue.h"
#include "queue_rec.h"

struct queue {
    MDB_env *env;
    MDB_dbi meta, msg, body, rcpt, domain, due;
    bool has_due; /* the due table exists (a read-only open of an older queue: not) */
    queue_due_fn due_fn;
    void *due_arg;
    unsigned flags;
    size_t max_map_size;
    pthread_rwlock_t maplock;
    pthread_mutex_t idlock;
    uint64_t last_id;
};

/* LMDB's codes as ours: MDB_NOTFOUND -> -ENOENT, MDB_MAP_FULL -> -ENOSPC, ... */
int queue__err(int rc);

/* Every transaction goes through these: they hold maplock for reading (map growth takes it
 * for writing) and count this thread's open transactions. */
int queue__txn_begin(struct queue *q, bool write, MDB_txn **out);
void queue__txn_abort(struct queue *q, MDB_txn *txn);
/* Commits (the transaction is freed even on failure). */
int queue__txn_commit(struct queue *q, MDB_txn *txn);

typedef int (*queue__write_fn)(struct queue *q, MDB_txn *txn, void *arg);
/* Runs fn in a write transaction and commits it; on a full map, grows it and runs fn
 * again, -ENOSPC once it cannot grow. need: an estimate of the octets the transaction
 * adds. fn must be safe to run again. -EROFS on a read-only store. */
int queue__write(struct queue *q, queue__write_fn fn, void *arg, size_t need);

/* Readers inside a transaction. */
/* Reads and decodes the envelope of id; *rec is always initialised (queue_rec_msg_free). */
int queue__get_rec(struct queue *q, MDB_txn *txn, uint64_t id, struct queue_rec_msg *rec);
/* The stored octets counted in meta "bytes" (0 when absent). */
int queue__meta_bytes(struct queue *q, MDB_txn *txn, uint64_t *out);
/* Reads the domain record of key; -ENOENT leaves *d zeroed. */
int queue__dom_get(struct queue *q, MDB_txn *txn, const char *key, size_t klen,
                   struct queue_domain_stats *d);

/* The due time of recipient r of a message that arrived at arrival (the due function, or
 * next_attempt). */
int64_t queue__due_of(struct queue *q, const struct queue_rcpt *r, int64_t arrival);

#endif
