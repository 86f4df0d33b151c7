/* The queue's record encoding: envelope, recipient and domain records as bytes, and the
 * keys they are stored under. Pure: bytes in, structs out and back; no LMDB type, no I/O.
 * queue_lmdb.c decides where the bytes live and when they are written.
 *
 * Every record starts with a format octet (QUEUE_REC_V1); integers are big-endian, strings
 * a u16 length and that many octets (no NUL). Decoders check every length against the
 * input and the field it fills, and return HF_ECORRUPT for anything they did not write;
 * encoders check only that a struct can be represented (terminated strings, octet-sized
 * values), not what it means. The format is on disk: changing a byte here strands every
 * existing queue, and tests/unit/test_queue_rec.c holds one record of each kind verbatim.
 *
 *   msg    key: id (u64)
 *          value: ver, arrival (i64), size (u64), body_len (u64), flags (u32), ret (u8),
 *                 envid, sender, client_name, client_addr, count (u32),
 *                 count x (idx (u32), domain key)
 *   body   key: id (u64) + chunk (u32)
 *   rcpt   key: domain key + '\0' + id (u64) + idx (u32)
 *          value: ver, addr, domain, orcpt, notify (u32; bit 31: delay DSN sent),
 *                 state (u8), attempts (u32),
 *                 next_attempt (i64), last_attempt (i64), last_error,
 *                 [due (i64), only when above 0]
 *   due    key: due (u64) + id (u64) + idx (u32)   value: the recipient's domain key
 *          (the index of what comes due when: retries, warnings, expiry; see queue.h)
 *   domain key: domain key
 *          value: ver, domain, messages, rcpts, bytes (u64 each), oldest (i64),
 *                 flags (u8, bit 0: held), [warned_at (i64), only when above 0]
 * A domain key is addr_domain_key()'s reversed form ("test.branch."). */
#ifndef HF_QUEUE_REC_H
#define HF_QUEUE_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "queue.h"

#define QUEUE_REC_V1         1u                           /* first octet of every record */
#define QUEUE_REC_DKEY_SZ    (ADDR_DOMAIN_MAX + 3)        /* reversed key, trailing '.', NUL */
#define QUEUE_REC_MKEY_LEN   8                            /* msg key: id */
#define QUEUE_REC_BKEY_LEN   12                           /* body key: id, chunk */
#define QUEUE_REC_RKEY_MAX   (QUEUE_REC_DKEY_SZ - 1 + 13) /* rcpt key: dkey '\0' id idx */
#define QUEUE_REC_DUEKEY_LEN 20                           /* due key: time, id, idx */
#define QUEUE_REC_WARNED     0x80000000u /* in a rcpt record's notify word: delay DSN sent */
#define QUEUE_REC_RCPT_MAX   100000u     /* most recipients one envelope record may list */

/* ---- big-endian integers (meta values, keys) ------------------------------------------ */

/* Store v at p[0..4) / p[0..8), most significant octet first. */
void queue_rec_put_be32(unsigned char *p, uint32_t v);
void queue_rec_put_be64(unsigned char *p, uint64_t v);
/* Read p[0..4) / p[0..8) as written by queue_rec_put_be32/64. */
uint32_t queue_rec_get_be32(const unsigned char *p);
uint64_t queue_rec_get_be64(const unsigned char *p);

/* ---- output buffer -------------------------------------------------------------------- */

/* Where encoders write: p[0..len) holds the record, cap octets are allocated. Zero it
 * before first use ({0}); it may be reused for several records, then freed with
 * queue_rec_buf_free(). */
struct queue_rec_buf {
    unsigned char *p;
    size_t len, cap;
    int err; /* internal: the first allocation failure of the current record */
};

/* Frees b's storage and zeroes it. */
void queue_rec_buf_free(struct queue_rec_buf *b);

/* ---- keys ----------------------------------------------------------------------------- */

/* Writes the msg key of id to out. */
void queue_rec_msg_key(unsigned char out[QUEUE_REC_MKEY_LEN], uint64_t id);

/* Reads a msg key. Borrows key. Returns 0, or HF_ECORRUPT when len is not
 * QUEUE_REC_MKEY_LEN. */
int queue_rec_msg_key_parse(const void *key, size_t len, uint64_t *id);

/* Writes the key of body chunk number chunk of id to out. */
void queue_rec_body_key(unsigned char out[QUEUE_REC_BKEY_LEN], uint64_t id, uint32_t chunk);

/* Writes the rcpt key of (id, idx) under domain key dkey[0..dlen) to out and returns its
 * length (dlen + 13). dlen must be below QUEUE_REC_DKEY_SZ (asserted: keys come from
 * addr_domain_key() or from a decoded record, never straight from input). */
size_t queue_rec_rcpt_key(unsigned char out[QUEUE_REC_RKEY_MAX], const char *dkey, size_t dlen,
                          uint64_t id, uint32_t idx);

