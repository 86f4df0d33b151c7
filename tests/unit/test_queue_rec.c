/* Unit tests of the queue's record encoding (relayd/queue_rec.c), without LMDB: round trips
 * with edge values, the exact octets of one record of each kind (a format change must fail
 * here before it strands a queue on disk), and every kind of damaged input.
 *
 * Damaged records are built field by field from a description of the format that is kept
 * here independently of the encoder (struct fld); a case replaces one field, cuts the
 * record at one, or adds octets at the end. Every decode runs on a heap copy of exactly the
 * record's size, so under ASan a read past the end is caught. A decode that succeeds must
 * also re-encode to the same octets: the format has exactly one encoding per record. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hf_err.h"
#include "queue.h"
#include "queue_rec.h"
#include "smtp_cmd.h"

/* A run of 'a' octets for over-long fields; filled in main(). */
static char aaa[70000];

/* ---- a description of the format, independent of the encoder ----------------------- */

enum fk { F_NONE, F_U8, F_U32, F_U64, F_STR, F_CUT };
enum pfx { PFX_LEN, PFX_SET, PFX_PAST };

struct fld {
    enum fk k;
    uint64_t v;    /* integers; F_STR with PFX_SET: the length prefix written */
    const char *s; /* F_STR octets */
    size_t len;    /* F_STR octet count */
    enum pfx pfx;  /* F_STR: prefix = len, = v, or one past the end of the record */
};

/* clang-format off */
#define U8(x)          {F_U8, (x), NULL, 0, PFX_LEN}
#define U32(x)         {F_U32, (x), NULL, 0, PFX_LEN}
#define U64(x)         {F_U64, (uint64_t)(x), NULL, 0, PFX_LEN}
#define STR(lit)       {F_STR, 0, (lit), sizeof(lit) - 1, PFX_LEN}
#define STRN(p, n)     {F_STR, 0, (p), (n), PFX_LEN}
#define STRP(lit, pre) {F_STR, (pre), (lit), sizeof(lit) - 1, PFX_SET}
#define STRPAST(lit)   {F_STR, 0, (lit), sizeof(lit) - 1, PFX_PAST}
#define CUT            {F_CUT, 0, NULL, 0, PFX_LEN}

enum rk { RK_MSG, RK_RCPT, RK_DOM };

/* Field positions of the golden records below. */
enum {
    M_VER, M_ARRIVAL, M_SIZE, M_BODYLEN, M_FLAGS, M_RET, M_ENVID, M_SENDER, M_CNAME, M_CADDR,
    M_COUNT, M_E0IDX, M_E0KEY, M_E1IDX, M_E1KEY, M_NF
};
enum {
    R_VER, R_ADDR, R_DOMAIN, R_ORCPT, R_NOTIFY, R_STATE, R_ATTEMPTS, R_NEXT, R_LAST, R_ERROR,
    R_NF
};
enum { D_VER, D_NAME, D_MSGS, D_RCPTS, D_BYTES, D_OLDEST, D_FLAGS, D_NF };
/* clang-format on */

#define GOLD_ID  UINT64_C(0x0123456789ABCDEF)
#define GOLD_T0  INT64_C(1700000000) /* 0x6553F100 */
#define GOLD_T1  INT64_C(1700000600) /* 0x6553F358 */
#define GOLD_IDX 3u

/* clang-format off */
static const struct fld gold_msg_f[M_NF] = {
    U8(1), U64(GOLD_T0), U64(5120), U64(5100), U32(QUEUE_F_8BITMIME | QUEUE_F_HELD),
    U8(SMTP_RET_HDRS), STR("E1"), STR("a@x.test"), STR("h.test"), STR("192.0.2.1"),
    U32(2), U32(0), STR("test.x."), U32(3), STR("[192.0.2.1]."),
};

static const struct fld gold_rcpt_f[R_NF] = {
    U8(1), STR("b@x.test"), STR("x.test"), STR("rfc822;b@x.test"),
    U32(SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE), U8(QUEUE_RS_DEFERRED), U32(2),
    U64(GOLD_T1), U64(GOLD_T0), STR("451 4.7.1 later"),
};

static const struct fld gold_dom_f[D_NF] = {
    U8(1), STR("x.test"), U64(1), U64(2), U64(5120), U64(GOLD_T0), U8(1),
};
/* clang-format on */

/* The same records as literal octets. */
/* clang-format off */
static const unsigned char gold_msg[] =
    "\x01"                              /* format */
    "\x00\x00\x00\x00\x65\x53\xF1\x00"  /* arrival */
    "\x00\x00\x00\x00\x00\x00\x14\x00"  /* size */
    "\x00\x00\x00\x00\x00\x00\x13\xEC"  /* body_len */
    "\x00\x00\x00\x05"                  /* flags */
    "\x02"                              /* ret */
    "\x00\x02" "E1"                     /* envid */
    "\x00\x08" "a@x.test"               /* sender */
    "\x00\x06" "h.test"                 /* client_name */
    "\x00\x09" "192.0.2.1"              /* client_addr */
    "\x00\x00\x00\x02"                  /* count */
    "\x00\x00\x00\x00" "\x00\x07" "test.x."
    "\x00\x00\x00\x03" "\x00\x0C" "[192.0.2.1].";

static const unsigned char gold_rcpt_key[] =
    "test.x.\0" "\x01\x23\x45\x67\x89\xAB\xCD\xEF" "\x00\x00\x00\x03";

static const unsigned char gold_rcpt[] =
    "\x01"                              /* format */
    "\x00\x08" "b@x.test"               /* addr */
    "\x00\x06" "x.test"                 /* domain */
    "\x00\x0F" "rfc822;b@x.test"        /* orcpt */
    "\x00\x00\x00\x06"                  /* notify */
    "\x01"                              /* state */
    "\x00\x00\x00\x02"                  /* attempts */
    "\x00\x00\x00\x00\x65\x53\xF3\x58"  /* next_attempt */
    "\x00\x00\x00\x00\x65\x53\xF1\x00"  /* last_attempt */
    "\x00\x0F" "451 4.7.1 later";       /* last_error */

