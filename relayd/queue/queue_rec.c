/* The queue's record encoding (see queue_rec.h for the layout). Encoding appends fields to a
 * growing buffer whose first allocation failure sticks; decoding reads through a
 * bounds-checked cursor whose first violation sticks, so each record is one straight list
 * of fields with a single check at the end. Storage, transactions and what the counters
 * mean are left to queue_lmdb.c. */
#include "queue_rec.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hf_err.h"
#include "smtp_cmd.h"

#define QUEUE_REC_DOM_HELD  0x1u /* domain record flags */
#define QUEUE_REC_ENV_FLAGS (QUEUE_F_8BITMIME | QUEUE_F_SMTPUTF8 | QUEUE_F_HELD)
#define QUEUE_REC_NOTIFY                                                                           \
    (SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY)

/* Strings carry a u16 length: every field they fill must stay below that. */
static_assert(sizeof(((struct queue_env *)0)->envid) <= 65536, "envid fits a u16 length");
static_assert(sizeof(((struct queue_env *)0)->sender) <= 65536, "sender fits a u16 length");
static_assert(sizeof(((struct queue_rcpt *)0)->orcpt) <= 65536, "orcpt fits a u16 length");
static_assert(sizeof(((struct queue_rcpt *)0)->last_error) <= 65536, "error fits a u16 length");
static_assert(QUEUE_REC_DKEY_SZ <= 65536, "domain key fits a u16 length");

/* ---- big-endian integers -------------------------------------------------------------- */