/* Splits a rcpt key into its domain key length (*dlen: the key is key[0..*dlen)), id and
 * idx. Borrows key. Returns 0, or HF_ECORRUPT when it is shorter than 15 octets or the
 * octet before id is not NUL; the out-parameters are then unchanged. */
int queue_rec_rcpt_key_parse(const void *key, size_t len, size_t *dlen, uint64_t *id,
                             uint32_t *idx);

/* Writes the due-index key of (due, id, idx) to out; a due below 0 is written as 0. */
void queue_rec_due_key(unsigned char out[QUEUE_REC_DUEKEY_LEN], int64_t due, uint64_t id,
                       uint32_t idx);
/* Reads a due-index key. Borrows key. Returns 0, or HF_ECORRUPT when len is not
 * QUEUE_REC_DUEKEY_LEN or the time is above INT64_MAX. */
int queue_rec_due_key_parse(const void *key, size_t len, int64_t *due, uint64_t *id, uint32_t *idx);

/* ---- envelope records ----------------------------------------------------------------- */

/* One queued recipient as listed in its envelope record. */
struct queue_rec_ent {
    uint32_t idx;
    size_t klen;                 /* strlen(key) */
    char key[QUEUE_REC_DKEY_SZ]; /* domain key, NUL-terminated */
};

/* An envelope record: the public envelope plus what only the storage needs. */
struct queue_rec_msg {
    struct queue_env env; /* env.id lives in the key; env.nrcpt is nent when decoded */
    uint64_t body_len;
    size_t nent;
    struct queue_rec_ent *ent; /* nent entries, in idx order */
};

/* Encodes m into b, replacing what b held (its storage is reused). Borrows m. env.id and
 * env.nrcpt are not stored (the key holds the id; nrcpt is the entry count); an entry's
 * key is written up to its NUL (klen is not consulted). Returns 0, -EINVAL when a string
 * is not NUL-terminated inside its field, env.ret is outside 0..255 or nent above
 * UINT32_MAX, -ENOMEM; on error b->len is unspecified. */
int queue_rec_msg_encode(const struct queue_rec_msg *m, struct queue_rec_buf *b);

/* Decodes the envelope record data[0..len) of message id into *out. Borrows data; *out
 * owns a copy of everything (free with queue_rec_msg_free). Returns 0, -ENOMEM, or
 * HF_ECORRUPT when: the format octet is not QUEUE_REC_V1; a field runs past the end or
 * octets are left over; a string holds NUL or does not fit its field; flags hold an
 * unknown bit; ret is above SMTP_RET_HDRS; the count is 0, above QUEUE_REC_RCPT_MAX or
 * larger than the remaining octets could hold; an entry's key is shorter than 2 octets or
 * does not end in '.'; idx values are not strictly increasing. On error *out owns nothing
 * (ent NULL, nent 0) and queue_rec_msg_free() on it is harmless. */
int queue_rec_msg_decode(uint64_t id, const void *data, size_t len, struct queue_rec_msg *out);

/* Frees m->ent and sets nent to 0; m itself belongs to the caller. */
void queue_rec_msg_free(struct queue_rec_msg *m);

/* ---- recipient records ---------------------------------------------------------------- */

/* Encodes r into b, replacing what b held. Borrows r. r->id and r->idx are not stored
 * (they live in the key). Returns 0, -EINVAL when a string is not NUL-terminated inside
 * its field or state is outside 0..255, -ENOMEM; on error b->len is unspecified. */
int queue_rec_rcpt_encode(const struct queue_rcpt *r, struct queue_rec_buf *b);

/* Decodes the recipient stored under key[0..klen) with value val[0..vlen) into *out
 * (id and idx from the key). Borrows key and val; *out holds copies. Returns 0 or
 * HF_ECORRUPT: a bad key (queue_rec_rcpt_key_parse), a format octet other than
 * QUEUE_REC_V1, a field past the end or octets left over, a string holding NUL or too long
 * for its field, a state above QUEUE_RS_FAILED, an unknown notify bit. *out is
 * unspecified on error. */
int queue_rec_rcpt_decode(const void *key, size_t klen, const void *val, size_t vlen,
                          struct queue_rcpt *out);

/* ---- domain records ------------------------------------------------------------------- */

/* Encodes d into b, replacing what b held. Borrows d. Returns 0, -EINVAL when d->domain
 * is not NUL-terminated inside its field, -ENOMEM; on error b->len is unspecified. */
int queue_rec_dom_encode(const struct queue_domain_stats *d, struct queue_rec_buf *b);

/* Decodes the domain record val[0..len) into *out. Borrows val. Returns 0 or HF_ECORRUPT:
 * a format octet other than QUEUE_REC_V1, a field past the end or octets left over, a
 * name holding NUL or too long, an unknown flag bit, more messages than recipients.
 * *out is unspecified on error. */
int queue_rec_dom_decode(const void *val, size_t len, struct queue_domain_stats *out);

#endif
