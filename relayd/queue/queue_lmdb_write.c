/* The queue on LMDB: write transactions. queue_put_batch stores new messages (envelope,
 * body chunks, one rcpt record per recipient, the domain counters) and queue_apply changes
 * recipients (delivered, deferred, failed, deleted, held) and the records that count them,
 * each batch in one transaction through queue__write (queue_lmdb.c), which grows the map and
 * runs it again when it is full. The envelope lists its queued recipients as (idx, domain
 * key) pairs; a message whose last recipient goes is deleted with its body. */
#include "queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "addr.h"
#include "hf_err.h"
#include "log.h"
#include "queue_lmdb_int.h"
#include "queue_rec.h"

/* ---- small table helpers (inside a write transaction) ---------------------------------- */

static int queue_put_val(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
                         const struct queue_rec_buf *b, unsigned flags)
{
    MDB_val k = {klen, (void *)key}, v = {b->len, b->p};
    return queue__err(mdb_put(txn, dbi, &k, &v, flags));
}

/* ---- the due index (kept in step with rcpt) -------------------------------------------- */

/* Removes the index entry of (due, id, idx); a missing entry is not an error. */
static int queue_due_del(struct queue *q, MDB_txn *txn, int64_t due, uint64_t id, uint32_t idx)
{
    unsigned char dk[QUEUE_REC_DUEKEY_LEN];
    queue_rec_due_key(dk, due, id, idx);
    MDB_val k = {sizeof(dk), dk};
    int rc = mdb_del(txn, q->due, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : queue__err(rc);
}

/* Sets r->due from the due function and enters it (under domain key dkey[0..dlen)). With
 * had set, r->due holds the time of its current entry, which is moved. */
static int queue_due_enter(struct queue *q, MDB_txn *txn, struct queue_rcpt *r, uint64_t id,
                           uint32_t idx, int64_t arrival, const char *dkey, size_t dlen, bool had)
{
    int64_t due = queue__due_of(q, r, arrival);
    if (had && due != r->due) {
        int rc = queue_due_del(q, txn, r->due, id, idx);
        if (rc)
            return rc;
    }
    r->due = due;
    unsigned char dk[QUEUE_REC_DUEKEY_LEN];
    queue_rec_due_key(dk, due, id, idx);
    MDB_val k = {sizeof(dk), dk}, v = {dlen, (void *)dkey};
    return queue__err(mdb_put(txn, q->due, &k, &v, 0));
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

static int queue_meta_add_bytes(struct queue *q, MDB_txn *txn, uint64_t add, uint64_t sub)
{
    uint64_t total;
    int rc = queue__meta_bytes(q, txn, &total);
    if (rc)
        return rc;
    total += add;
    total = total > sub ? total - sub : 0;
    unsigned char vb[8];
    queue_rec_put_be64(vb, total);
    MDB_val k = {5, "bytes"}, v = {8, vb};
    return queue__err(mdb_put(txn, q->meta, &k, &v, 0));
}

/* Writes the domain record, or deletes it when it counts nothing and is not held. */
static int queue_dom_put(struct queue *q, MDB_txn *txn, const char *key, size_t klen,
                         const struct queue_domain_stats *d)
{
    MDB_val k = {klen, (void *)key};
    if (d->messages == 0 && d->rcpts == 0 && !d->held) {
        int rc = mdb_del(txn, q->domain, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : queue__err(rc);
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
        return queue__err(rc);
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
        ret = queue__get_rec(q, txn, id, &rec);
        if (ret == 0)
            *out = rec.env.arrival;
        else if (ret == -ENOENT)
            ret = HF_ECORRUPT; /* a recipient without its envelope */
        queue_rec_msg_free(&rec);
    } else if (rc != 0 && rc != MDB_NOTFOUND) {
        ret = queue__err(rc);
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
        return queue__err(rc);
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
    return rc == MDB_NOTFOUND ? 0 : queue__err(rc);
}

/* Removes recipient entry i of rec: its rcpt record and its share of the domain counters.
 * The caller rewrites or deletes the envelope afterwards. */
static int queue_ent_remove(struct queue *q, MDB_txn *txn, struct queue_rec_msg *rec, size_t i)
{
    struct queue_rec_ent t = rec->ent[i];
    memmove(&rec->ent[i], &rec->ent[i + 1], (rec->nent - i - 1) * sizeof(*rec->ent));
    rec->nent--;
    unsigned char rk[QUEUE_REC_RKEY_MAX];
    MDB_val k = {queue_rec_rcpt_key(rk, t.key, t.klen, rec->env.id, t.idx), rk}, v;
    /* Its due entry goes with it: the record says where it is. */
    int rc = mdb_get(txn, q->rcpt, &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? HF_ECORRUPT : queue__err(rc);
    struct queue_rcpt old;
    if (queue_rec_rcpt_decode(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &old) == 0 &&
        (rc = queue_due_del(q, txn, old.due, rec->env.id, t.idx)) != 0)
        return rc;
    rc = mdb_del(txn, q->rcpt, &k, NULL);
    if (rc)
        return rc == MDB_NOTFOUND ? HF_ECORRUPT : queue__err(rc);
    bool last_in_domain = true;
    for (size_t j = 0; j < rec->nent; j++)
        if (rec->ent[j].klen == t.klen && memcmp(rec->ent[j].key, t.key, t.klen) == 0)
            last_in_domain = false;
    struct queue_domain_stats d;
    rc = queue__dom_get(q, txn, t.key, t.klen, &d);
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
    int rc = queue__err(mdb_del(txn, q->msg, &k, NULL));
    if (rc == 0)
        rc = queue_body_del(q, txn, rec->env.id);
    if (rc == 0)
        rc = queue_meta_add_bytes(q, txn, 0, rec->env.size);
    return rc;
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
        rc = queue_due_enter(q, txn, &r, rec.env.id, (uint32_t)i, rec.env.arrival, rec.ent[i].key,
                             rec.ent[i].klen, false);
        if (rc == 0)
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
        rc = queue__dom_get(q, txn, t->key, t->klen, &d);
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
        rc = queue__err(mdb_put(txn, q->body, &k, &v, MDB_NOOVERWRITE));
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
    int rc = queue__write(q, queue_put_txn, &a, need);
    if (rc && rc != -EINVAL) {
        char idbuf[QUEUE_ID_STR];
        log_warn("%s put failed n=%zu err=%s", queue_id_str(msgs[0]->env.id, idbuf), n,
                 hf_errname(rc));
    }
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
        return rc == MDB_NOTFOUND ? HF_ECORRUPT : queue__err(rc);
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
    case QUEUE_OP_RESCHEDULE:
        /* A stale entry at u->when (not the record's own) goes too. */
        if (u->when != r.due && (rc = queue_due_del(q, txn, u->when, rec->env.id, t->idx)))
            return rc;
        break;
    default:
        return -EINVAL;
    }
    rc = queue_due_enter(q, txn, &r, rec->env.id, t->idx, rec->env.arrival, t->key, t->klen, true);
    if (rc)
        return rc;
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
    int rc = queue__dom_get(q, txn, key, (size_t)n, &d);
    if (rc == -ENOENT && (u->op == QUEUE_OP_RELEASE_DOMAIN || u->op == QUEUE_OP_DOMAIN_WARNED)) {
        u->result = -ENOENT;
        return 0;
    }
    if (rc == -ENOENT) {
        snprintf(d.domain, sizeof(d.domain), "%s", name);
        rc = 0;
    }
    if (rc)
        return rc;
    if (u->op == QUEUE_OP_DOMAIN_WARNED)
        d.warned_at = u->when;
    else
        d.held = u->op == QUEUE_OP_HOLD_DOMAIN;
    return queue_dom_put(q, txn, key, (size_t)n, &d);
}

/* Applies one update. Returns a fatal error (the transaction is abandoned) or 0, with the
 * update's own outcome in u->result. */
static int queue_apply_one(struct queue *q, MDB_txn *txn, struct queue_update *u)
{
    u->result = 0;
    u->removed = false;
    if (u->op == QUEUE_OP_HOLD_DOMAIN || u->op == QUEUE_OP_RELEASE_DOMAIN ||
        u->op == QUEUE_OP_DOMAIN_WARNED)
        return queue_apply_domain(q, txn, u);
    struct queue_rec_msg rec;
    int rc = queue__get_rec(q, txn, u->id, &rec);
    if (u->op == QUEUE_OP_RESCHEDULE &&
        (rc == -ENOENT || (rc == 0 && queue_ent_find(&rec, u->idx) < 0))) {
        /* The entry outlived its recipient: drop it. */
        queue_rec_msg_free(&rec);
        u->result = -ENOENT;
        return queue_due_del(q, txn, u->when, u->id, u->idx);
    }
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
    case QUEUE_OP_WARNED:
    case QUEUE_OP_RESCHEDULE: {
        bool removal = u->op == QUEUE_OP_DELIVERED || u->op == QUEUE_OP_BOUNCED;
        i = queue_ent_find(&rec, u->idx);
        if (i < 0)
            u->result = -ENOENT;
        else if (removal)
            rc = queue_ent_remove(q, txn, &rec, (size_t)i);
        else
            rc = queue_rcpt_change(q, txn, &rec, (size_t)i, u);
        if (rc == 0 && i >= 0 && removal) {
            rc = queue_msg_finish(q, txn, &rec);
            u->removed = rc == 0 && rec.nent == 0;
        }
        break;
    }
    case QUEUE_OP_DELETE_MSG:
        while (rec.nent > 0 && rc == 0)
            rc = queue_ent_remove(q, txn, &rec, rec.nent - 1);
        if (rc == 0)
            rc = queue_msg_finish(q, txn, &rec);
        u->removed = rc == 0;
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
    int rc = queue__write(q, queue_apply_txn, &a, 65536 + n * 4096);
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
    int rc = queue__write(q, queue_commit_txn, &a, need);
    if (rc)
        log_warn("queue commit failed msgs=%zu updates=%zu err=%s", nmsgs, nups, hf_errname(rc));
    return rc;
}