static const unsigned char gold_dom[] =
    "\x01"                              /* format */
    "\x00\x06" "x.test"                 /* domain */
    "\x00\x00\x00\x00\x00\x00\x00\x01"  /* messages */
    "\x00\x00\x00\x00\x00\x00\x00\x02"  /* rcpts */
    "\x00\x00\x00\x00\x00\x00\x14\x00"  /* bytes */
    "\x00\x00\x00\x00\x65\x53\xF1\x00"  /* oldest */
    "\x01";                             /* flags: held */
/* clang-format on */

static const struct {
    const struct fld *f;
    size_t nf;
    const unsigned char *bytes;
    size_t len;
} gold[] = {
    [RK_MSG] = {gold_msg_f, M_NF, gold_msg, sizeof(gold_msg) - 1},
    [RK_RCPT] = {gold_rcpt_f, R_NF, gold_rcpt, sizeof(gold_rcpt) - 1},
    [RK_DOM] = {gold_dom_f, D_NF, gold_dom, sizeof(gold_dom) - 1},
};

/* The golden records as structs. */
static void gold_msg_struct(struct queue_rec_msg *m, struct queue_rec_ent ent[2])
{
    memset(m, 0, sizeof(*m));
    memset(ent, 0, 2 * sizeof(*ent));
    m->env.id = GOLD_ID;
    m->env.arrival = GOLD_T0;
    m->env.size = 5120;
    m->env.flags = QUEUE_F_8BITMIME | QUEUE_F_HELD;
    m->env.ret = SMTP_RET_HDRS;
    strcpy(m->env.envid, "E1");
    strcpy(m->env.sender, "a@x.test");
    strcpy(m->env.client_name, "h.test");
    strcpy(m->env.client_addr, "192.0.2.1");
    m->env.nrcpt = 2;
    m->body_len = 5100;
    ent[0] = (struct queue_rec_ent){.idx = 0, .klen = 7, .key = "test.x."};
    ent[1] = (struct queue_rec_ent){.idx = 3, .klen = 12, .key = "[192.0.2.1]."};
    m->nent = 2;
    m->ent = ent;
}

static void gold_rcpt_struct(struct queue_rcpt *r)
{
    memset(r, 0, sizeof(*r));
    r->id = GOLD_ID;
    r->idx = GOLD_IDX;
    strcpy(r->addr, "b@x.test");
    strcpy(r->domain, "x.test");
    strcpy(r->orcpt, "rfc822;b@x.test");
    r->notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE;
    r->state = QUEUE_RS_DEFERRED;
    r->attempts = 2;
    r->next_attempt = GOLD_T1;
    r->last_attempt = GOLD_T0;
    strcpy(r->last_error, "451 4.7.1 later");
}

static void gold_dom_struct(struct queue_domain_stats *d)
{
    memset(d, 0, sizeof(*d));
    strcpy(d->domain, "x.test");
    d->messages = 1;
    d->rcpts = 2;
    d->bytes = 5120;
    d->oldest = GOLD_T0;
    d->held = true;
}

/* Writes fields f[0..nf) to out (size cap), field `at` replaced by *with (at < 0: none),
 * then `extra` octets 0x5A. Returns the length. */
static size_t build(const struct fld *f, size_t nf, int at, const struct fld *with, size_t extra,
                    unsigned char *out, size_t cap)
{
    size_t n = 0, past[32], npast = 0;
    for (size_t i = 0; i < nf; i++) {
        const struct fld *x = (int)i == at ? with : &f[i];
        if (x->k == F_CUT)
            break;
        size_t w = x->k == F_U8 ? 1 : x->k == F_U32 ? 4 : x->k == F_U64 ? 8 : 2 + x->len;
        assert_true(n + w <= cap);
        switch (x->k) {
        case F_U8:
            out[n] = (unsigned char)x->v;
            break;
        case F_U32:
            queue_rec_put_be32(out + n, (uint32_t)x->v);
            break;
        case F_U64:
            queue_rec_put_be64(out + n, x->v);
            break;
        case F_STR: {
            size_t pre = x->pfx == PFX_SET ? (size_t)x->v : x->len;
            out[n] = (unsigned char)(pre >> 8);
            out[n + 1] = (unsigned char)pre;
            if (x->len)
                memcpy(out + n + 2, x->s, x->len);
            if (x->pfx == PFX_PAST)
                past[npast++] = n;
            break;
        }
        default:
            fail();
        }
        n += w;
    }
    assert_true(n + extra <= cap);
    memset(out + n, 0x5A, extra);
    n += extra;
    /* A length that reaches one octet past the end of the whole record. */
    for (size_t i = 0; i < npast; i++) {
        size_t pre = n - (past[i] + 2) + 1;
        pre = pre > 0xffff ? 0xffff : pre;
        out[past[i]] = (unsigned char)(pre >> 8);
        out[past[i] + 1] = (unsigned char)pre;
    }
    return n;
}

/* ---- decoding on exact-size heap copies ----------------------------------------------- */

static int encode_kind(enum rk kind, const void *rec, struct queue_rec_buf *b)
{
    switch (kind) {
    case RK_MSG:
        return queue_rec_msg_encode(rec, b);
    case RK_RCPT:
        return queue_rec_rcpt_encode(rec, b);
    default:
        return queue_rec_dom_encode(rec, b);
    }
}

/* Decodes p[0..len) as kind (a rcpt under the golden key) from a heap copy of exactly len
 * octets. On success checks that it re-encodes to the same octets, and copies the result
 * to out when out is not NULL (a msg's entries are freed first: out->ent is NULL). */
