/* Unit tests for dnsmsg.c: name expansion (labels, compression pointers, loops, escapes,
 * limits) and the TLSA answer parser (rcodes, AD bit, question skipping, CNAME chains,
 * malformed records), on messages written here octet by octet. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dnsmsg.h"
#include "hf_err.h"

/* ---- names ---- */

static void test_name_table(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        unsigned char msg[48];
        size_t len, off, limit;
        int rc;
        const char *name; /* rc 0 */
        size_t wirelen;
    } cases[] = {
        {"two labels", {2, 'm', 'x', 4, 't', 'e', 's', 't', 0}, 9, 0, 9, 0, "mx.test", 9},
        {"root", {0}, 1, 0, 1, 0, "", 1},
        {"pointer back",
         {4, 't', 'e', 's', 't', 0, 2, 'm', 'x', 0xc0, 0},
         11,
         6,
         5,
         0,
         "mx.test",
         5},
        {"pointer only", {4, 't', 'e', 's', 't', 0, 0xc0, 0}, 8, 6, 2, 0, "test", 2},
        {"pointer chain", {1, 'a', 0, 1, 'b', 0xc0, 0, 1, 'c', 0xc0, 3}, 11, 7, 4, 0, "c.b.a", 4},
        {"escapes", {4, 'a', '.', '\\', 0x01, 0}, 6, 0, 6, 0, "a\\.\\\\\\001", 6},
        {"space and reserved", {5, ' ', '"', ';', '@', 0x7f, 0}, 7, 0, 7, 0, " \\\"\\;\\@\\127", 7},
        {"upper case kept", {3, 'M', 'x', 'A', 0}, 5, 0, 5, 0, "MxA", 5},
        {"loop", {0xc0, 0}, 2, 0, 2, HF_EDNS, NULL, 0},
        {"two-step loop", {0xc0, 2, 0xc0, 0}, 4, 0, 4, HF_EDNS, NULL, 0},
        {"pointer past end", {0xc0, 9}, 2, 0, 2, HF_EDNS, NULL, 0},
        {"cut pointer", {1, 'a', 0xc0}, 3, 0, 3, HF_EDNS, NULL, 0},
        {"label past end", {5, 'a', 'b', 0}, 4, 0, 4, HF_EDNS, NULL, 0},
        {"no end", {1, 'a'}, 2, 0, 2, HF_EDNS, NULL, 0},
        {"label type 01", {0x41, 'a', 0}, 3, 0, 3, HF_EDNS, NULL, 0},
        {"label type 10", {0x81, 'a', 0}, 3, 0, 3, HF_EDNS, NULL, 0},
        {"offset at end", {0}, 1, 1, 1, HF_EDNS, NULL, 0},
        {"over the limit", {2, 'm', 'x', 0}, 4, 0, 3, HF_EDNS, NULL, 0},
        {"at the limit", {2, 'm', 'x', 0}, 4, 0, 4, 0, "mx", 4},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = (char *)1;
        size_t wl = 0;
        int rc =
            dnsmsg_name_at(cases[i].msg, cases[i].len, cases[i].off, cases[i].limit, &out, &wl);
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
        if (rc == 0) {
            assert_string_equal(out, cases[i].name);
            assert_int_equal(wl, cases[i].wirelen);
        } else {
            assert_null(out);
        }
        free(out);
    }
}

