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
 * must not write. What the records mean, retry policy and delivery are left to callers. */
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
#include "queue_rec.h"

#define QUEUE_LAYOUT_VERSION 1u /* meta "version": the set of tables and their keys */
#define QUEUE_DEF_MAP        (256ull * 1024 * 1024)
#define QUEUE_DEF_MAX_MAP    (64ull * 1024 * 1024 * 1024)
#define QUEUE_ID_MS_MASK     ((UINT64_C(1) << 48) - 1)

struct queue {
    MDB_env *env;
    MDB_dbi meta, msg, body, rcpt, domain;
    unsigned flags;
    size_t max_map_size;
    pthread_rwlock_t maplock;
    pthread_mutex_t idlock;
    uint64_t last_id;
};

/* Transactions this thread has open (any queue): growth is impossible inside one. */
static _Thread_local unsigned queue_txn_depth;

/* ---- error translation ---------------------------------------------------------------- */

static int queue_err(int rc)
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

static int queue_txn_begin(struct queue *q, bool write, MDB_txn **out)
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
        return queue_err(rc);
    }
    queue_txn_depth++;
    return 0;
}

static void queue_txn_abort(struct queue *q, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    queue_txn_depth--;
    pthread_rwlock_unlock(&q->maplock);
}

/* Commits (the transaction is freed even on failure). */
static int queue_txn_commit(struct queue *q, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    queue_txn_depth--;
    pthread_rwlock_unlock(&q->maplock);
    return queue_err(rc);
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
            log_warn("queue map growth failed to=%zu err=%s", want, hf_errname(queue_err(rc)));
        }
    }
    pthread_rwlock_unlock(&q->maplock);
    return ret;
}

typedef int (*queue_write_fn)(struct queue *q, MDB_txn *txn, void *arg);

/* Runs fn in a write transaction and commits it; on a full map, grows it and runs fn
 * again (the map strictly grows each time, so this ends), -ENOSPC once it cannot grow.
 * need: an estimate of the octets the transaction adds. fn must be safe to run again. */
static int queue_write(struct queue *q, queue_write_fn fn, void *arg, size_t need)
{
    if (q->flags & QUEUE_O_RDONLY)
        return -EROFS;
    for (;;) {
        MDB_txn *txn;
        int rc = queue_txn_begin(q, true, &txn);
        if (rc)
            return rc;
        rc = fn(q, txn, arg);
        if (rc == 0)
            rc = queue_txn_commit(q, txn);
        else
            queue_txn_abort(q, txn);
        if (rc != -ENOSPC)
            return rc;
        if (queue_grow(q, need) != 0)
            return -ENOSPC;
    }
}

/* ---- small table helpers (inside a transaction) --------------------------------------- */

/* Reads and decodes the envelope of id; *rec is always initialised (queue_rec_msg_free). */
static int queue_get_rec(struct queue *q, MDB_txn *txn, uint64_t id, struct queue_rec_msg *rec)
{
    memset(rec, 0, sizeof(*rec));
    unsigned char kb[QUEUE_REC_MKEY_LEN];
    queue_rec_msg_key(kb, id);
    MDB_val k = {sizeof(kb), kb}, v;
    int rc = mdb_get(txn, q->msg, &k, &v);
    if (rc)
        return queue_err(rc);
    return queue_rec_msg_decode(id, v.mv_data, v.mv_size, rec);
}

static int queue_put_val(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
                         const struct queue_rec_buf *b, unsigned flags)
{
    MDB_val k = {klen, (void *)key}, v = {b->len, b->p};
    return queue_err(mdb_put(txn, dbi, &k, &v, flags));
}

static int queue_put_rec(struct queue *q, MDB_txn *txn, const struct queue_rec_msg *rec,
                         unsigned flags)
{
    unsigned char kb[QUEUE_REC_MKEY_LEN];
    queue_rec_msg_key(kb, rec->env.id);
    struct queue_rec_buf b = {0};
    int rc = queue_rec_msg_encode(rec, &b);
    if (rc == 0)
        rc = queue_put_val(txn, q->msg, kb, sizeof(kb), &b, flags);
    queue_rec_buf_free(&b);
    return rc;
}

static int queue_meta_bytes(struct queue *q, MDB_txn *txn, uint64_t *out)
{
    MDB_val k = {5, "bytes"}, v;
    int rc = mdb_get(txn, q->meta, &k, &v);
    *out = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return queue_err(rc);
    if (v.mv_size != 8)
        return HF_ECORRUPT;
    *out = queue_rec_get_be64(v.mv_data);
    return 0;
}