static int decode_exact(enum rk kind, const unsigned char *p, size_t len, void *out)
{
    unsigned char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, p, len);
    union {
        struct queue_rec_msg m;
        struct queue_rcpt r;
        struct queue_domain_stats d;
    } u;
    int rc;
    if (kind == RK_MSG)
        rc = queue_rec_msg_decode(GOLD_ID, copy, len, &u.m);
    else if (kind == RK_RCPT)
        rc = queue_rec_rcpt_decode(gold_rcpt_key, sizeof(gold_rcpt_key) - 1, copy, len, &u.r);
    else
        rc = queue_rec_dom_decode(copy, len, &u.d);
    free(copy);
    if (rc == 0) {
        struct queue_rec_buf b = {0};
        assert_int_equal(encode_kind(kind, &u, &b), 0);
        assert_int_equal(b.len, len);
        assert_memory_equal(b.p, p, len);
        queue_rec_buf_free(&b);
    } else if (kind == RK_MSG) {
        assert_null(u.m.ent); /* nothing owned after an error */
        assert_int_equal(u.m.nent, 0);
    }
    if (kind == RK_MSG && rc == 0)
        queue_rec_msg_free(&u.m);
    if (out && rc == 0)
        memcpy(out, &u, kind == RK_MSG ? sizeof(u.m) : kind == RK_RCPT ? sizeof(u.r) : sizeof(u.d));
    return rc;
}

/* ---- exact layout --------------------------------------------------------------------- */

static void test_golden_bytes(void **state)
{
    (void)state;
    struct queue_rec_buf b = {0};
    struct queue_rec_msg m;
    struct queue_rec_ent ent[2];
    gold_msg_struct(&m, ent);
    assert_int_equal(queue_rec_msg_encode(&m, &b), 0);
    assert_int_equal(b.len, sizeof(gold_msg) - 1);
    assert_memory_equal(b.p, gold_msg, b.len);

    struct queue_rcpt r;
    gold_rcpt_struct(&r);
    assert_int_equal(queue_rec_rcpt_encode(&r, &b), 0); /* b is reused */
    assert_int_equal(b.len, sizeof(gold_rcpt) - 1);
    assert_memory_equal(b.p, gold_rcpt, b.len);

    struct queue_domain_stats d;
    gold_dom_struct(&d);
    assert_int_equal(queue_rec_dom_encode(&d, &b), 0);
    assert_int_equal(b.len, sizeof(gold_dom) - 1);
    assert_memory_equal(b.p, gold_dom, b.len);
    queue_rec_buf_free(&b);
    assert_null(b.p);

    /* The field descriptions used for damaged records say the same. */
    for (size_t k = 0; k < sizeof(gold) / sizeof(gold[0]); k++) {
        unsigned char out[1024];
        size_t n = build(gold[k].f, gold[k].nf, -1, NULL, 0, out, sizeof(out));
        assert_int_equal(n, gold[k].len);
        assert_memory_equal(out, gold[k].bytes, n);
    }
}

static void test_golden_decode(void **state)
{
    (void)state;
    struct queue_rec_msg m;
    assert_int_equal(queue_rec_msg_decode(GOLD_ID, gold_msg, sizeof(gold_msg) - 1, &m), 0);
    struct queue_rec_msg want;
    struct queue_rec_ent ent[2];
    gold_msg_struct(&want, ent);
    assert_memory_equal(&m.env, &want.env, sizeof(m.env));
    assert_int_equal(m.body_len, want.body_len);
    assert_int_equal(m.nent, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(m.ent[i].idx, ent[i].idx);
        assert_int_equal(m.ent[i].klen, ent[i].klen);
        assert_string_equal(m.ent[i].key, ent[i].key);
    }
    queue_rec_msg_free(&m);
    assert_null(m.ent);
    queue_rec_msg_free(&m); /* twice is harmless */

    struct queue_rcpt r, rwant;
    gold_rcpt_struct(&rwant);
    assert_int_equal(queue_rec_rcpt_decode(gold_rcpt_key, sizeof(gold_rcpt_key) - 1, gold_rcpt,
                                           sizeof(gold_rcpt) - 1, &r),
                     0);
    assert_memory_equal(&r, &rwant, sizeof(r));

    struct queue_domain_stats d, dwant;
    gold_dom_struct(&dwant);
    assert_int_equal(queue_rec_dom_decode(gold_dom, sizeof(gold_dom) - 1, &d), 0);
    assert_memory_equal(&d, &dwant, sizeof(d));
}

static void test_keys(void **state)
{
    (void)state;
    unsigned char k[QUEUE_REC_RKEY_MAX];
    queue_rec_msg_key(k, GOLD_ID);
    assert_memory_equal(k, "\x01\x23\x45\x67\x89\xAB\xCD\xEF", 8);
    uint64_t id = 0;
    assert_int_equal(queue_rec_msg_key_parse(k, QUEUE_REC_MKEY_LEN, &id), 0);
    assert_true(id == GOLD_ID);
    assert_int_equal(queue_rec_msg_key_parse(k, 7, &id), HF_ECORRUPT);
    assert_int_equal(queue_rec_msg_key_parse(k, 9, &id), HF_ECORRUPT);
    assert_int_equal(queue_rec_msg_key_parse(k, 0, &id), HF_ECORRUPT);

    queue_rec_body_key(k, GOLD_ID, 0x01020304u);
    assert_memory_equal(k, "\x01\x23\x45\x67\x89\xAB\xCD\xEF\x01\x02\x03\x04", 12);

    size_t n = queue_rec_rcpt_key(k, "test.x.", 7, GOLD_ID, GOLD_IDX);
    assert_int_equal(n, sizeof(gold_rcpt_key) - 1);
    assert_memory_equal(k, gold_rcpt_key, n);
    size_t dlen = 0;
    uint32_t idx = 0;
    assert_int_equal(queue_rec_rcpt_key_parse(k, n, &dlen, &id, &idx), 0);
    assert_int_equal(dlen, 7);
    assert_true(id == GOLD_ID);
    assert_int_equal(idx, GOLD_IDX);

    /* The longest domain key and the extreme ids. */
    char dkey[QUEUE_REC_DKEY_SZ];
    memset(dkey, 'a', sizeof(dkey) - 2);
    dkey[sizeof(dkey) - 2] = '.';
    dkey[sizeof(dkey) - 1] = '\0';
    n = queue_rec_rcpt_key(k, dkey, sizeof(dkey) - 1, UINT64_MAX, UINT32_MAX);
    assert_int_equal(n, QUEUE_REC_RKEY_MAX);
    assert_int_equal(queue_rec_rcpt_key_parse(k, n, &dlen, &id, &idx), 0);
    assert_int_equal(dlen, sizeof(dkey) - 1);
    assert_true(id == UINT64_MAX);
    assert_int_equal(idx, UINT32_MAX);
}

