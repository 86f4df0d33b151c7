/* The queue on LMDB: reads and scans, each in a read transaction of its own (any thread,
 * concurrently with the writer): an envelope, a message's recipients, its body in chunks,
 * the recipients waiting for a domain (or its subdomains), domain counters, totals.
 * Callbacks get values that are valid until they return: LMDB's memory is copied out
 * before the transaction ends. */
#include "queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "hf_err.h"
#include "queue_lmdb_int.h"
#include "queue_rec.h"

/* ---- reads ---------------------------------------------------------------------------- */

int queue_get_env(struct queue *q, uint64_t id, struct queue_env *out)
{
    MDB_txn *txn;
    int rc = queue__txn_begin(q, false, &txn);
    if (rc)
        return rc;
    struct queue_rec_msg rec;
    rc = queue__get_rec(q, txn, id, &rec);
    if (rc == 0)
        *out = rec.env;
    queue_rec_msg_free(&rec);
    queue__txn_abort(q, txn);
    return rc;
}

int queue_get_rcpts(struct queue *q, uint64_t id, queue_rcpt_cb cb, void *arg)
{
    MDB_txn *txn;
    int rc = queue__txn_begin(q, false, &txn);
    if (rc)
        return rc;
    struct queue_rec_msg rec;
    rc = queue__get_rec(q, txn, id, &rec);
    for (size_t i = 0; i < rec.nent && rc == 0; i++) {
        unsigned char rk[QUEUE_REC_RKEY_MAX];
        MDB_val k = {queue_rec_rcpt_key(rk, rec.ent[i].key, rec.ent[i].klen, id, rec.ent[i].idx),
                     rk},
                v;
        rc = mdb_get(txn, q->rcpt, &k, &v);
        if (rc) {
            rc = rc == MDB_NOTFOUND ? HF_ECORRUPT : queue__err(rc);
            break;
        }
        struct queue_rcpt r;
        rc = queue_rec_rcpt_decode(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r);
        if (rc == 0)
            rc = cb(&r, arg);
    }
    queue_rec_msg_free(&rec);
    queue__txn_abort(q, txn);
    return rc;
}

int queue_read_body(struct queue *q, uint64_t id, queue_body_cb cb, void *arg)
{
    MDB_txn *txn;
    int rc = queue__txn_begin(q, false, &txn);
    if (rc)
        return rc;
    struct queue_rec_msg rec;
    rc = queue__get_rec(q, txn, id, &rec);
    queue_rec_msg_free(&rec);
    MDB_cursor *cur = NULL;
    if (rc == 0)
        rc = queue__err(mdb_cursor_open(txn, q->body, &cur));
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
            rc = queue__err(mrc);
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
    queue__txn_abort(q, txn);
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
    int rc = queue__txn_begin(q, false, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    rc = queue__err(mdb_cursor_open(txn, q->rcpt, &cur));
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
            rc = queue__err(mrc);
        mdb_cursor_close(cur);
    }
    queue__txn_abort(q, txn);
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
    int rc = queue__txn_begin(q, false, &txn);
    if (rc)
        return rc;
    struct queue_domain_stats d;
    rc = queue__dom_get(q, txn, key, (size_t)n, &d);
    queue__txn_abort(q, txn);
    if (rc == 0)
        *out = d;
    return rc;
}

int queue_scan_domains(struct queue *q, queue_domain_cb cb, void *arg)
{
    MDB_txn *txn;
    int rc = queue__txn_begin(q, false, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    rc = queue__err(mdb_cursor_open(txn, q->domain, &cur));
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
            rc = queue__err(mrc);
        mdb_cursor_close(cur);
    }
    queue__txn_abort(q, txn);
    return rc;
}

int queue_totals(struct queue *q, struct queue_totals *out)
{
    memset(out, 0, sizeof(*out));
    MDB_txn *txn;
    int rc = queue__txn_begin(q, false, &txn);
    if (rc)
        return rc;
    MDB_stat ms, rs, es;
    rc = queue__err(mdb_stat(txn, q->msg, &ms));
    if (rc == 0)
        rc = queue__err(mdb_stat(txn, q->rcpt, &rs));
    if (rc == 0)
        rc = queue__meta_bytes(q, txn, &out->bytes);
    if (rc == 0) {
        MDB_envinfo info;
        mdb_env_info(q->env, &info);
        mdb_env_stat(q->env, &es);
        out->messages = ms.ms_entries;
        out->rcpts = rs.ms_entries;
        out->map_size = info.me_mapsize;
        out->map_used = (info.me_last_pgno + 1) * (size_t)es.ms_psize;
    }
    queue__txn_abort(q, txn);
    return rc;
}

/* ---- the due index ---------------------------------------------------------------------- */

int queue_scan_due(struct queue *q, int64_t now, size_t max, queue_due_cb cb, void *arg)
{
    if (!q->has_due)
        return 0;
    MDB_txn *txn;
    int rc = queue__txn_begin(q, false, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    rc = queue__err(mdb_cursor_open(txn, q->due, &cur));
    if (rc == 0) {
        MDB_val k, v;
        size_t n = 0;
        /* In time order from the first entry: the loop ends at the first one not yet
         * due, so a tick with nothing due is one seek. */
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (mrc == 0 && rc == 0 && n < max) {
            int64_t due;
            uint64_t id;
            uint32_t idx;
            if (queue_rec_due_key_parse(k.mv_data, k.mv_size, &due, &id, &idx) != 0) {
                mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT); /* not ours: skipped */
                continue;
            }
            if (due > now)
                break;
            n++;
            /* The value is the domain key: with id and idx it names the rcpt record. */
            struct queue_rcpt r;
            bool have = false;
            if (v.mv_size > 0 && v.mv_size < QUEUE_REC_DKEY_SZ) {
                unsigned char rk[QUEUE_REC_RKEY_MAX];
                char dkey[QUEUE_REC_DKEY_SZ];
                memcpy(dkey, v.mv_data, v.mv_size);
                MDB_val rkv = {queue_rec_rcpt_key(rk, dkey, v.mv_size, id, idx), rk}, rv;
                have = mdb_get(txn, q->rcpt, &rkv, &rv) == 0 &&
                       queue_rec_rcpt_decode(rkv.mv_data, rkv.mv_size, rv.mv_data, rv.mv_size,
                                             &r) == 0 &&
                       r.due == due;
            }
            rc = cb(due, id, idx, have ? &r : NULL, arg);
            if (rc == 0)
                mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
            rc = queue__err(mrc);
        mdb_cursor_close(cur);
    }
    queue__txn_abort(q, txn);
    return rc;
}