static void test_name_eq(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        bool eq;
    } cases[] = {
        {"mx.test", "mx.test", true},  {"MX.Test", "mx.TEST", true},
        {"mx.test.", "mx.test", true}, {"mx.test", "mx.test.", true},
        {"mx.test", "mx.tes", false},  {"", ".", true},
        {"a\\.b", "a.b", false},       {"mx.test", "mx.test..", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (dnsmsg_name_eq(cases[i].a, cases[i].b) != cases[i].eq)
            fail_msg("'%s' vs '%s'", cases[i].a, cases[i].b);
}

/* ---- TLSA answers ---- */

struct msg {
    unsigned char b[1024];
    size_t n;
};

static void put8(struct msg *m, unsigned v)
{
    m->b[m->n++] = (unsigned char)v;
}

static void put16(struct msg *m, unsigned v)
{
    put8(m, v >> 8);
    put8(m, v & 0xff);
}

static void put_name(struct msg *m, const char *name)
{
    while (*name) {
        size_t l = strcspn(name, ".");
        put8(m, (unsigned)l);
        memcpy(m->b + m->n, name, l);
        m->n += l;
        name += l;
        if (*name == '.')
            name++;
    }
    put8(m, 0);
}

/* Header: id 1, flags (QR set unless noqr), the rcode and AD, counts. */
static void put_header(struct msg *m, bool qr, bool ad, unsigned rcode, unsigned qd, unsigned an)
{
    m->n = 0;
    put16(m, 1);
    put8(m, qr ? 0x81 : 0x01);
    put8(m, (ad ? 0x20 : 0) | rcode);
    put16(m, qd);
    put16(m, an);
    put16(m, 0);
    put16(m, 0);
}

static void put_question(struct msg *m, const char *name)
{
    put_name(m, name);
    put16(m, DNSMSG_T_TLSA);
    put16(m, 1);
}

/* A record: owner, type, class IN, TTL 300, RDATA. */
static void put_rr(struct msg *m, const char *owner, unsigned type, const unsigned char *rd,
                   size_t rdlen)
{
    put_name(m, owner);
    put16(m, type);
    put16(m, 1);
    put16(m, 0);
    put16(m, 300);
    put16(m, (unsigned)rdlen);
    memcpy(m->b + m->n, rd, rdlen);
    m->n += rdlen;
}

static void put_tlsa(struct msg *m, const char *owner, unsigned usage, const char *hex)
{
    unsigned char rd[64] = {(unsigned char)usage, 1, 1};
    size_t n = 3;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        sscanf(hex, "%2x", &v);
        rd[n++] = (unsigned char)v;
    }
    put_rr(m, owner, DNSMSG_T_TLSA, rd, n);
}

static void put_cname(struct msg *m, const char *owner, const char *target)
{
    struct msg t = {.n = 0};
    put_name(&t, target);
    put_rr(m, owner, 5, t.b, t.n);
}

#define Q "_25._tcp.mx.test"

/* Builds case i's message; returns its expected rc, nrrs, secure and the usages. */
static int build(int i, struct msg *m, size_t *nrrs, bool *secure, const char **usages)
{
    *nrrs = 0;
    *secure = false;
    *usages = "";
    switch (i) {
    case 0: /* one record, AD set */
        put_header(m, true, true, 0, 1, 1);
        put_question(m, Q);
        put_tlsa(m, Q, 3, "abcd");
        *nrrs = 1, *secure = true, *usages = "3";
        return 0;
    case 1: /* two records and one of another name and one of another type: skipped */
        put_header(m, true, false, 0, 1, 4);
        put_question(m, Q);
        put_tlsa(m, Q, 3, "01");
        put_tlsa(m, "_25._tcp.other.test", 2, "02");
        put_rr(m, Q, 1, (const unsigned char *)"\x7f\0\0\1", 4);
        put_tlsa(m, "_25._TCP.MX.test.", 2, "");
        *nrrs = 2, *usages = "3 2";
        return 0;
    case 2: /* CNAME chain, records out of order */
        put_header(m, true, true, 0, 1, 3);
        put_question(m, Q);
        put_tlsa(m, "b.test", 3, "ff");
        put_cname(m, "a.test", "b.test");
        put_cname(m, Q, "a.test");
        *nrrs = 1, *secure = true, *usages = "3";
        return 0;
    case 3: /* NXDOMAIN with AD: no records, secure */
        put_header(m, true, true, 3, 1, 0);
        put_question(m, Q);
        *secure = true;
        return -ENOENT;
    case 4: /* NODATA */
        put_header(m, true, false, 0, 1, 0);
        put_question(m, Q);
        return -ENOENT;
    case 5: /* only records of the CNAME's old name: none for the target */
        put_header(m, true, false, 0, 1, 2);
        put_question(m, Q);
        put_cname(m, Q, "a.test");
        put_tlsa(m, Q, 3, "01");
        return -ENOENT;
    case 6: /* SERVFAIL */
        put_header(m, true, true, 2, 1, 0);
        put_question(m, Q);
        *secure = true;
        return HF_EDNSTEMP;
    case 7: /* not a response */
        put_header(m, false, false, 0, 1, 0);
        put_question(m, Q);
        return HF_EDNS;
    case 8: /* TLSA RDATA shorter than its three fixed octets */
        put_header(m, true, false, 0, 1, 1);
        put_question(m, Q);
        put_rr(m, Q, DNSMSG_T_TLSA, (const unsigned char *)"\3\1", 2);
        return HF_EDNS;
    case 9: /* an answer count the message cannot hold */
        put_header(m, true, false, 0, 1, 40);
        put_question(m, Q);
        put_tlsa(m, Q, 3, "01");
        return HF_EDNS;
    case 10: /* a record cut short */
        put_header(m, true, false, 0, 1, 1);
        put_question(m, Q);
        put_tlsa(m, Q, 3, "0102030405060708");
        m->n -= 4;
        return HF_EDNS;
    case 11: /* a question cut short */
        put_header(m, true, false, 0, 1, 0);
        put_name(m, Q);
        put8(m, 0);
        return HF_EDNS;
    case 12: /* shorter than a header */
        m->n = 11;
        memset(m->b, 0x80, m->n);
        return HF_EDNS;
    case 13: /* a CNAME loop: followed DNSMSG_CNAME_MAX times, then the last target used */
        put_header(m, true, false, 0, 1, 2);
        put_question(m, Q);
        put_cname(m, Q, "a.test");
        put_cname(m, "a.test", Q);
        return -ENOENT;
    default:
        return 1;
    }
}