/* ---- round trips ---------------------------------------------------------------------- */

/* Fills s with exactly n octets of a pattern (UTF-8 "é" pairs, then 'z') and a NUL. */
static void fill(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s[i] = i + 1 < n || n % 2 == 0 ? (i % 2 ? '\xA9' : '\xC3') : 'z';
    s[n] = '\0';
}

#define FILL_MAX(field) fill((field), sizeof(field) - 1)

struct msg_rt_case {
    const char *name;
    int64_t arrival;
    uint64_t size, body_len;
    unsigned flags;
    int ret;
    bool max;      /* every string at its longest */
    const char *s; /* else: this string in every field */
    uint32_t idx[3];
    size_t nent;
};

static const struct msg_rt_case msg_rt[] = {
    {"empty strings, zeroes", 0, 0, 0, 0, SMTP_RET_NONE, false, "", {0}, 1},
    {"longest fields, all flags",
     INT64_MAX,
     UINT64_MAX,
     UINT64_MAX,
     QUEUE_F_8BITMIME | QUEUE_F_SMTPUTF8 | QUEUE_F_HELD,
     SMTP_RET_HDRS,
     true,
     NULL,
     {0, 1, UINT32_MAX},
     3},
    {"utf-8, negative arrival",
     INT64_MIN,
     1,
     2,
     QUEUE_F_SMTPUTF8,
     SMTP_RET_FULL,
     false,
     "\xE7\x94\xA8\xE6\x88\xB7@\xE4\xBE\x8B\xE5\xAD\x90.\xE6\xB5\x8B\xE8\xAF\x95",
     {7, 9},
     2},
    {"octets that are not utf-8",
     -1,
     3,
     4,
     QUEUE_F_8BITMIME,
     SMTP_RET_NONE,
     false,
     "\xFF\xFE\x80\x01\x7F",
     {UINT32_MAX},
     1},
};

static void test_msg_round_trip(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(msg_rt) / sizeof(msg_rt[0]); c++) {
        const struct msg_rt_case *t = &msg_rt[c];
        struct queue_rec_ent ent[3];
        struct queue_rec_msg m = {.ent = ent, .nent = t->nent, .body_len = t->body_len};
        memset(ent, 0, sizeof(ent));
        m.env.id = UINT64_MAX - c;
        m.env.arrival = t->arrival;
        m.env.size = t->size;
        m.env.flags = t->flags;
        m.env.ret = t->ret;
        m.env.nrcpt = (uint32_t)t->nent;
        if (t->max) {
            FILL_MAX(m.env.envid);
            FILL_MAX(m.env.sender);
            FILL_MAX(m.env.client_name);
            FILL_MAX(m.env.client_addr);
        } else {
            snprintf(m.env.envid, sizeof(m.env.envid), "%s", t->s);
            snprintf(m.env.sender, sizeof(m.env.sender), "%s", t->s);
            snprintf(m.env.client_name, sizeof(m.env.client_name), "%s", t->s);
            snprintf(m.env.client_addr, sizeof(m.env.client_addr), "%s", t->s);
        }
        for (size_t i = 0; i < t->nent; i++) {
            ent[i].idx = t->idx[i];
            if (t->max) {
                FILL_MAX(ent[i].key);
                ent[i].key[sizeof(ent[i].key) - 2] = '.';
            } else {
                if (i == 0)
                    strcpy(ent[i].key, "a.");
                else
                    snprintf(ent[i].key, sizeof(ent[i].key), "%s%zu.", t->s, i);
            }
            ent[i].klen = strlen(ent[i].key);
        }
        struct queue_rec_buf b = {0};
        assert_int_equal(queue_rec_msg_encode(&m, &b), 0);
        struct queue_rec_msg got;
        assert_int_equal(queue_rec_msg_decode(m.env.id, b.p, b.len, &got), 0);
        print_message("case %zu %s: %zu octets\n", c, t->name, b.len);
        assert_memory_equal(&got.env, &m.env, sizeof(m.env));
        assert_true(got.body_len == m.body_len);
        assert_int_equal(got.nent, m.nent);
        for (size_t i = 0; i < m.nent; i++) {
            assert_int_equal(got.ent[i].idx, ent[i].idx);
            assert_int_equal(got.ent[i].klen, ent[i].klen);
            assert_string_equal(got.ent[i].key, ent[i].key);
        }
        queue_rec_msg_free(&got);
        /* Every shorter prefix of the record is damage. */
        for (size_t n = 0; n < b.len; n++)
            assert_int_equal(decode_exact(RK_MSG, b.p, n, NULL), HF_ECORRUPT);
        queue_rec_buf_free(&b);
    }
}

/* Each flag combination, and the largest recipient count a record may hold. */
static void test_msg_flags_and_count(void **state)
{
    (void)state;
    struct queue_rec_buf b = {0};
    struct queue_rec_msg m, got;
    struct queue_rec_ent ent[2];
    for (unsigned f = 0; f <= (QUEUE_F_8BITMIME | QUEUE_F_SMTPUTF8 | QUEUE_F_HELD); f++) {
        for (int ret = SMTP_RET_NONE; ret <= SMTP_RET_HDRS; ret++) {
            gold_msg_struct(&m, ent);
            m.env.flags = f;
            m.env.ret = ret;
            assert_int_equal(queue_rec_msg_encode(&m, &b), 0);
            assert_int_equal(queue_rec_msg_decode(GOLD_ID, b.p, b.len, &got), 0);
            assert_int_equal(got.env.flags, f);
            assert_int_equal(got.env.ret, ret);
            queue_rec_msg_free(&got);
        }
    }
    gold_msg_struct(&m, ent);
    m.nent = QUEUE_REC_RCPT_MAX;
    m.ent = calloc(m.nent, sizeof(*m.ent));
    assert_non_null(m.ent);
    for (size_t i = 0; i < m.nent; i++) {
        m.ent[i].idx = (uint32_t)i * 2;
        m.ent[i].klen = 2;
        strcpy(m.ent[i].key, i % 2 ? "b." : "a.");
    }
    m.env.nrcpt = QUEUE_REC_RCPT_MAX;
    assert_int_equal(queue_rec_msg_encode(&m, &b), 0);
    assert_int_equal(queue_rec_msg_decode(GOLD_ID, b.p, b.len, &got), 0);
    assert_int_equal(got.nent, QUEUE_REC_RCPT_MAX);
    assert_int_equal(got.env.nrcpt, QUEUE_REC_RCPT_MAX);
    assert_int_equal(got.ent[QUEUE_REC_RCPT_MAX - 1].idx, (QUEUE_REC_RCPT_MAX - 1) * 2);
    assert_string_equal(got.ent[QUEUE_REC_RCPT_MAX - 1].key, "b.");
    queue_rec_msg_free(&got);
    free(m.ent);
    queue_rec_buf_free(&b);
}