void queue_rec_put_be32(unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

void queue_rec_put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

uint32_t queue_rec_get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t queue_rec_get_be64(const unsigned char *p)
{
    return (uint64_t)queue_rec_get_be32(p) << 32 | queue_rec_get_be32(p + 4);
}

/* ---- writing -------------------------------------------------------------------------- */

void queue_rec_buf_free(struct queue_rec_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Starts a new record in b, keeping its storage. */
static void queue_rec_buf_reset(struct queue_rec_buf *b)
{
    b->len = 0;
    b->err = 0;
}

static void queue_rec_buf_put(struct queue_rec_buf *b, const void *d, size_t n)
{
    if (b->err || n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->err = -ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void queue_rec_buf_u8(struct queue_rec_buf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    queue_rec_buf_put(b, &c, 1);
}

static void queue_rec_buf_u32(struct queue_rec_buf *b, uint32_t v)
{
    unsigned char p[4];
    queue_rec_put_be32(p, v);
    queue_rec_buf_put(b, p, 4);
}

static void queue_rec_buf_u64(struct queue_rec_buf *b, uint64_t v)
{
    unsigned char p[8];
    queue_rec_put_be64(p, v);
    queue_rec_buf_put(b, p, 8);
}

/* A string as u16 length + octets; the caller has checked it with queue_rec_str_ok(). */
static void queue_rec_buf_str(struct queue_rec_buf *b, const char *s)
{
    size_t n = strlen(s);
    unsigned char p[2] = {(unsigned char)(n >> 8), (unsigned char)n};
    queue_rec_buf_put(b, p, 2);
    queue_rec_buf_put(b, s, n);
}

/* True if s is NUL-terminated within its field of sz octets. */
static bool queue_rec_str_ok(const char *s, size_t sz)
{
    return memchr(s, '\0', sz) != NULL;
}

#define QUEUE_REC_STR_OK(field) queue_rec_str_ok((field), sizeof(field))

/* ---- reading -------------------------------------------------------------------------- */

/* A bounds-checked reader; any violation sets bad and makes later reads return zeros. */
struct queue_rec_rd {
    const unsigned char *p;
    size_t left;
    bool bad;
};

static const unsigned char *queue_rec_rd_take(struct queue_rec_rd *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static unsigned queue_rec_rd_u8(struct queue_rec_rd *r)
{
    const unsigned char *p = queue_rec_rd_take(r, 1);
    return p ? p[0] : 0;
}

static uint32_t queue_rec_rd_u32(struct queue_rec_rd *r)
{
    const unsigned char *p = queue_rec_rd_take(r, 4);
    return p ? queue_rec_get_be32(p) : 0;
}

static uint64_t queue_rec_rd_u64(struct queue_rec_rd *r)
{
    const unsigned char *p = queue_rec_rd_take(r, 8);
    return p ? queue_rec_get_be64(p) : 0;
}

/* Copies a string into out (size outsz) and returns its length: too long for out or
 * holding a NUL octet is corrupt (out is then ""). */
static size_t queue_rec_rd_str(struct queue_rec_rd *r, char *out, size_t outsz)
{
    const unsigned char *lp = queue_rec_rd_take(r, 2);
    size_t n = lp ? (size_t)lp[0] << 8 | lp[1] : 0;
    const unsigned char *p = queue_rec_rd_take(r, n);
    if (!p || n >= outsz || memchr(p, '\0', n)) {
        r->bad = true;
        out[0] = '\0';
        return 0;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

/* ---- keys ----------------------------------------------------------------------------- */

void queue_rec_msg_key(unsigned char out[QUEUE_REC_MKEY_LEN], uint64_t id)
{
    queue_rec_put_be64(out, id);
}

int queue_rec_msg_key_parse(const void *key, size_t len, uint64_t *id)
{
    if (len != QUEUE_REC_MKEY_LEN)
        return HF_ECORRUPT;
    *id = queue_rec_get_be64(key);
    return 0;
}

void queue_rec_body_key(unsigned char out[QUEUE_REC_BKEY_LEN], uint64_t id, uint32_t chunk)
{
    queue_rec_put_be64(out, id);
    queue_rec_put_be32(out + 8, chunk);
}

size_t queue_rec_rcpt_key(unsigned char out[QUEUE_REC_RKEY_MAX], const char *dkey, size_t dlen,
                          uint64_t id, uint32_t idx)
{
    assert(dlen < QUEUE_REC_DKEY_SZ);
    memcpy(out, dkey, dlen);
    out[dlen] = '\0';
    queue_rec_put_be64(out + dlen + 1, id);
    queue_rec_put_be32(out + dlen + 9, idx);
    return dlen + 13;
}

int queue_rec_rcpt_key_parse(const void *key, size_t len, size_t *dlen, uint64_t *id, uint32_t *idx)
{
    const unsigned char *kp = key;
    if (len < 15 || kp[len - 13] != '\0')
        return HF_ECORRUPT;
    *dlen = len - 13;
    *id = queue_rec_get_be64(kp + len - 12);
    *idx = queue_rec_get_be32(kp + len - 4);
    return 0;
}

/* ---- envelope records ----------------------------------------------------------------- */

int queue_rec_msg_encode(const struct queue_rec_msg *m, struct queue_rec_buf *b)
{
    const struct queue_env *e = &m->env;
    if (!QUEUE_REC_STR_OK(e->envid) || !QUEUE_REC_STR_OK(e->sender) ||
        !QUEUE_REC_STR_OK(e->client_name) || !QUEUE_REC_STR_OK(e->client_addr) || e->ret < 0 ||
        e->ret > 255 || m->nent > UINT32_MAX)
        return -EINVAL;
    for (size_t i = 0; i < m->nent; i++)
        if (!QUEUE_REC_STR_OK(m->ent[i].key))
            return -EINVAL;
    queue_rec_buf_reset(b);
    queue_rec_buf_u8(b, QUEUE_REC_V1);
    queue_rec_buf_u64(b, (uint64_t)e->arrival);
    queue_rec_buf_u64(b, e->size);
    queue_rec_buf_u64(b, m->body_len);
    queue_rec_buf_u32(b, e->flags);
    queue_rec_buf_u8(b, (unsigned)e->ret);
    queue_rec_buf_str(b, e->envid);
    queue_rec_buf_str(b, e->sender);
    queue_rec_buf_str(b, e->client_name);
    queue_rec_buf_str(b, e->client_addr);
    queue_rec_buf_u32(b, (uint32_t)m->nent);
    for (size_t i = 0; i < m->nent; i++) {
        queue_rec_buf_u32(b, m->ent[i].idx);
        queue_rec_buf_str(b, m->ent[i].key);
    }
    return b->err;
}

int queue_rec_msg_decode(uint64_t id, const void *data, size_t len, struct queue_rec_msg *out)
{
    struct queue_rec_rd r = {data, len, false};
    memset(out, 0, sizeof(*out));
    struct queue_env *e = &out->env;
    e->id = id;
    if (queue_rec_rd_u8(&r) != QUEUE_REC_V1)
        return HF_ECORRUPT;
    e->arrival = (int64_t)queue_rec_rd_u64(&r);
    e->size = queue_rec_rd_u64(&r);
    out->body_len = queue_rec_rd_u64(&r);
    e->flags = queue_rec_rd_u32(&r);
    e->ret = (int)queue_rec_rd_u8(&r);
    queue_rec_rd_str(&r, e->envid, sizeof(e->envid));
    queue_rec_rd_str(&r, e->sender, sizeof(e->sender));
    queue_rec_rd_str(&r, e->client_name, sizeof(e->client_name));
    queue_rec_rd_str(&r, e->client_addr, sizeof(e->client_addr));
    uint32_t n = queue_rec_rd_u32(&r);
    /* Each entry takes at least 4 + 2 + 2 octets, which bounds n before allocating. */
    if (r.bad || (e->flags & ~QUEUE_REC_ENV_FLAGS) || e->ret > SMTP_RET_HDRS || n == 0 ||
        n > QUEUE_REC_RCPT_MAX || (size_t)n * 8 > r.left)
        return HF_ECORRUPT;
    out->ent = malloc(n * sizeof(*out->ent));
    if (!out->ent)
        return -ENOMEM;
    out->nent = n;
    for (uint32_t i = 0; i < n; i++) {
        struct queue_rec_ent *t = &out->ent[i];
        t->idx = queue_rec_rd_u32(&r);
        t->klen = queue_rec_rd_str(&r, t->key, sizeof(t->key));
        if (r.bad || t->klen < 2 || t->key[t->klen - 1] != '.' ||
            (i > 0 && t->idx <= out->ent[i - 1].idx))
            goto corrupt;
    }
    if (r.left != 0)
        goto corrupt;
    e->nrcpt = n;
    return 0;
corrupt:
    queue_rec_msg_free(out);
    return HF_ECORRUPT;
}

void queue_rec_msg_free(struct queue_rec_msg *m)
{
    free(m->ent);
    m->ent = NULL;
    m->nent = 0;
}

/* ---- recipient records ---------------------------------------------------------------- */

int queue_rec_rcpt_encode(const struct queue_rcpt *rc, struct queue_rec_buf *b)
{
    if (!QUEUE_REC_STR_OK(rc->addr) || !QUEUE_REC_STR_OK(rc->domain) ||
        !QUEUE_REC_STR_OK(rc->orcpt) || !QUEUE_REC_STR_OK(rc->last_error) || rc->state < 0 ||
        rc->state > 255)
        return -EINVAL;
    queue_rec_buf_reset(b);
    queue_rec_buf_u8(b, QUEUE_REC_V1);
    queue_rec_buf_str(b, rc->addr);
    queue_rec_buf_str(b, rc->domain);
    queue_rec_buf_str(b, rc->orcpt);
    /* Bit 31 of the notify word records that a delay DSN went out (older records never
     * set it, so they read as "not warned"). */
    queue_rec_buf_u32(b, (rc->notify & QUEUE_REC_NOTIFY) | (rc->warned ? QUEUE_REC_WARNED : 0u));
    queue_rec_buf_u8(b, (unsigned)rc->state);
    queue_rec_buf_u32(b, rc->attempts);
    queue_rec_buf_u64(b, (uint64_t)rc->next_attempt);
    queue_rec_buf_u64(b, (uint64_t)rc->last_attempt);
    queue_rec_buf_str(b, rc->last_error);
    /* Optional trailing field: when the due index looks at this recipient next (records
     * written before the index existed end here, and read as 0, "now"). */
    if (rc->due > 0)
        queue_rec_buf_u64(b, (uint64_t)rc->due);
    return b->err;
}

int queue_rec_rcpt_decode(const void *key, size_t klen, const void *val, size_t vlen,
                          struct queue_rcpt *out)
{
    size_t dlen;
    uint64_t id;
    uint32_t idx;
    if (queue_rec_rcpt_key_parse(key, klen, &dlen, &id, &idx) != 0)
        return HF_ECORRUPT;
    memset(out, 0, sizeof(*out));
    out->id = id;
    out->idx = idx;
    struct queue_rec_rd r = {val, vlen, false};
    if (queue_rec_rd_u8(&r) != QUEUE_REC_V1)
        return HF_ECORRUPT;
    queue_rec_rd_str(&r, out->addr, sizeof(out->addr));
    queue_rec_rd_str(&r, out->domain, sizeof(out->domain));
    queue_rec_rd_str(&r, out->orcpt, sizeof(out->orcpt));
    out->notify = queue_rec_rd_u32(&r);
    out->warned = (out->notify & QUEUE_REC_WARNED) != 0;
    out->notify &= ~QUEUE_REC_WARNED;
    out->state = (int)queue_rec_rd_u8(&r);
    out->attempts = queue_rec_rd_u32(&r);
    out->next_attempt = (int64_t)queue_rec_rd_u64(&r);
    out->last_attempt = (int64_t)queue_rec_rd_u64(&r);
    queue_rec_rd_str(&r, out->last_error, sizeof(out->last_error));
    if (!r.bad && r.left == 8)
        out->due = (int64_t)queue_rec_rd_u64(&r);
    if (r.bad || r.left != 0 || out->due < 0 || out->state > QUEUE_RS_FAILED ||
        (out->notify & ~QUEUE_REC_NOTIFY))
        return HF_ECORRUPT;
    return 0;
}

/* ---- domain records ------------------------------------------------------------------- */

int queue_rec_dom_encode(const struct queue_domain_stats *d, struct queue_rec_buf *b)
{
    if (!QUEUE_REC_STR_OK(d->domain))
        return -EINVAL;
    queue_rec_buf_reset(b);
    queue_rec_buf_u8(b, QUEUE_REC_V1);
    queue_rec_buf_str(b, d->domain);
    queue_rec_buf_u64(b, d->messages);
    queue_rec_buf_u64(b, d->rcpts);
    queue_rec_buf_u64(b, d->bytes);
    queue_rec_buf_u64(b, (uint64_t)d->oldest);
    queue_rec_buf_u8(b, d->held ? QUEUE_REC_DOM_HELD : 0);
    /* Optional trailing field: when the domain's postmaster was last warned. */
    if (d->warned_at > 0)
        queue_rec_buf_u64(b, (uint64_t)d->warned_at);
    return b->err;
}

int queue_rec_dom_decode(const void *val, size_t len, struct queue_domain_stats *out)
{
    struct queue_rec_rd r = {val, len, false};
    memset(out, 0, sizeof(*out));
    if (queue_rec_rd_u8(&r) != QUEUE_REC_V1)
        return HF_ECORRUPT;
    queue_rec_rd_str(&r, out->domain, sizeof(out->domain));
    out->messages = queue_rec_rd_u64(&r);
    out->rcpts = queue_rec_rd_u64(&r);
    out->bytes = queue_rec_rd_u64(&r);
    out->oldest = (int64_t)queue_rec_rd_u64(&r);
    unsigned fl = queue_rec_rd_u8(&r);
    if (!r.bad && r.left == 8)
        out->warned_at = (int64_t)queue_rec_rd_u64(&r);
    if (r.bad || r.left != 0 || out->warned_at < 0 || (fl & ~QUEUE_REC_DOM_HELD) ||
        out->messages > out->rcpts)
        return HF_ECORRUPT;
    out->held = fl & QUEUE_REC_DOM_HELD;
    return 0;
}

void queue_rec_due_key(unsigned char out[QUEUE_REC_DUEKEY_LEN], int64_t due, uint64_t id,
                       uint32_t idx)
{
    queue_rec_put_be64(out, due > 0 ? (uint64_t)due : 0);
    queue_rec_put_be64(out + 8, id);
    queue_rec_put_be32(out + 16, idx);
}

int queue_rec_due_key_parse(const void *key, size_t len, int64_t *due, uint64_t *id, uint32_t *idx)
{
    const unsigned char *k = key;
    if (len != QUEUE_REC_DUEKEY_LEN)
        return HF_ECORRUPT;
    uint64_t t = queue_rec_get_be64(k);
    if (t > (uint64_t)INT64_MAX)
        return HF_ECORRUPT;
    *due = (int64_t)t;
    *id = queue_rec_get_be64(k + 8);
    *idx = queue_rec_get_be32(k + 16);
    return 0;
}
