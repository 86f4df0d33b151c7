/* The queue on LMDB: the only file that includes <lmdb.h>, and the only place where LMDB's
 * return codes are translated into ours (MDB_NOTFOUND -> -ENOENT, MDB_MAP_FULL -> -ENOSPC,
 * damaged or foreign files -> HF_ECORRUPT, MDB_VERSION_MISMATCH -> HF_EVERSION).
 *
 * Records and keys are built and validated by queue_rec.c (a versioned binary encoding; C
 * structs never reach the disk); this file stores them and keeps them consistent. The
 * envelope record also lists the message's queued recipients as (idx, domain key) pairs:
 * rcpt keys start with the domain key, so this list is how a message finds its own
 * recipients without a scan. The domain table's counters change in the same transaction as
 * the rcpt records they count; its "oldest" is the arrival of the domain's lowest-id message
 * (ids are time-ordered, so this is the oldest unless the clock stepped back).
 *
 * Threads: read calls may run on any thread, concurrently; writes come from one thread (the
 * writer). Growing the map (mdb_env_set_mapsize) is legal only while no transaction of this
 * process is open, so every transaction holds a read lock of maplock and growth takes it
 * for writing. Environments are opened with MDB_NOTLS so a callback may start another read
 * on the same thread (for example queue_get_env from inside queue_scan_rcpts); callbacks
 * must not write. What the records mean, retry policy and delivery are left to callers.
 *
 * This file: the environment (open, close, layout check), map growth, the transaction
 * wrappers every other queue_lmdb*.c file goes through, the record readers they share, and
 * message ids. Writes (put, apply) are in queue_lmdb_write.c, reads and scans in
 * queue_lmdb_scan.c; queue_lmdb_int.h joins the three, which call this file only. */
#include "queue.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "addr.h"
#include "hf_err.h"
#include "log.h"
#include "queue_lmdb_int.h"
#include "queue_rec.h"

#define QUEUE_LAYOUT_VERSION 1u /* meta "version": the set of tables and their keys */
#define QUEUE_DEF_MAP        (256ull * 1024 * 1024)
#define QUEUE_DEF_MAX_MAP    (64ull * 1024 * 1024 * 1024)
#define QUEUE_ID_MS_MASK     ((UINT64_C(1) << 48) - 1)

/* Transactions this thread has open (any queue): growth is impossible inside one. */
static _Thread_local unsigned queue_txn_depth;

/* ---- error translation ---------------------------------------------------------------- */

int queue__err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return -ENOENT;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL: /* too many dirty pages: the writer splits the batch */
        return -ENOSPC;
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INCOMPATIBLE: /* a table name used by a plain key: not our layout */
        return HF_ECORRUPT;
    case MDB_VERSION_MISMATCH:
        return HF_EVERSION;
    case MDB_KEYEXIST:
        return -EEXIST;
    case MDB_READERS_FULL:
    case MDB_MAP_RESIZED:
        return -EAGAIN;
    case MDB_DBS_FULL:
    case MDB_TLS_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
        return -ENOMEM;
    case MDB_BAD_RSLOT:
    case MDB_BAD_TXN:
    case MDB_BAD_VALSIZE:
    case MDB_BAD_DBI:
        return -EINVAL;
    case MDB_PANIC:
        return -EIO;
    default:
        return rc > 0 ? -rc : -EIO;
    }
}

/* ---- transactions --------------------------------------------------------------------- */

int queue__txn_begin(struct queue *q, bool write, MDB_txn **out)
{
    pthread_rwlock_rdlock(&q->maplock);
    int rc = mdb_txn_begin(q->env, NULL, write ? 0 : MDB_RDONLY, out);
    if (rc == MDB_MAP_RESIZED && queue_txn_depth == 0) {
        /* Another process grew the map past ours: adopt its size, then retry once. */
        pthread_rwlock_unlock(&q->maplock);
        pthread_rwlock_wrlock(&q->maplock);
        rc = mdb_env_set_mapsize(q->env, 0);
        pthread_rwlock_unlock(&q->maplock);
        pthread_rwlock_rdlock(&q->maplock);
        if (rc == 0)
            rc = mdb_txn_begin(q->env, NULL, write ? 0 : MDB_RDONLY, out);
    }
    if (rc) {
        pthread_rwlock_unlock(&q->maplock);
        return queue__err(rc);
    }
    queue_txn_depth++;
    return 0;
}

void queue__txn_abort(struct queue *q, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    queue_txn_depth--;
    pthread_rwlock_unlock(&q->maplock);
}

/* Commits (the transaction is freed even on failure). */
int queue__txn_commit(struct queue *q, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    queue_txn_depth--;
    pthread_rwlock_unlock(&q->maplock);
    return queue__err(rc);
}