struct rcpt_rt_case {
    const char *name;
    uint64_t id;
    uint32_t idx;
    const char *dkey;
    bool max;
    const char *s;
    unsigned notify;
    int state;
    uint32_t attempts;
    int64_t next, last;
};

static const struct rcpt_rt_case rcpt_rt[] = {
    {"empty strings, zeroes", 0, 0, "a.", false, "", 0, QUEUE_RS_PENDING, 0, 0, 0},
    {"longest fields", UINT64_MAX, UINT32_MAX, NULL, true, NULL,
     SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, QUEUE_RS_FAILED, UINT32_MAX,
     INT64_MAX, INT64_MIN},
    {"utf-8", 1, 1, "\xE6\xB5\x8B\xE8\xAF\x95.\xE4\xBE\x8B\xE5\xAD\x90.", false,
     "\xE7\x94\xA8\xE6\x88\xB7@\xE4\xBE\x8B\xE5\xAD\x90.\xE6\xB5\x8B\xE8\xAF\x95",
     SMTP_NOTIFY_NEVER, QUEUE_RS_DEFERRED, 1, -1, 1},
};

static void test_rcpt_round_trip(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(rcpt_rt) / sizeof(rcpt_rt[0]); c++) {
        const struct rcpt_rt_case *t = &rcpt_rt[c];
        struct queue_rcpt r;
        memset(&r, 0, sizeof(r));
        r.id = t->id;
        r.idx = t->idx;
        if (t->max) {
            FILL_MAX(r.addr);
            FILL_MAX(r.domain);
            FILL_MAX(r.orcpt);
            FILL_MAX(r.last_error);
        } else {
            snprintf(r.addr, sizeof(r.addr), "%s", t->s);
            snprintf(r.domain, sizeof(r.domain), "%s", t->s);
            snprintf(r.orcpt, sizeof(r.orcpt), "%s", t->s);
            snprintf(r.last_error, sizeof(r.last_error), "%s", t->s);
        }
        r.notify = t->notify;
        r.state = t->state;
        r.attempts = t->attempts;
        r.next_attempt = t->next;
        r.last_attempt = t->last;
        char dkey[QUEUE_REC_DKEY_SZ];
        if (t->dkey) {
            snprintf(dkey, sizeof(dkey), "%s", t->dkey);
        } else {
            memset(dkey, 'k', sizeof(dkey) - 2);
            dkey[sizeof(dkey) - 2] = '.';
            dkey[sizeof(dkey) - 1] = '\0';
        }
        unsigned char k[QUEUE_REC_RKEY_MAX];
        size_t klen = queue_rec_rcpt_key(k, dkey, strlen(dkey), r.id, r.idx);
        struct queue_rec_buf b = {0};
        assert_int_equal(queue_rec_rcpt_encode(&r, &b), 0);
        struct queue_rcpt got;
        assert_int_equal(queue_rec_rcpt_decode(k, klen, b.p, b.len, &got), 0);
        print_message("case %zu %s: %zu octets\n", c, t->name, b.len);
        assert_memory_equal(&got, &r, sizeof(r));
        for (size_t n = 0; n < b.len; n++)
            assert_int_equal(decode_exact(RK_RCPT, b.p, n, NULL), HF_ECORRUPT);
        queue_rec_buf_free(&b);
    }
    /* Every notify combination and state. */
    struct queue_rec_buf b = {0};
    for (unsigned notify = 0; notify <= 0xfu; notify++) {
        for (int st = QUEUE_RS_PENDING; st <= QUEUE_RS_FAILED; st++) {
            struct queue_rcpt r, got;
            gold_rcpt_struct(&r);
            r.notify = notify;
            r.state = st;
            assert_int_equal(queue_rec_rcpt_encode(&r, &b), 0);
            assert_int_equal(decode_exact(RK_RCPT, b.p, b.len, &got), 0);
            assert_memory_equal(&got, &r, sizeof(r));
        }
    }
    queue_rec_buf_free(&b);
}

static void test_dom_round_trip(void **state)
{
    (void)state;
    static const struct {
        const char *name; /* NULL: longest */
        uint64_t messages, rcpts, bytes;
        int64_t oldest;
        bool held;
    } cases[] = {
        {"", 0, 0, 0, 0, false},
        {NULL, UINT64_MAX, UINT64_MAX, UINT64_MAX, INT64_MAX, true},
        {"\xE4\xBE\x8B\xE5\xAD\x90.\xE6\xB5\x8B\xE8\xAF\x95", 1, 1, 0, INT64_MIN, false},
        {"[192.0.2.1]", 0, 5, 1, -1, true},
    };
    struct queue_rec_buf b = {0};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct queue_domain_stats d, got;
        memset(&d, 0, sizeof(d));
        if (cases[c].name)
            snprintf(d.domain, sizeof(d.domain), "%s", cases[c].name);
        else
            FILL_MAX(d.domain);
        d.messages = cases[c].messages;
        d.rcpts = cases[c].rcpts;
        d.bytes = cases[c].bytes;
        d.oldest = cases[c].oldest;
        d.held = cases[c].held;
        assert_int_equal(queue_rec_dom_encode(&d, &b), 0);
        assert_int_equal(decode_exact(RK_DOM, b.p, b.len, &got), 0);
        assert_memory_equal(&got, &d, sizeof(d));
        for (size_t n = 0; n < b.len; n++)
            assert_int_equal(decode_exact(RK_DOM, b.p, n, NULL), HF_ECORRUPT);
    }
    queue_rec_buf_free(&b);
}