static void test_tlsa_table(void **state)
{
    (void)state;
    for (int i = 0;; i++) {
        struct msg m = {.n = 0};
        size_t nrrs;
        bool secure;
        const char *usages;
        int want = build(i, &m, &nrrs, &secure, &usages);
        if (want == 1)
            break;
        struct dnsmsg_tlsa t;
        int rc = dnsmsg_tlsa_parse(m.b, m.n, Q, &t);
        if (rc != want)
            fail_msg("case %d: rc %d, want %d", i, rc, want);
        if (rc == 0 || rc == -ENOENT || rc == HF_EDNSTEMP)
            assert_int_equal(t.secure, secure);
        assert_int_equal(t.nrrs, nrrs);
        char got[64] = "";
        size_t k = 0;
        for (size_t j = 0; j < t.nrrs; j++)
            k += (size_t)snprintf(got + k, sizeof(got) - k, "%s%u", j ? " " : "", t.rrs[j].usage);
        assert_string_equal(got, usages);
        if (rc == 0) {
            /* The data points into the copy, not into the message parsed. */
            assert_true(t.rrs[0].data >= t.buf && t.rrs[0].data < t.buf + m.n);
            assert_int_equal(t.rrs[0].selector, 1);
            assert_int_equal(t.rrs[0].mtype, 1);
        } else {
            assert_null(t.rrs);
            assert_null(t.buf);
        }
        dnsmsg_tlsa_free(&t);
    }
}

static void test_tlsa_data(void **state)
{
    (void)state;
    struct msg m = {.n = 0};
    put_header(&m, true, false, 0, 1, 2);
    put_question(&m, Q);
    put_tlsa(&m, Q, 3, "deadbeef");
    put_tlsa(&m, Q, 2, "");
    struct dnsmsg_tlsa t;
    assert_int_equal(dnsmsg_tlsa_parse(m.b, m.n, Q, &t), 0);
    assert_int_equal(t.nrrs, 2);
    assert_int_equal(t.rrs[0].len, 4);
    assert_memory_equal(t.rrs[0].data, "\xde\xad\xbe\xef", 4);
    assert_int_equal(t.rrs[1].len, 0);
    memset(m.b, 0, sizeof(m.b)); /* the records do not borrow the message */
    assert_memory_equal(t.rrs[0].data, "\xde\xad\xbe\xef", 4);
    dnsmsg_tlsa_free(&t);
    assert_int_equal(dnsmsg_u16((const unsigned char *)"\x12\x34"), 0x1234);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_table),
        cmocka_unit_test(test_name_eq),
        cmocka_unit_test(test_tlsa_table),
        cmocka_unit_test(test_tlsa_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