/* Grows the map by doubling, at least once and until it exceeds used + need, within
 * max_map_size. Only when no transaction of this thread is open; other threads' readers
 * finish first (maplock). Returns 0 or -ENOSPC when the map cannot grow. */
static int queue_grow(struct queue *q, size_t need)
{
    if (queue_txn_depth > 0)
        return -ENOSPC;
    pthread_rwlock_wrlock(&q->maplock);
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(q->env, &info);
    mdb_env_stat(q->env, &st);
    size_t used = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
    size_t cur = info.me_mapsize;
    int ret = -ENOSPC;
    if (cur < q->max_map_size) {
        size_t want = cur;
        do {
            want = want > q->max_map_size / 2 ? q->max_map_size : want * 2;
        } while (want < used + need && want < q->max_map_size);
        int rc = mdb_env_set_mapsize(q->env, want);
        if (rc == 0) {
            log_info("queue map grown from=%zu to=%zu", cur, want);
            ret = 0;
        } else {
            log_warn("queue map growth failed to=%zu err=%s", want, hf_errname(queue__err(rc)));
        }
    }
    pthread_rwlock_unlock(&q->maplock);
    return ret;
}

/* Runs fn in a write transaction and commits it; on a full map, grows it and runs fn
 * again (the map strictly grows each time, so this ends), -ENOSPC once it cannot grow.
 * need: an estimate of the octets the transaction adds. fn must be safe to run again. */
int queue__write(struct queue *q, queue__write_fn fn, void *arg, size_t need)
{
    if (q->flags & QUEUE_O_RDONLY)
        return -EROFS;
    for (;;) {
        MDB_txn *txn;
        int rc = queue__txn_begin(q, true, &txn);
        if (rc)
            return rc;
        rc = fn(q, txn, arg);
        if (rc == 0)
            rc = queue__txn_commit(q, txn);
        else
            queue__txn_abort(q, txn);
        if (rc != -ENOSPC)
            return rc;
        if (queue_grow(q, need) != 0)
            return -ENOSPC;
    }
}

/* ---- small table helpers (inside a transaction) --------------------------------------- */

/* Reads and decodes the envelope of id; *rec is always initialised (queue_rec_msg_free). */
int queue__get_rec(struct queue *q, MDB_txn *txn, uint64_t id, struct queue_rec_msg *rec)
{
    memset(rec, 0, sizeof(*rec));
    unsigned char kb[QUEUE_REC_MKEY_LEN];
    queue_rec_msg_key(kb, id);
    MDB_val k = {sizeof(kb), kb}, v;
    int rc = mdb_get(txn, q->msg, &k, &v);
    if (rc)
        return queue__err(rc);
    return queue_rec_msg_decode(id, v.mv_data, v.mv_size, rec);
}

int queue__meta_bytes(struct queue *q, MDB_txn *txn, uint64_t *out)
{
    MDB_val k = {5, "bytes"}, v;
    int rc = mdb_get(txn, q->meta, &k, &v);
    *out = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return queue__err(rc);
    if (v.mv_size != 8)
        return HF_ECORRUPT;
    *out = queue_rec_get_be64(v.mv_data);
    return 0;
}

/* Reads the domain record of key; -ENOENT leaves *d zeroed. */
int queue__dom_get(struct queue *q, MDB_txn *txn, const char *key, size_t klen,
                   struct queue_domain_stats *d)
{
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(txn, q->domain, &k, &v);
    if (rc) {
        memset(d, 0, sizeof(*d));
        return queue__err(rc);
    }
    return queue_rec_dom_decode(v.mv_data, v.mv_size, d);
}

/* ---- open and close ------------------------------------------------------------------- */

/* Opens the tables in one transaction, creating them in an empty writable environment.
 * Refuses a foreign environment (entries but no meta) and other layout versions. */
int64_t queue__due_of(struct queue *q, const struct queue_rcpt *r, int64_t arrival)
{
    int64_t d = q->due_fn ? q->due_fn(r, arrival, q->due_arg) : r->next_attempt;
    return d > 0 ? d : 0;
}

void queue_set_due_fn(struct queue *q, queue_due_fn fn, void *arg)
{
    q->due_fn = fn;
    q->due_arg = arg;
}

/* An empty due index in a queue that holds recipients (written before the index existed):
 * every recipient is entered at its next attempt, and its record notes it. The timer then
 * reschedules each by the due function the first time it comes up. */