/* ---- encoding refuses what it cannot represent ---------------------------------------- */

static void test_encode_refuses(void **state)
{
    (void)state;
    struct queue_rec_buf b = {0};
    struct queue_rec_msg m;
    struct queue_rec_ent ent[2];
    /* Each string of the envelope unterminated in its field, then ret out of octet range. */
    for (int c = 0; c < 7; c++) {
        gold_msg_struct(&m, ent);
        switch (c) {
        case 0:
            memset(m.env.envid, 'x', sizeof(m.env.envid));
            break;
        case 1:
            memset(m.env.sender, 'x', sizeof(m.env.sender));
            break;
        case 2:
            memset(m.env.client_name, 'x', sizeof(m.env.client_name));
            break;
        case 3:
            memset(m.env.client_addr, 'x', sizeof(m.env.client_addr));
            break;
        case 4:
            memset(ent[1].key, 'x', sizeof(ent[1].key));
            break;
        case 5:
            m.env.ret = -1;
            break;
        case 6:
            m.env.ret = 256;
            break;
        }
        assert_int_equal(queue_rec_msg_encode(&m, &b), -EINVAL);
    }
    struct queue_rcpt r;
    for (int c = 0; c < 6; c++) {
        gold_rcpt_struct(&r);
        char *f[] = {r.addr, r.domain, r.orcpt, r.last_error};
        size_t sz[] = {sizeof(r.addr), sizeof(r.domain), sizeof(r.orcpt), sizeof(r.last_error)};
        if (c < 4)
            memset(f[c], 'x', sz[c]);
        else
            r.state = c == 4 ? -1 : 256;
        assert_int_equal(queue_rec_rcpt_encode(&r, &b), -EINVAL);
    }
    struct queue_domain_stats d;
    gold_dom_struct(&d);
    memset(d.domain, 'x', sizeof(d.domain));
    assert_int_equal(queue_rec_dom_encode(&d, &b), -EINVAL);
    /* A refusal leaves the buffer usable. */
    gold_dom_struct(&d);
    assert_int_equal(queue_rec_dom_encode(&d, &b), 0);
    assert_memory_equal(b.p, gold_dom, sizeof(gold_dom) - 1);
    queue_rec_buf_free(&b);
}

/* ---- damaged records ------------------------------------------------------------------ */

struct bad_case {
    enum rk kind;
    const char *name;
    int at; /* field replaced, or -1 */
    struct fld with;
    size_t extra; /* octets appended */
    int rc;
};

#define OVER(field_sz)    STRN(aaa, (field_sz)) /* one octet too long for its field */
#define LONGEST(field_sz) STRN(aaa, (field_sz)-1)

#define FSZ(type, field) sizeof(((type *)0)->field)
#define E_SZ(field)      FSZ(struct queue_env, field)
#define R_SZ(field)      FSZ(struct queue_rcpt, field)
#define D_SZ(field)      FSZ(struct queue_domain_stats, field)