static int queue_meta_add_bytes(struct queue *q, MDB_txn *txn, uint64_t add, uint64_t sub)
{
    uint64_t total;
    int rc = queue_meta_bytes(q, txn, &total);
    if (rc)
        return rc;
    total += add;
    total = total > sub ? total - sub : 0;
    unsigned char vb[8];
    queue_rec_put_be64(vb, total);
    MDB_val k = {5, "bytes"}, v = {8, vb};
    return queue_err(mdb_put(txn, q->meta, &k, &v, 0));
}

/* Reads the domain record of key; -ENOENT leaves *d zeroed. */
static int queue_dom_get(struct queue *q, MDB_txn *txn, const char *key, size_t klen,
                         struct queue_domain_stats *d)
{
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(txn, q->domain, &k, &v);
    if (rc) {
        memset(d, 0, sizeof(*d));
        return queue_err(rc);
    }
    return queue_rec_dom_decode(v.mv_data, v.mv_size, d);
}

/* Writes the domain record, or deletes it when it counts nothing and is not held. */
static int queue_dom_put(struct queue *q, MDB_txn *txn, const char *key, size_t klen,
                         const struct queue_domain_stats *d)
{
    MDB_val k = {klen, (void *)key};
    if (d->messages == 0 && d->rcpts == 0 && !d->held) {
        int rc = mdb_del(txn, q->domain, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : queue_err(rc);
    }
    struct queue_rec_buf b = {0};
    int rc = queue_rec_dom_encode(d, &b);
    if (rc == 0)
        rc = queue_put_val(txn, q->domain, key, klen, &b, 0);
    queue_rec_buf_free(&b);
    return rc;
}

/* The arrival of the lowest-id message still holding a recipient under key (0: none). */
static int queue_dom_oldest(struct queue *q, MDB_txn *txn, const char *key, size_t klen,
                            int64_t *out)
{
    unsigned char pb[QUEUE_REC_DKEY_SZ + 1];
    memcpy(pb, key, klen);
    pb[klen] = '\0';
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, q->rcpt, &cur);
    if (rc)
        return queue_err(rc);
    MDB_val k = {klen + 1, pb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    *out = 0;
    int ret = 0;
    size_t dlen;
    uint64_t id;
    uint32_t idx;
    if (rc == 0 && k.mv_size == klen + 13 && memcmp(k.mv_data, pb, klen + 1) == 0 &&
        queue_rec_rcpt_key_parse(k.mv_data, k.mv_size, &dlen, &id, &idx) == 0) {
        struct queue_rec_msg rec;
        ret = queue_get_rec(q, txn, id, &rec);
        if (ret == 0)
            *out = rec.env.arrival;
        else if (ret == -ENOENT)
            ret = HF_ECORRUPT; /* a recipient without its envelope */
        queue_rec_msg_free(&rec);
    } else if (rc != 0 && rc != MDB_NOTFOUND) {
        ret = queue_err(rc);
    }
    mdb_cursor_close(cur);
    return ret;
}

/* Deletes every body chunk of id. */
static int queue_body_del(struct queue *q, MDB_txn *txn, uint64_t id)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, q->body, &cur);
    if (rc)
        return queue_err(rc);
    unsigned char kb[QUEUE_REC_BKEY_LEN];
    queue_rec_body_key(kb, id, 0);
    MDB_val k = {sizeof(kb), kb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size == sizeof(kb) && memcmp(k.mv_data, kb, QUEUE_REC_MKEY_LEN) == 0) {
        rc = mdb_cursor_del(cur, 0);
        if (rc == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : queue_err(rc);
}

/* Removes recipient entry i of rec: its rcpt record and its share of the domain counters.
 * The caller rewrites or deletes the envelope afterwards. */
static int queue_ent_remove(struct queue *q, MDB_txn *txn, struct queue_rec_msg *rec, size_t i)
{
    struct queue_rec_ent t = rec->ent[i];
    memmove(&rec->ent[i], &rec->ent[i + 1], (rec->nent - i - 1) * sizeof(*rec->ent));
    rec->nent--;
    unsigned char rk[QUEUE_REC_RKEY_MAX];
    MDB_val k = {queue_rec_rcpt_key(rk, t.key, t.klen, rec->env.id, t.idx), rk};
    int rc = mdb_del(txn, q->rcpt, &k, NULL);
    if (rc)
        return rc == MDB_NOTFOUND ? HF_ECORRUPT : queue_err(rc);
    bool last_in_domain = true;
    for (size_t j = 0; j < rec->nent; j++)
        if (rec->ent[j].klen == t.klen && memcmp(rec->ent[j].key, t.key, t.klen) == 0)
            last_in_domain = false;
    struct queue_domain_stats d;
    rc = queue_dom_get(q, txn, t.key, t.klen, &d);
    if (rc)
        return rc == -ENOENT ? HF_ECORRUPT : rc;
    if (d.rcpts == 0 || (last_in_domain && d.messages == 0))
        return HF_ECORRUPT;
    d.rcpts--;
    if (last_in_domain) {
        d.messages--;
        d.bytes = d.bytes > rec->env.size ? d.bytes - rec->env.size : 0;
        if (d.messages == 0)
            d.oldest = 0;
        else if (rec->env.arrival <= d.oldest)
            rc = queue_dom_oldest(q, txn, t.key, t.klen, &d.oldest);
    }
    if (rc == 0)
        rc = queue_dom_put(q, txn, t.key, t.klen, &d);
    return rc;
}

/* Writes rec back, or deletes the message with its body once no recipient is left. */
static int queue_msg_finish(struct queue *q, MDB_txn *txn, const struct queue_rec_msg *rec)
{
    if (rec->nent > 0)
        return queue_put_rec(q, txn, rec, 0);
    unsigned char kb[QUEUE_REC_MKEY_LEN];
    queue_rec_msg_key(kb, rec->env.id);
    MDB_val k = {sizeof(kb), kb};
    int rc = queue_err(mdb_del(txn, q->msg, &k, NULL));
    if (rc == 0)
        rc = queue_body_del(q, txn, rec->env.id);
    if (rc == 0)
        rc = queue_meta_add_bytes(q, txn, 0, rec->env.size);
    return rc;
}

/* ---- open and close ------------------------------------------------------------------- */

/* Opens the tables in one transaction, creating them in an empty writable environment.
 * Refuses a foreign environment (entries but no meta) and other layout versions. */
static int queue_open_tables(struct queue *q, bool rdonly)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(q->env, NULL, rdonly ? MDB_RDONLY : 0, &txn);
    if (rc)
        return queue_err(rc);
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
        rc = queue_err(rc);
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
            rc = queue_err(rc);
            goto fail;
        }
    } else {
        MDB_val k = {7, "version"}, v;
        rc = mdb_get(txn, q->meta, &k, &v);
        if (rc || v.mv_size != 4) {
            rc = rc && rc != MDB_NOTFOUND ? queue_err(rc) : HF_ECORRUPT;
            goto fail;
        }
        uint32_t ver = queue_rec_get_be32(v.mv_data);
        if (ver != QUEUE_LAYOUT_VERSION) {
            log_err("queue layout version=%" PRIu32 " expected=%u", ver, QUEUE_LAYOUT_VERSION);
            rc = HF_EVERSION;
            goto fail;
        }
    }
    static const char *const names[] = {"msg", "body", "rcpt", "domain"};
    MDB_dbi *dbis[] = {&q->msg, &q->body, &q->rcpt, &q->domain};
    for (size_t i = 0; i < 4; i++) {
        rc = mdb_dbi_open(txn, names[i], created ? MDB_CREATE : 0, dbis[i]);
        if (rc) {
            /* A missing table in a queue that has meta is damage, not absence. */
            rc = rc == MDB_NOTFOUND ? HF_ECORRUPT : queue_err(rc);
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
            rc = rc == MDB_NOTFOUND ? 0 : queue_err(rc);
        mdb_cursor_close(cur);
    } else {
        rc = queue_err(rc);
    }
    if (rc)
        goto fail;
    /* Committing (read-only too) keeps the table handles open for the environment. */
    return queue_err(mdb_txn_commit(txn));
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
        rc = queue_err(rc);
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
        rc = queue_err(rc);
        goto fail_env;
    }
    int dead = 0;
    rc = mdb_reader_check(q->env, &dead);
    if (rc) {
        rc = queue_err(rc);
        goto fail_env;
    }
    if (dead > 0)
        log_warn("queue stale readers cleared=%d dir=%s", dead, dir);
    MDB_envinfo info;
    mdb_env_info(q->env, &info);
    if (!rdonly && info.me_mapsize < map_size) {
        rc = mdb_env_set_mapsize(q->env, map_size);
        if (rc) {
            rc = queue_err(rc);
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

void queue_new_msg_free(struct queue_new_msg *m)
{
    if (!m)
        return;
    free(m->rcpts);
    free(m->body);
    free(m);
}

/* ---- put ------------------------------------------------------------------------------ */

static bool queue_str_ok(const char *s, size_t sz)
{
    return memchr(s, '\0', sz) != NULL;
}

/* Checks what the encoding needs before a transaction starts: every string terminated
 * inside its field, known flags and states, at least one recipient. Returns 0 or -EINVAL. */
static int queue_msg_check(const struct queue_new_msg *m)
{
    const struct queue_env *e = &m->env;
    const unsigned known = QUEUE_F_8BITMIME | QUEUE_F_SMTPUTF8 | QUEUE_F_HELD;
    if (e->id == 0 || m->nrcpt == 0 || m->nrcpt > QUEUE_REC_RCPT_MAX || !m->rcpts ||
        (m->body_len > 0 && !m->body) || (e->flags & ~known) || e->ret < 0 ||
        e->ret > SMTP_RET_HDRS || !queue_str_ok(e->envid, sizeof(e->envid)) ||
        !queue_str_ok(e->sender, sizeof(e->sender)) ||
        !queue_str_ok(e->client_name, sizeof(e->client_name)) ||
        !queue_str_ok(e->client_addr, sizeof(e->client_addr)))
        return -EINVAL;
    for (size_t i = 0; i < m->nrcpt; i++) {
        const struct queue_rcpt *r = &m->rcpts[i];
        if (!queue_str_ok(r->addr, sizeof(r->addr)) ||
            !queue_str_ok(r->domain, sizeof(r->domain)) ||
            !queue_str_ok(r->orcpt, sizeof(r->orcpt)) ||
            !queue_str_ok(r->last_error, sizeof(r->last_error)) || r->state < 0 ||
            r->state > QUEUE_RS_FAILED || (r->notify & ~0xfu))
            return -EINVAL;
    }
    return 0;
}

/* The domain of recipient r: its domain field, or what follows the last '@' of addr. */
static const char *queue_rcpt_domain(const struct queue_rcpt *r)
{
    if (r->domain[0])
        return r->domain;
    const char *at = strrchr(r->addr, '@');
    return at ? at + 1 : "";
}

static int queue_put_one(struct queue *q, MDB_txn *txn, const struct queue_new_msg *m)
{
    struct queue_rec_msg rec = {.env = m->env, .body_len = m->body_len, .nent = m->nrcpt};
    rec.env.nrcpt = (uint32_t)m->nrcpt;
    rec.ent = malloc(m->nrcpt * sizeof(*rec.ent));
    if (!rec.ent)
        return -ENOMEM;
    struct queue_rec_buf b = {0};
    int rc = 0;
    for (size_t i = 0; i < m->nrcpt && rc == 0; i++) {
        int n = addr_domain_key(queue_rcpt_domain(&m->rcpts[i]), rec.ent[i].key,
                                sizeof(rec.ent[i].key));
        rec.ent[i].idx = (uint32_t)i;
        rec.ent[i].klen = n > 0 ? (size_t)n : 0;
        if (n < 0)
            rc = -EINVAL;
    }
    if (rc == 0)
        rc = queue_put_rec(q, txn, &rec, MDB_NOOVERWRITE);

    /* Recipients: the record's idx is the array position; id and idx live in the key. */
    for (size_t i = 0; i < m->nrcpt && rc == 0; i++) {
        struct queue_rcpt r = m->rcpts[i];
        snprintf(r.domain, sizeof(r.domain), "%s", queue_rcpt_domain(&m->rcpts[i]));
        addr_lower(r.domain);
        unsigned char rk[QUEUE_REC_RKEY_MAX];
        size_t rklen =
            queue_rec_rcpt_key(rk, rec.ent[i].key, rec.ent[i].klen, rec.env.id, (uint32_t)i);
        rc = queue_rec_rcpt_encode(&r, &b);
        if (rc == 0)
            rc = queue_put_val(txn, q->rcpt, rk, rklen, &b, MDB_NOOVERWRITE);
    }

    /* Counters: a message counts once in each of its domains. */
    for (size_t i = 0; i < m->nrcpt && rc == 0; i++) {
        const struct queue_rec_ent *t = &rec.ent[i];
        bool first = true;
        uint64_t n = 0;
        for (size_t j = 0; j < m->nrcpt; j++) {
            if (rec.ent[j].klen == t->klen && memcmp(rec.ent[j].key, t->key, t->klen) == 0) {
                if (j < i)
                    first = false;
                n++;
            }
        }
        if (!first)
            continue;
        struct queue_domain_stats d;
        rc = queue_dom_get(q, txn, t->key, t->klen, &d);
        if (rc == -ENOENT) {
            snprintf(d.domain, sizeof(d.domain), "%s", queue_rcpt_domain(&m->rcpts[i]));
            addr_lower(d.domain);
            rc = 0;
        }
        if (rc)
            break;
        d.messages++;
        d.rcpts += n;
        d.bytes += rec.env.size;
        if (d.oldest == 0 || rec.env.arrival < d.oldest)
            d.oldest = rec.env.arrival;
        rc = queue_dom_put(q, txn, t->key, t->klen, &d);
    }

    /* Body in QUEUE_CHUNK pieces: ordinary pages are freed when it is deleted. */
    for (uint64_t off = 0, chunk = 0; off < m->body_len && rc == 0; off += QUEUE_CHUNK) {
        if (chunk > UINT32_MAX) {
            rc = -EFBIG;
            break;
        }
        unsigned char kb[QUEUE_REC_BKEY_LEN];
        queue_rec_body_key(kb, rec.env.id, (uint32_t)chunk++);
        size_t n = m->body_len - off < QUEUE_CHUNK ? m->body_len - off : QUEUE_CHUNK;
        MDB_val k = {sizeof(kb), kb}, v = {n, m->body + off};
        rc = queue_err(mdb_put(txn, q->body, &k, &v, MDB_NOOVERWRITE));
    }
    if (rc == 0)
        rc = queue_meta_add_bytes(q, txn, rec.env.size, 0);
    queue_rec_buf_free(&b);
    free(rec.ent);
    return rc;
}

struct queue_put_arg {
    struct queue_new_msg *const *msgs;
    size_t n;
};

static int queue_put_txn(struct queue *q, MDB_txn *txn, void *arg)
{
    const struct queue_put_arg *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        int rc = queue_put_one(q, txn, a->msgs[i]);
        if (rc)
            return rc;
    }
    return 0;
}

int queue_put_batch(struct queue *q, struct queue_new_msg *const *msgs, size_t n)
{
    size_t need = 4096;
    for (size_t i = 0; i < n; i++) {
        int rc = queue_msg_check(msgs[i]);
        if (rc)
            return rc;
        /* Chunks spill to overflow pages; recipients and copy-on-write add a little. */
        need += msgs[i]->body_len + msgs[i]->body_len / 8 + msgs[i]->nrcpt * 2048 + 8192;
    }
    if (n == 0)
        return 0;
    struct queue_put_arg a = {msgs, n};
    int rc = queue_write(q, queue_put_txn, &a, need);
    if (rc && rc != -EINVAL) {
        char idbuf[QUEUE_ID_STR];
        log_warn("%s put failed n=%zu err=%s", queue_id_str(msgs[0]->env.id, idbuf), n,
                 hf_errname(rc));
    }
    return rc;
}

/* ---- reads ---------------------------------------------------------------------------- */

int queue_get_env(struct queue *q, uint64_t id, struct queue_env *out)
{
    MDB_txn *txn;
    int rc = queue_txn_begin(q, false, &txn);
    if (rc)
        return rc;
    struct queue_rec_msg rec;
    rc = queue_get_rec(q, txn, id, &rec);
    if (rc == 0)
        *out = rec.env;
    queue_rec_msg_free(&rec);
    queue_txn_abort(q, txn);
    return rc;
}

int queue_get_rcpts(struct queue *q, uint64_t id, queue_rcpt_cb cb, void *arg)
{
    MDB_txn *txn;
    int rc = queue_txn_begin(q, false, &txn);
    if (rc)
        return rc;
    struct queue_rec_msg rec;
    rc = queue_get_rec(q, txn, id, &rec);
    for (size_t i = 0; i < rec.nent && rc == 0; i++) {
        unsigned char rk[QUEUE_REC_RKEY_MAX];
        MDB_val k = {queue_rec_rcpt_key(rk, rec.ent[i].key, rec.ent[i].klen, id, rec.ent[i].idx),
                     rk},
                v;
        rc = mdb_get(txn, q->rcpt, &k, &v);
        if (rc) {
            rc = rc == MDB_NOTFOUND ? HF_ECORRUPT : queue_err(rc);
            break;
        }
        struct queue_rcpt r;
        rc = queue_rec_rcpt_decode(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r);
        if (rc == 0)
            rc = cb(&r, arg);
    }
    queue_rec_msg_free(&rec);
    queue_txn_abort(q, txn);
    return rc;
}

int queue_read_body(struct queue *q, uint64_t id, queue_body_cb cb, void *arg)
{
    MDB_txn *txn;
    int rc = queue_txn_begin(q, false, &txn);
    if (rc)
        return rc;
    struct queue_rec_msg rec;
    rc = queue_get_rec(q, txn, id, &rec);
    queue_rec_msg_free(&rec);
    MDB_cursor *cur = NULL;
    if (rc == 0)
        rc = queue_err(mdb_cursor_open(txn, q->body, &cur));
    /* Chunks must be 0, 1, 2, ... each full but the last, adding up to body_len. */
    uint64_t got = 0;
    uint32_t chunk = 0;
    while (rc == 0 && got < rec.body_len) {
        unsigned char kb[QUEUE_REC_BKEY_LEN];
        queue_rec_body_key(kb, id, chunk);
        MDB_val k = {sizeof(kb), kb}, v;
        int mrc = mdb_cursor_get(cur, &k, &v, chunk == 0 ? MDB_SET_KEY : MDB_NEXT);
        if (mrc == MDB_NOTFOUND ||
            (mrc == 0 && (k.mv_size != sizeof(kb) || memcmp(k.mv_data, kb, sizeof(kb)))))
            rc = HF_ECORRUPT;
        else if (mrc)
            rc = queue_err(mrc);
        else if (v.mv_size == 0 || v.mv_size > rec.body_len - got ||
                 (v.mv_size != QUEUE_CHUNK && got + v.mv_size != rec.body_len))
            rc = HF_ECORRUPT;
        if (rc)
            break;
        got += v.mv_size;
        chunk++;
        rc = cb(v.mv_data, v.mv_size, arg);
    }
    if (cur)
        mdb_cursor_close(cur);
    queue_txn_abort(q, txn);
    return rc;
}

int queue_scan_rcpts(struct queue *q, const char *domain, bool subdomains, queue_rcpt_cb cb,
                     void *arg)
{
    char prefix[QUEUE_REC_DKEY_SZ + 1];
    size_t plen = 0;
    if (domain) {
        int n = addr_domain_key(domain, prefix, sizeof(prefix) - 1);
        if (n < 0)
            return n == -ENOSPC ? HF_EADDR : n;
        /* "test.branch.\0" is exactly branch.test; "test.branch." also takes its
         * subdomains, and the trailing dot keeps the label boundary. */
        plen = (size_t)n + (subdomains ? 0 : 1);
    }
    MDB_txn *txn;
    int rc = queue_txn_begin(q, false, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    rc = queue_err(mdb_cursor_open(txn, q->rcpt, &cur));
    if (rc == 0) {
        MDB_val k = {plen, prefix}, v;
        int mrc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
        while (mrc == 0 && rc == 0) {
            if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
                break;
            struct queue_rcpt r;
            rc = queue_rec_rcpt_decode(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r);
            if (rc == 0)
                rc = cb(&r, arg);
            if (rc == 0)
                mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
            rc = queue_err(mrc);
        mdb_cursor_close(cur);
    }
    queue_txn_abort(q, txn);
    return rc;
}

int queue_domain_stats(struct queue *q, const char *domain, struct queue_domain_stats *out)
{
    char key[QUEUE_REC_DKEY_SZ];
    memset(out, 0, sizeof(*out));
    snprintf(out->domain, sizeof(out->domain), "%s", domain);
    addr_lower(out->domain);
    int n = addr_domain_key(domain, key, sizeof(key));
    if (n < 0)
        return -ENOENT;
    MDB_txn *txn;
    int rc = queue_txn_begin(q, false, &txn);
    if (rc)
        return rc;
    struct queue_domain_stats d;
    rc = queue_dom_get(q, txn, key, (size_t)n, &d);
    queue_txn_abort(q, txn);
    if (rc == 0)
        *out = d;
    return rc;
}

int queue_scan_domains(struct queue *q, queue_domain_cb cb, void *arg)
{
    MDB_txn *txn;
    int rc = queue_txn_begin(q, false, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    rc = queue_err(mdb_cursor_open(txn, q->domain, &cur));
    if (rc == 0) {
        MDB_val k, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (mrc == 0 && rc == 0) {
            struct queue_domain_stats d;
            rc = queue_rec_dom_decode(v.mv_data, v.mv_size, &d);
            if (rc == 0)
                rc = cb(&d, arg);
            if (rc == 0)
                mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
            rc = queue_err(mrc);
        mdb_cursor_close(cur);
    }
    queue_txn_abort(q, txn);
    return rc;
}

int queue_reader_check(struct queue *q)
{
    int dead = 0;
    int rc = mdb_reader_check(q->env, &dead);
    return rc ? queue_err(rc) : dead;
}

int queue_totals(struct queue *q, struct queue_totals *out)
{
    memset(out, 0, sizeof(*out));
    MDB_txn *txn;
    int rc = queue_txn_begin(q, false, &txn);
    if (rc)
        return rc;
    MDB_stat ms, rs, es;
    rc = queue_err(mdb_stat(txn, q->msg, &ms));
    if (rc == 0)
        rc = queue_err(mdb_stat(txn, q->rcpt, &rs));
    if (rc == 0)
        rc = queue_meta_bytes(q, txn, &out->bytes);
    if (rc == 0) {
        MDB_envinfo info;
        mdb_env_info(q->env, &info);
        mdb_env_stat(q->env, &es);
        out->messages = ms.ms_entries;
        out->rcpts = rs.ms_entries;
        out->map_size = info.me_mapsize;
        out->map_used = (info.me_last_pgno + 1) * (size_t)es.ms_psize;
    }
    queue_txn_abort(q, txn);
    return rc;
}

/* ---- updates -------------------------------------------------------------------------- */

/* Finds entry idx of rec; returns its position or -1. */
static ptrdiff_t queue_ent_find(const struct queue_rec_msg *rec, uint32_t idx)
{
    for (size_t i = 0; i < rec->nent; i++)
        if (rec->ent[i].idx == idx)
            return (ptrdiff_t)i;
    return -1;
}

/* Rewrites recipient entry i of rec as changed by u. */
static int queue_rcpt_change(struct queue *q, MDB_txn *txn, const struct queue_rec_msg *rec,
                             size_t i, const struct queue_update *u)
{
    const struct queue_rec_ent *t = &rec->ent[i];
    unsigned char rk[QUEUE_REC_RKEY_MAX];
    size_t rklen = queue_rec_rcpt_key(rk, t->key, t->klen, rec->env.id, t->idx);
    MDB_val k = {rklen, rk}, v;
    int rc = mdb_get(txn, q->rcpt, &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? HF_ECORRUPT : queue_err(rc);
    struct queue_rcpt r;
    rc = queue_rec_rcpt_decode(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r);
    if (rc)
        return rc;
    switch (u->op) {
    case QUEUE_OP_DEFERRED:
    case QUEUE_OP_FAILED:
        r.attempts++;
        r.last_attempt = u->when;
        snprintf(r.last_error, sizeof(r.last_error), "%.*s", (int)(sizeof(u->error) - 1), u->error);
        if (u->op == QUEUE_OP_DEFERRED) {
            r.state = QUEUE_RS_DEFERRED;
            r.next_attempt = u->next_attempt;
        } else {
            r.state = QUEUE_RS_FAILED;
        }
        break;
    case QUEUE_OP_REQUEUE_MSG:
        r.next_attempt = 0;
        break;
    case QUEUE_OP_WARNED:
        r.warned = true;
        break;
    default:
        return -EINVAL;
    }
    struct queue_rec_buf b = {0};
    rc = queue_rec_rcpt_encode(&r, &b);
    if (rc == 0)
        rc = queue_put_val(txn, q->rcpt, rk, rklen, &b, 0);
    queue_rec_buf_free(&b);
    return rc;
}

static int queue_apply_domain(struct queue *q, MDB_txn *txn, struct queue_update *u)
{
    char name[sizeof(u->domain)];
    snprintf(name, sizeof(name), "%.*s", (int)(sizeof(u->domain) - 1), u->domain);
    addr_lower(name);
    char key[QUEUE_REC_DKEY_SZ];
    int n = addr_domain_key(name, key, sizeof(key));
    if (n < 0) {
        u->result = -EINVAL;
        return 0;
    }
    struct queue_domain_stats d;
    int rc = queue_dom_get(q, txn, key, (size_t)n, &d);
    if (rc == -ENOENT && u->op == QUEUE_OP_RELEASE_DOMAIN) {
        u->result = -ENOENT;
        return 0;
    }
    if (rc == -ENOENT) {
        snprintf(d.domain, sizeof(d.domain), "%s", name);
        rc = 0;
    }
    if (rc)
        return rc;
    d.held = u->op == QUEUE_OP_HOLD_DOMAIN;
    return queue_dom_put(q, txn, key, (size_t)n, &d);
}

/* Applies one update. Returns a fatal error (the transaction is abandoned) or 0, with the
 * update's own outcome in u->result. */
static int queue_apply_one(struct queue *q, MDB_txn *txn, struct queue_update *u)
{
    u->result = 0;
    if (u->op == QUEUE_OP_HOLD_DOMAIN || u->op == QUEUE_OP_RELEASE_DOMAIN)
        return queue_apply_domain(q, txn, u);
    struct queue_rec_msg rec;
    int rc = queue_get_rec(q, txn, u->id, &rec);
    if (rc == -ENOENT || rc == HF_ECORRUPT) {
        /* One damaged envelope must not block every other update of the batch. */
        u->result = rc;
        return 0;
    }
    if (rc)
        return rc;
    ptrdiff_t i = -1;
    switch (u->op) {
    case QUEUE_OP_DELIVERED:
    case QUEUE_OP_BOUNCED:
    case QUEUE_OP_DEFERRED:
    case QUEUE_OP_FAILED:
    case QUEUE_OP_WARNED: {
        bool removal = u->op == QUEUE_OP_DELIVERED || u->op == QUEUE_OP_BOUNCED;
        i = queue_ent_find(&rec, u->idx);
        if (i < 0)
            u->result = -ENOENT;
        else if (removal)
            rc = queue_ent_remove(q, txn, &rec, (size_t)i);
        else
            rc = queue_rcpt_change(q, txn, &rec, (size_t)i, u);
        if (rc == 0 && i >= 0 && removal)
            rc = queue_msg_finish(q, txn, &rec);
        break;
    }
    case QUEUE_OP_DELETE_MSG:
        while (rec.nent > 0 && rc == 0)
            rc = queue_ent_remove(q, txn, &rec, rec.nent - 1);
        if (rc == 0)
            rc = queue_msg_finish(q, txn, &rec);
        break;
    case QUEUE_OP_HOLD_MSG:
    case QUEUE_OP_RELEASE_MSG:
        if (u->op == QUEUE_OP_HOLD_MSG)
            rec.env.flags |= QUEUE_F_HELD;
        else
            rec.env.flags &= ~QUEUE_F_HELD;
        rc = queue_put_rec(q, txn, &rec, 0);
        break;
    case QUEUE_OP_REQUEUE_MSG:
        for (size_t j = 0; j < rec.nent && rc == 0; j++)
            rc = queue_rcpt_change(q, txn, &rec, j, u);
        break;
    default:
        u->result = -EINVAL;
        break;
    }
    queue_rec_msg_free(&rec);
    return rc;
}

struct queue_apply_arg {
    struct queue_update *ups;
    size_t n;
};

static int queue_apply_txn(struct queue *q, MDB_txn *txn, void *arg)
{
    const struct queue_apply_arg *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        int rc = queue_apply_one(q, txn, &a->ups[i]);
        if (rc)
            return rc;
    }
    return 0;
}

int queue_apply(struct queue *q, struct queue_update *ups, size_t n)
{
    if (n == 0)
        return 0;
    struct queue_apply_arg a = {ups, n};
    int rc = queue_write(q, queue_apply_txn, &a, 65536 + n * 4096);
    if (rc)
        log_warn("queue apply failed n=%zu err=%s", n, hf_errname(rc));
    return rc;
}

struct queue_commit_arg {
    struct queue_put_arg put;
    struct queue_apply_arg apply;
};

static int queue_commit_txn(struct queue *q, MDB_txn *txn, void *arg)
{
    struct queue_commit_arg *a = arg;
    int rc = queue_put_txn(q, txn, &a->put);
    return rc ? rc : queue_apply_txn(q, txn, &a->apply);
}

int queue_commit(struct queue *q, struct queue_new_msg *const *msgs, size_t nmsgs,
                 struct queue_update *ups, size_t nups)
{
    size_t need = 65536 + nups * 4096;
    for (size_t i = 0; i < nmsgs; i++) {
        int rc = queue_msg_check(msgs[i]);
        if (rc)
            return rc;
        need += msgs[i]->body_len + msgs[i]->body_len / 8 + msgs[i]->nrcpt * 2048 + 8192;
    }
    if (nmsgs + nups == 0)
        return 0;
    struct queue_commit_arg a = {{msgs, nmsgs}, {ups, nups}};
    int rc = queue_write(q, queue_commit_txn, &a, need);
    if (rc)
        log_warn("queue commit failed msgs=%zu updates=%zu err=%s", nmsgs, nups, hf_errname(rc));
    return rc;
}