static int queue_due_fill(struct queue *q, MDB_txn *txn)
{
    MDB_stat ds, rs;
    int rc = mdb_stat(txn, q->due, &ds);
    if (rc == 0)
        rc = mdb_stat(txn, q->rcpt, &rs);
    if (rc)
        return queue__err(rc);
    if (ds.ms_entries != 0 || rs.ms_entries == 0)
        return 0;
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, q->rcpt, &cur);
    if (rc)
        return queue__err(rc);
    struct queue_rec_buf b = {0};
    MDB_val k, v;
    size_t n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct queue_rcpt r;
        size_t dlen;
        if (queue_rec_rcpt_decode(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r) != 0 ||
            queue_rec_rcpt_key_parse(k.mv_data, k.mv_size, &dlen, &r.id, &r.idx) != 0)
            continue; /* a damaged record stays out of the index; reads report it */
        r.due = r.next_attempt > 0 ? r.next_attempt : 0;
        unsigned char dk[QUEUE_REC_DUEKEY_LEN];
        queue_rec_due_key(dk, r.due, r.id, r.idx);
        MDB_val kk = {sizeof(dk), dk}, vv = {dlen, k.mv_data};
        int prc = mdb_put(txn, q->due, &kk, &vv, 0);
        if (prc == 0 && r.due > 0 && queue_rec_rcpt_encode(&r, &b) == 0) {
            MDB_val nv = {b.len, b.p};
            prc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
        }
        if (prc) {
            rc = prc;
            break;
        }
        n++;
    }
    queue_rec_buf_free(&b);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc == 0)
        log_info("queue due index built rcpts=%zu", n);
    return queue__err(rc);
}

static int queue_open_tables(struct queue *q, bool rdonly)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(q->env, NULL, rdonly ? MDB_RDONLY : 0, &txn);
    if (rc)
        return queue__err(rc);
    rc = mdb_dbi_open(txn, "meta", 0, &q->meta);
    bool created = false;
    if (rc == MDB_NOTFOUND && !rdonly) {
        MDB_dbi main_dbi;
        MDB_stat st;
        rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
        if (rc == 0)
            rc = mdb_stat(txn, main_dbi, &st);
        if (rc == 0 && st.ms_entries != 0) {
            rc = HF_ECORRUPT; /* some other program's environment */
            goto fail;
        }
        if (rc == 0)
            rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &q->meta);
        created = true;
    }
    if (rc) {
        rc = queue__err(rc);
        goto fail;
    }
    if (created) {
        unsigned char vb[8];
        queue_rec_put_be32(vb, QUEUE_LAYOUT_VERSION);
        MDB_val k = {7, "version"}, v = {4, vb};
        rc = mdb_put(txn, q->meta, &k, &v, 0);
        queue_rec_put_be64(vb, (uint64_t)time(NULL));
        MDB_val k2 = {7, "created"}, v2 = {8, vb};
        if (rc == 0)
            rc = mdb_put(txn, q->meta, &k2, &v2, 0);
        if (rc) {
            rc = queue__err(rc);
            goto fail;
        }
    } else {
        MDB_val k = {7, "version"}, v;
        rc = mdb_get(txn, q->meta, &k, &v);
        if (rc || v.mv_size != 4) {
            rc = rc && rc != MDB_NOTFOUND ? queue__err(rc) : HF_ECORRUPT;
            goto fail;
        }
        uint32_t ver = queue_rec_get_be32(v.mv_data);
        if (ver != QUEUE_LAYOUT_VERSION) {
            log_err("queue layout version=%" PRIu32 " expected=%u", ver, QUEUE_LAYOUT_VERSION);
            rc = HF_EVERSION;
            goto fail;
        }
    }
    /* The due index came after the first layout: an older writable queue gets it now and
     * it is filled from rcpt below; read-only, its absence means "nothing due". */
    rc = mdb_dbi_open(txn, "due", rdonly ? 0 : MDB_CREATE, &q->due);
    if (rc && !(rc == MDB_NOTFOUND && rdonly)) {
        rc = queue__err(rc);
        goto fail;
    }
    q->has_due = rc == 0;
    static const char *const names[] = {"msg", "body", "rcpt", "domain"};
    MDB_dbi *dbis[] = {&q->msg, &q->body, &q->rcpt, &q->domain};
    for (size_t i = 0; i < 4; i++) {
        rc = mdb_dbi_open(txn, names[i], created ? MDB_CREATE : 0, dbis[i]);
        if (rc) {
            /* A missing table in a queue that has meta is damage, not absence. */
            rc = rc == MDB_NOTFOUND ? HF_ECORRUPT : queue__err(rc);
            goto fail;
        }
    }
    /* Ids continue above the largest stored one, whatever the clock says. */
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, q->msg, &cur);
    if (rc == 0) {
        MDB_val k, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        if (rc == 0)
            rc = queue_rec_msg_key_parse(k.mv_data, k.mv_size, &q->last_id);
        else
            rc = rc == MDB_NOTFOUND ? 0 : queue__err(rc);
        mdb_cursor_close(cur);
    } else {
        rc = queue__err(rc);
    }
    if (rc)
        goto fail;
    if (!rdonly) {
        rc = queue_due_fill(q, txn);
        if (rc)
            goto fail;
    }
    /* Committing (read-only too) keeps the table handles open for the environment. */
    return queue__err(mdb_txn_commit(txn));