static const struct bad_case bad[] = {
    /* envelope */
    {RK_MSG, "intact", -1, CUT, 0, 0},
    {RK_MSG, "version 0", M_VER, U8(0), 0, HF_ECORRUPT},
    {RK_MSG, "version 2", M_VER, U8(2), 0, HF_ECORRUPT},
    {RK_MSG, "version 0xff", M_VER, U8(0xff), 0, HF_ECORRUPT},
    {RK_MSG, "empty record", M_VER, CUT, 0, HF_ECORRUPT},
    {RK_MSG, "only the version", M_ARRIVAL, CUT, 0, HF_ECORRUPT},
    {RK_MSG, "unknown flag", M_FLAGS, U32(0x8), 0, HF_ECORRUPT},
    {RK_MSG, "high flag", M_FLAGS, U32(0x80000000u), 0, HF_ECORRUPT},
    {RK_MSG, "ret 3", M_RET, U8(SMTP_RET_HDRS + 1), 0, HF_ECORRUPT},
    {RK_MSG, "ret 0xff", M_RET, U8(0xff), 0, HF_ECORRUPT},
    {RK_MSG, "envid NUL", M_ENVID, STR("E\0"), 0, HF_ECORRUPT},
    {RK_MSG, "sender NUL", M_SENDER, STR("\0a@x.test"), 0, HF_ECORRUPT},
    {RK_MSG, "client_name NUL", M_CNAME, STR("h.\0test"), 0, HF_ECORRUPT},
    {RK_MSG, "client_addr NUL", M_CADDR, STR("192.0.2.1\0"), 0, HF_ECORRUPT},
    {RK_MSG, "envid longest", M_ENVID, LONGEST(E_SZ(envid)), 0, 0},
    {RK_MSG, "envid over-long", M_ENVID, OVER(E_SZ(envid)), 0, HF_ECORRUPT},
    {RK_MSG, "sender longest", M_SENDER, LONGEST(E_SZ(sender)), 0, 0},
    {RK_MSG, "sender over-long", M_SENDER, OVER(E_SZ(sender)), 0, HF_ECORRUPT},
    {RK_MSG, "client_name over-long", M_CNAME, OVER(E_SZ(client_name)), 0, HF_ECORRUPT},
    {RK_MSG, "client_addr over-long", M_CADDR, OVER(E_SZ(client_addr)), 0, HF_ECORRUPT},
    {RK_MSG, "client_addr 64 KiB", M_CADDR, STRN(aaa, 65535), 0, HF_ECORRUPT},
    {RK_MSG, "envid length past end", M_ENVID, STRPAST("E1"), 0, HF_ECORRUPT},
    {RK_MSG, "sender length past end", M_SENDER, STRPAST("a@x.test"), 0, HF_ECORRUPT},
    {RK_MSG, "client_addr length 0xffff", M_CADDR, STRP("192.0.2.1", 0xffff), 0, HF_ECORRUPT},
    {RK_MSG, "envid length one short", M_ENVID, STRP("E1", 1), 0, HF_ECORRUPT},
    {RK_MSG, "envid length one long", M_ENVID, STRP("E1", 3), 0, HF_ECORRUPT},
    {RK_MSG, "key length past end", M_E1KEY, STRPAST("[192.0.2.1]."), 0, HF_ECORRUPT},
    {RK_MSG, "count 0", M_COUNT, U32(0), 0, HF_ECORRUPT},
    {RK_MSG, "count 1 of 2", M_COUNT, U32(1), 0, HF_ECORRUPT},
    {RK_MSG, "count 3 of 2", M_COUNT, U32(3), 0, HF_ECORRUPT},
    {RK_MSG, "count beyond the octets", M_COUNT, U32(1000), 0, HF_ECORRUPT},
    {RK_MSG, "count above the limit", M_COUNT, U32(QUEUE_REC_RCPT_MAX + 1), 0, HF_ECORRUPT},
    {RK_MSG, "count 0xffffffff", M_COUNT, U32(UINT32_MAX), 0, HF_ECORRUPT},
    {RK_MSG, "no entries", M_E0IDX, CUT, 0, HF_ECORRUPT},
    {RK_MSG, "idx repeated", M_E1IDX, U32(0), 0, HF_ECORRUPT},
    {RK_MSG, "idx falling", M_E0IDX, U32(4), 0, HF_ECORRUPT},
    {RK_MSG, "key empty", M_E0KEY, STR(""), 0, HF_ECORRUPT},
    {RK_MSG, "key one octet", M_E0KEY, STR("."), 0, HF_ECORRUPT},
    {RK_MSG, "key shortest", M_E0KEY, STR("a."), 0, 0},
    {RK_MSG, "key without dot", M_E0KEY, STR("test.x"), 0, HF_ECORRUPT},
    {RK_MSG, "key NUL", M_E0KEY, STR("test\0x."), 0, HF_ECORRUPT},
    {RK_MSG, "key over-long", M_E0KEY, OVER(QUEUE_REC_DKEY_SZ), 0, HF_ECORRUPT},
    {RK_MSG, "trailing octet", -1, CUT, 1, HF_ECORRUPT},
    {RK_MSG, "trailing garbage", -1, CUT, 100, HF_ECORRUPT},
    /* recipient */
    {RK_RCPT, "intact", -1, CUT, 0, 0},
    {RK_RCPT, "version 0", R_VER, U8(0), 0, HF_ECORRUPT},
    {RK_RCPT, "version 2", R_VER, U8(2), 0, HF_ECORRUPT},
    {RK_RCPT, "empty record", R_VER, CUT, 0, HF_ECORRUPT},
    {RK_RCPT, "addr NUL", R_ADDR, STR("b@\0"), 0, HF_ECORRUPT},
    {RK_RCPT, "domain NUL", R_DOMAIN, STR("\0"), 0, HF_ECORRUPT},
    {RK_RCPT, "orcpt NUL", R_ORCPT, STR("rfc822\0"), 0, HF_ECORRUPT},
    {RK_RCPT, "error NUL", R_ERROR, STR("451\0"), 0, HF_ECORRUPT},
    {RK_RCPT, "addr longest", R_ADDR, LONGEST(R_SZ(addr)), 0, 0},
    {RK_RCPT, "addr over-long", R_ADDR, OVER(R_SZ(addr)), 0, HF_ECORRUPT},
    {RK_RCPT, "domain over-long", R_DOMAIN, OVER(R_SZ(domain)), 0, HF_ECORRUPT},
    {RK_RCPT, "orcpt longest", R_ORCPT, LONGEST(R_SZ(orcpt)), 0, 0},
    {RK_RCPT, "orcpt over-long", R_ORCPT, OVER(R_SZ(orcpt)), 0, HF_ECORRUPT},
    {RK_RCPT, "error longest", R_ERROR, LONGEST(R_SZ(last_error)), 0, 0},
    {RK_RCPT, "error over-long", R_ERROR, OVER(R_SZ(last_error)), 0, HF_ECORRUPT},
    {RK_RCPT, "addr length past end", R_ADDR, STRPAST("b@x.test"), 0, HF_ECORRUPT},
    {RK_RCPT, "error length past end", R_ERROR, STRPAST("451 4.7.1 later"), 0, HF_ECORRUPT},
    {RK_RCPT, "error length 0xffff", R_ERROR, STRP("451 4.7.1 later", 0xffff), 0, HF_ECORRUPT},
    {RK_RCPT, "error length one short", R_ERROR, STRP("451 4.7.1 later", 14), 0, HF_ECORRUPT},
    {RK_RCPT, "unknown notify bit", R_NOTIFY, U32(0x10), 0, HF_ECORRUPT},
    {RK_RCPT, "state 3", R_STATE, U8(QUEUE_RS_FAILED + 1), 0, HF_ECORRUPT},
    {RK_RCPT, "state 0xff", R_STATE, U8(0xff), 0, HF_ECORRUPT},
    {RK_RCPT, "no error field", R_ERROR, CUT, 0, HF_ECORRUPT},
    {RK_RCPT, "trailing octet", -1, CUT, 1, HF_ECORRUPT},
    {RK_RCPT, "trailing garbage", -1, CUT, 100, HF_ECORRUPT},
    /* domain */
    {RK_DOM, "intact", -1, CUT, 0, 0},
    {RK_DOM, "version 0", D_VER, U8(0), 0, HF_ECORRUPT},
    {RK_DOM, "version 2", D_VER, U8(2), 0, HF_ECORRUPT},
    {RK_DOM, "empty record", D_VER, CUT, 0, HF_ECORRUPT},
    {RK_DOM, "name NUL", D_NAME, STR("x\0test"), 0, HF_ECORRUPT},
    {RK_DOM, "name longest", D_NAME, LONGEST(D_SZ(domain)), 0, 0},
    {RK_DOM, "name over-long", D_NAME, OVER(D_SZ(domain)), 0, HF_ECORRUPT},
    {RK_DOM, "name length past end", D_NAME, STRPAST("x.test"), 0, HF_ECORRUPT},
    {RK_DOM, "name length 0xffff", D_NAME, STRP("x.test", 0xffff), 0, HF_ECORRUPT},
    {RK_DOM, "unknown flag", D_FLAGS, U8(2), 0, HF_ECORRUPT},
    {RK_DOM, "flags 0xff", D_FLAGS, U8(0xff), 0, HF_ECORRUPT},
    {RK_DOM, "not held", D_FLAGS, U8(0), 0, 0},
    {RK_DOM, "more messages than recipients", D_MSGS, U64(3), 0, HF_ECORRUPT},
    {RK_DOM, "messages equal recipients", D_MSGS, U64(2), 0, 0},
    {RK_DOM, "no flags", D_FLAGS, CUT, 0, HF_ECORRUPT},
    {RK_DOM, "trailing octet", -1, CUT, 1, HF_ECORRUPT},
    {RK_DOM, "trailing garbage", -1, CUT, 100, HF_ECORRUPT},
};

static void test_bad_records(void **state)
{
    (void)state;
    static unsigned char rec[70000 + 1024];
    for (size_t c = 0; c < sizeof(bad) / sizeof(bad[0]); c++) {
        const struct bad_case *t = &bad[c];
        size_t n =
            build(gold[t->kind].f, gold[t->kind].nf, t->at, &t->with, t->extra, rec, sizeof(rec));
        int rc = decode_exact(t->kind, rec, n, NULL);
        if (rc != t->rc)
            fail_msg("case %zu \"%s\": rc %d, expected %d", c, t->name, rc, t->rc);
    }
}

/* Every prefix of each golden record, and each octet changed in several ways: the result
 * is either a valid record (which then re-encodes to the same octets) or HF_ECORRUPT. */
static void test_truncated_and_mutated(void **state)
{
    (void)state;
    static const unsigned char subst[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
    for (size_t k = 0; k < sizeof(gold) / sizeof(gold[0]); k++) {
        const unsigned char *g = gold[k].bytes;
        size_t len = gold[k].len;
        for (size_t n = 0; n < len; n++)
            assert_int_equal(decode_exact(k, g, n, NULL), HF_ECORRUPT);
        unsigned char m[256];
        assert_true(len <= sizeof(m));
        size_t ok = 0;
        for (size_t i = 0; i < len; i++) {
            for (size_t s = 0; s < sizeof(subst) + 1; s++) {
                memcpy(m, g, len);
                m[i] = s < sizeof(subst) ? subst[s] : (unsigned char)(g[i] ^ 0x20);
                int rc = decode_exact(k, m, len, NULL);
                assert_true(rc == 0 || rc == HF_ECORRUPT);
                ok += rc == 0;
            }
        }
        print_message("kind %zu: %zu of %zu single-octet changes still decode\n", k, ok,
                      len * (sizeof(subst) + 1));
    }
}

/* Random octets and random splices of golden records (a fixed seed: reproducible). */
static void test_random_input(void **state)
{
    (void)state;
    uint64_t x = UINT64_C(0x9E3779B97F4A7C15);
    unsigned char buf[512];
    for (int iter = 0; iter < 30000; iter++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        enum rk kind = (enum rk)(x % 3);
        size_t len = (size_t)(x >> 8) % sizeof(buf);
        if (iter % 2) {
            /* A golden record with a random run overwritten. */
            len = gold[kind].len;
            memcpy(buf, gold[kind].bytes, len);
            size_t at = (size_t)(x >> 20) % len, run = 1 + (size_t)(x >> 40) % 8;
            for (size_t i = at; i < at + run && i < len; i++)
                buf[i] = (unsigned char)(x >> (i % 8 * 8));
        } else {
            for (size_t i = 0; i < len; i++)
                buf[i] = (unsigned char)(x >> (i % 8 * 8)) ^ (unsigned char)i;
            if (len)
                buf[0] = QUEUE_REC_V1; /* get past the first check */
        }
        int rc = decode_exact(kind, buf, len, NULL);
        assert_true(rc == 0 || rc == HF_ECORRUPT);
    }
}

static void test_bad_rcpt_keys(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *key;
        size_t len;
        int rc;
    } cases[] = {
        {"empty", "", 0, HF_ECORRUPT},
        {"id and idx only", "\0\0\0\0\0\0\0\0\0\0\0\0\0", 13, HF_ECORRUPT},
        {"14 octets", "a\0\0\0\0\0\0\0\0\0\0\0\0\0", 14, HF_ECORRUPT},
        {"shortest", "a.\0\0\0\0\0\0\0\0\0\0\0\0\0", 15, 0},
        {"no NUL before id", "test.x.x\x01\x23\x45\x67\x89\xAB\xCD\xEF\0\0\0\3", 20, HF_ECORRUPT},
        {"id cut short", "test.x.\0\x01\x23\x45\x67\x89\xAB\xCD\xEF\0\0\0", 19, HF_ECORRUPT},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        unsigned char *k = malloc(cases[c].len ? cases[c].len : 1);
        assert_non_null(k);
        memcpy(k, cases[c].key, cases[c].len);
        struct queue_rcpt r;
        size_t dlen = 99;
        uint64_t id = 99;
        uint32_t idx = 99;
        int rc = queue_rec_rcpt_decode(k, cases[c].len, gold_rcpt, sizeof(gold_rcpt) - 1, &r);
        if (rc != cases[c].rc)
            fail_msg("case \"%s\": rc %d, expected %d", cases[c].name, rc, cases[c].rc);
        rc = queue_rec_rcpt_key_parse(k, cases[c].len, &dlen, &id, &idx);
        assert_int_equal(rc, cases[c].rc);
        if (rc) /* unchanged on error */
            assert_true(dlen == 99 && id == 99 && idx == 99);
        free(k);
    }
}

int main(void)
{
    memset(aaa, 'a', sizeof(aaa));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_bytes),
        cmocka_unit_test(test_golden_decode),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_msg_round_trip),
        cmocka_unit_test(test_msg_flags_and_count),
        cmocka_unit_test(test_rcpt_round_trip),
        cmocka_unit_test(test_dom_round_trip),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_truncated_and_mutated),
        cmocka_unit_test(test_random_input),
        cmocka_unit_test(test_bad_rcpt_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