fail:
    mdb_txn_abort(txn);
    return rc;
}

int queue_open(const char *dir, unsigned flags, size_t map_size, size_t max_map_size,
               struct queue **out)
{
    bool rdonly = flags & QUEUE_O_RDONLY;
    int rc;
    *out = NULL;
    if (map_size == 0)
        map_size = QUEUE_DEF_MAP;
    if (max_map_size == 0)
        max_map_size = QUEUE_DEF_MAX_MAP;
    if (max_map_size < map_size)
        max_map_size = map_size;

    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || rdonly)
            return -errno;
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return -errno;
    } else if (!S_ISDIR(st.st_mode)) {
        return -ENOTDIR;
    }
    if (rdonly) {
        /* Without this check LMDB would leave a lock file in a directory with no queue. */
        char path[4096];
        if ((size_t)snprintf(path, sizeof(path), "%s/data.mdb", dir) >= sizeof(path))
            return -ENAMETOOLONG;
        if (stat(path, &st) != 0)
            return -errno;
    }

    struct queue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->flags = flags;
    q->max_map_size = max_map_size;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Readers first: a thread may hold maplock for reading twice (a read inside a scan
     * callback); with writer preference a waiting grow would deadlock it. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_READER_NP);
    rc = -pthread_rwlock_init(&q->maplock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc)
        goto fail_free;
    rc = -pthread_mutex_init(&q->idlock, NULL);
    if (rc)
        goto fail_rwlock;

    rc = mdb_env_create(&q->env);
    if (rc) {
        rc = queue__err(rc);
        goto fail_mutex;
    }
    /* A reader maps up to the largest size the writer may grow to, so it never has to
     * remap while one of its transactions is open. Mapping past the end of the file is
     * harmless: LMDB reads only pages below the last committed page number. A writer
     * starts from the size stored in the file (0 here), raised to map_size below, so a
     * map that grew once is not shrunk back by the next start. */
    rc = mdb_env_set_mapsize(q->env, rdonly ? max_map_size : 0);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(q->env, 8);
    if (rc == 0)
        rc = mdb_env_open(q->env, dir, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600);
    if (rc) {
        rc = queue__err(rc);
        goto fail_env;
    }
    int dead = 0;
    rc = mdb_reader_check(q->env, &dead);
    if (rc) {
        rc = queue__err(rc);
        goto fail_env;
    }
    if (dead > 0)
        log_warn("queue stale readers cleared=%d dir=%s", dead, dir);
    MDB_envinfo info;
    mdb_env_info(q->env, &info);
    if (!rdonly && info.me_mapsize < map_size) {
        rc = mdb_env_set_mapsize(q->env, map_size);
        if (rc) {
            rc = queue__err(rc);
            goto fail_env;
        }
    }
    rc = queue_open_tables(q, rdonly);
    if (rc)
        goto fail_env;
    *out = q;
    return 0;

fail_env:
    mdb_env_close(q->env);
fail_mutex:
    pthread_mutex_destroy(&q->idlock);
fail_rwlock:
    pthread_rwlock_destroy(&q->maplock);
fail_free:
    free(q);
    return rc;
}

void queue_close(struct queue *q)
{
    if (!q)
        return;
    mdb_env_close(q->env);
    pthread_mutex_destroy(&q->idlock);
    pthread_rwlock_destroy(&q->maplock);
    free(q);
}

/* ---- ids ------------------------------------------------------------------------------ */

uint64_t queue_id_next(struct queue *q)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    uint64_t id = (ms & QUEUE_ID_MS_MASK) << 16;
    pthread_mutex_lock(&q->idlock);
    /* More than 65536 ids in one millisecond, or a clock that stepped back, borrow from
     * the next milliseconds: ids stay unique and increasing. */
    if (id <= q->last_id)
        id = q->last_id + 1;
    q->last_id = id;
    pthread_mutex_unlock(&q->idlock);
    return id;
}

char *queue_id_str(uint64_t id, char *buf)
{
    snprintf(buf, QUEUE_ID_STR, "%016" PRIX64, id);
    return buf;
}

int queue_id_parse(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -EINVAL;
        v = v << 4 | d;
    }
    if (s[16] != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}

int queue_reader_check(struct queue *q)
{
    int dead = 0;
    int rc = mdb_reader_check(q->env, &dead);
    return rc ? queue__err(rc) : dead;
}
