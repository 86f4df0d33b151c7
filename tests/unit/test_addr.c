/* Unit tests for addr.c: mailbox syntax, relay tricks, address literals, UTF-8
 * well-formedness, reversed-label keys and label-boundary domain matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include "addr.h"
#include "hf_err.h"

/* Flags in the mailbox table. */
#define Q   0x01 /* local_quoted */
#define LIT 0x02 /* domain_literal */
#define REL 0x04 /* has_relay_chars */
#define U8  0x08 /* utf8 */

struct mbox_case {
    const char *in;
    bool utf8_ok;
    int rc;
    const char *local;  /* checked when rc == 0 */
    const char *domain; /* checked when rc == 0 */
    unsigned flags;
};

static const struct mbox_case mbox_cases[] = {
    /* plain */
    {"user@branch.test", false, 0, "user", "branch.test", 0},
    {"User.Name@Branch.TEST", false, 0, "User.Name", "branch.test", 0},
    {"a@b", false, 0, "a", "b", 0},
    {"first.last+tag@example.com", false, 0, "first.last+tag", "example.com", 0},
    {"!#$&'*+-/=?^_`{|}~@example.com", false, 0, "!#$&'*+-/=?^_`{|}~", "example.com", REL},
    {"x@a-b.c-d.test", false, 0, "x", "a-b.c-d.test", 0},
    {"x@123.test", false, 0, "x", "123.test", 0},
    /* quoted local parts, kept quoted */
    {"\"john doe\"@example.com", false, 0, "\"john doe\"", "example.com", Q},
    {"\"a\\\"b\"@example.com", false, 0, "\"a\\\"b\"", "example.com", Q},
    {"\"a\\\\b\"@example.com", false, 0, "\"a\\\\b\"", "example.com", Q},
    {"\"\"@example.com", false, 0, "\"\"", "example.com", Q},
    {"\"a.\"@example.com", false, 0, "\"a.\"", "example.com", Q},
    {"\"a>b\"@example.com", false, 0, "\"a>b\"", "example.com", Q},
    /* relay tricks: accepted syntax, flagged */
    {"user%evil.test@branch.test", false, 0, "user%evil.test", "branch.test", REL},
    {"\"user@evil.test\"@branch.test", false, 0, "\"user@evil.test\"", "branch.test", Q | REL},
    {"evil.test!user@branch.test", false, 0, "evil.test!user", "branch.test", REL},
    {"\"user%evil\"@branch.test", false, 0, "\"user%evil\"", "branch.test", Q | REL},
    {"\"a\\@b\"@branch.test", false, 0, "\"a\\@b\"", "branch.test", Q | REL},
    {"user@branch.test@evil.test", false, HF_EADDR, NULL, NULL, 0},
    /* address literals */
    {"user@[127.0.0.1]", false, 0, "user", "[127.0.0.1]", LIT},
    {"user@[IPv6:::1]", false, 0, "user", "[IPv6:::1]", LIT},
    {"user@[ipv6:2001:db8::1]", false, 0, "user", "[ipv6:2001:db8::1]", LIT},
    {"user@[IPv6:::ffff:192.0.2.1]", false, 0, "user", "[IPv6:::ffff:192.0.2.1]", LIT},
    {"user@[256.0.0.1]", false, HF_EADDR, NULL, NULL, 0},
    {"user@[1.2.3]", false, HF_EADDR, NULL, NULL, 0},
    {"user@[01.2.3.4]", false, HF_EADDR, NULL, NULL, 0},
    {"user@[::1]", false, HF_EADDR, NULL, NULL, 0},          /* IPv6 needs its tag */
    {"user@[IPv6:1.2.3.4]", false, HF_EADDR, NULL, NULL, 0}, /* IPv4 with the tag */
    {"user@[IPv6:2001:db8::g]", false, HF_EADDR, NULL, NULL, 0},
    {"user@[x-tag:foo]", false, HF_EADDR, NULL, NULL, 0}, /* general literal */
    {"user@[]", false, HF_EADDR, NULL, NULL, 0},
    {"user@[1.2.3.4", false, HF_EADDR, NULL, NULL, 0},
    {"user@1.2.3.4]", false, HF_EADDR, NULL, NULL, 0},
    {"user@[1.2.3.4]x", false, HF_EADDR, NULL, NULL, 0},
    /* bad local parts */
    {"@example.com", false, HF_EADDR, NULL, NULL, 0},
    {".user@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"user.@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"us..er@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"us er@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"us(er@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"us\\er@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"us,er@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"us\"er@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"\"unterminated@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"\"a\"b@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"\"a\tb\"@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"\"a\\\tb\"@example.com", false, HF_EADDR, NULL, NULL, 0}, /* quoted-pair is 32..126 */
    {"\"a\\", false, HF_EADDR, NULL, NULL, 0},
    /* missing parts */
    {"user", false, HF_EADDR, NULL, NULL, 0},
    {"Postmaster", false, HF_EADDR, NULL, NULL, 0},
    {"user@", false, HF_EADDR, NULL, NULL, 0},
    {"", false, HF_EADDR, NULL, NULL, 0},
    {"\"q\"", false, HF_EADDR, NULL, NULL, 0},
    /* bad domains */
    {"user@.example.com", false, HF_EADDR, NULL, NULL, 0},
    {"user@example.com.", false, HF_EADDR, NULL, NULL, 0},
    {"user@example..com", false, HF_EADDR, NULL, NULL, 0},
    {"user@-example.com", false, HF_EADDR, NULL, NULL, 0},
    {"user@example-.com", false, HF_EADDR, NULL, NULL, 0},
    {"user@exa_mple.com", false, HF_EADDR, NULL, NULL, 0},
    {"user@exa mple.com", false, HF_EADDR, NULL, NULL, 0},
    {"user@example.com>", false, HF_EADDR, NULL, NULL, 0},
    /* UTF-8 (RFC 6531) */
    {"j\xc3\xb6rg@example.com", true, 0, "j\xc3\xb6rg", "example.com", U8},
    {"j\xc3\xb6rg@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"user@b\xc3\xbc\x63her.test", true, 0, "user", "b\xc3\xbc\x63her.test", U8},
    {"user@b\xc3\xbc\x63her.test", false, HF_EADDR, NULL, NULL, 0},
    {"\"j\xc3\xb6rg x\"@example.com", true, 0, "\"j\xc3\xb6rg x\"", "example.com", Q | U8},
    {"\"j\xc3\xb6rg\"@example.com", false, HF_EADDR, NULL, NULL, 0},
    {"\xe2\x82\xac@example.com", true, 0, "\xe2\x82\xac", "example.com", U8},
    {"\xf0\x9f\x98\x80@example.com", true, 0, "\xf0\x9f\x98\x80", "example.com", U8},
    {"\xc0\xaf@example.com", true, HF_EADDR, NULL, NULL, 0},         /* overlong '/' */
    {"\xe0\x80\xaf@example.com", true, HF_EADDR, NULL, NULL, 0},     /* overlong */
    {"\xed\xa0\x80@example.com", true, HF_EADDR, NULL, NULL, 0},     /* surrogate */
    {"\xf4\x90\x80\x80@example.com", true, HF_EADDR, NULL, NULL, 0}, /* > U+10FFFF */
    {"\xc3@example.com", true, HF_EADDR, NULL, NULL, 0},             /* truncated */
    {"\x80@example.com", true, HF_EADDR, NULL, NULL, 0},             /* lone continuation */
    {"user@b\xc3.test", true, HF_EADDR, NULL, NULL, 0},
};

static void test_mailbox_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(mbox_cases) / sizeof(mbox_cases[0]); i++) {
        const struct mbox_case *c = &mbox_cases[i];
        struct addr_mailbox mb;
        int rc = addr_parse_mailbox(c->in, strlen(c->in), c->utf8_ok, &mb);
        if (rc != c->rc) {
            print_error("case %zu \"%s\": rc %d, want %d\n", i, c->in, rc, c->rc);
        }
        assert_int_equal(rc, c->rc);
        if (rc != 0) {
            continue;
        }
        assert_string_equal(mb.local, c->local);
        assert_string_equal(mb.domain, c->domain);
        if (((c->flags & Q) != 0) != mb.local_quoted ||
            ((c->flags & LIT) != 0) != mb.domain_literal ||
            ((c->flags & REL) != 0) != mb.has_relay_chars || ((c->flags & U8) != 0) != mb.utf8) {
            print_error("case %zu \"%s\": flags q=%d lit=%d rel=%d u8=%d, want 0x%x\n", i, c->in,
                        mb.local_quoted, mb.domain_literal, mb.has_relay_chars, mb.utf8, c->flags);
            fail();
        }
    }
}

static void test_mailbox_nul(void **state)
{
    struct addr_mailbox mb;
    static const char s[] = "us\0er@example.com";

    (void)state;
    assert_int_equal(addr_parse_mailbox(s, sizeof(s) - 1, true, &mb), HF_EADDR);
    static const char d[] = "user@exa\0mple.com";
    assert_int_equal(addr_parse_mailbox(d, sizeof(d) - 1, true, &mb), HF_EADDR);
    /* len bounds the input: a longer buffer is not read past len. */
    assert_int_equal(addr_parse_mailbox("a@b.test>junk", 8, false, &mb), 0);
    assert_string_equal(mb.domain, "b.test");
}

static void test_mailbox_lengths(void **state)
{
    char buf[600];
    struct addr_mailbox mb;

    (void)state;
    /* Local part: 64 octets is the limit (RFC 5321 4.5.3.1.1). */
    memset(buf, 'a', 64);
    strcpy(buf + 64, "@example.com");
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), false, &mb), 0);
    assert_int_equal(strlen(mb.local), 64);
    memset(buf, 'a', 65);
    strcpy(buf + 65, "@example.com");
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), false, &mb), HF_ELONGLINE);
    /* Quoted: the quotes count. */
    buf[0] = '"';
    memset(buf + 1, 'a', 62);
    strcpy(buf + 63, "\"@example.com");
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), false, &mb), 0);
    buf[0] = '"';
    memset(buf + 1, 'a', 63);
    strcpy(buf + 64, "\"@example.com");
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), false, &mb), HF_ELONGLINE);

    /* Domain: 255 octets total, labels of 63. */
    strcpy(buf, "u@");
    for (int i = 0; i < 4; i++) {
        memset(buf + strlen(buf), 'd', 63);
        buf[2 + 64 * i + 63] = '.';
        buf[2 + 64 * i + 64] = '\0';
    }
    buf[strlen(buf) - 1] = '\0'; /* 4 * 63 + 3 dots = 255 */
    assert_int_equal(strlen(buf) - 2, 255);
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), false, &mb), 0);
    assert_int_equal(strlen(mb.domain), 255);
    strcat(buf, "d");
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), false, &mb), HF_ELONGLINE);
    /* One label of 64 octets. */
    strcpy(buf, "u@");
    memset(buf + 2, 'd', 64);
    strcpy(buf + 66, ".test");
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), false, &mb), HF_EADDR);
    buf[34] = '.'; /* two labels of 32 and 31 */
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), false, &mb), 0);
}

struct dom_case {
    const char *d;
    bool utf8_ok;
    bool ok;
};

static const struct dom_case dom_cases[] = {
    {"example.com", false, true},
    {"EXAMPLE.com", false, true},
    {"localhost", false, true},
    {"xn--bcher-kva.test", false, true},
    {"a.b.c.d.e", false, true},
    {"1.2.3.4", false, true},
    {"", false, false},
    {".", false, false},
    {"example.com.", false, false},
    {".example.com", false, false},
    {"exa..mple", false, false},
    {"-a.test", false, false},
    {"a-.test", false, false},
    {"a_b.test", false, false},
    {"a b.test", false, false},
    {"[1.2.3.4]", false, false},
    {"b\xc3\xbc\x63her.test", false, false},
    {"b\xc3\xbc\x63her.test", true, true},
    {"b\xed\xa0\x80.test", true, false},
};

static void test_domain_valid(void **state)
{
    char big[300];

    (void)state;
    for (size_t i = 0; i < sizeof(dom_cases) / sizeof(dom_cases[0]); i++) {
        const struct dom_case *c = &dom_cases[i];
        if (addr_domain_is_valid(c->d, strlen(c->d), c->utf8_ok) != c->ok) {
            print_error("domain case %zu \"%s\"\n", i, c->d);
            fail();
        }
    }
    memset(big, 'a', 63);
    big[63] = '\0';
    assert_true(addr_domain_is_valid(big, 63, false));
    memset(big, 'a', 64);
    assert_false(addr_domain_is_valid(big, 64, false));
}

struct lit_case {
    const char *s;
    bool ok;
};

static const struct lit_case lit_cases[] = {
    {"[127.0.0.1]", true},  {"[0.0.0.0]", true},       {"[255.255.255.255]", true},
    {"[IPv6:::1]", true},   {"[IPV6:fe80::1]", true},  {"[IPv6:2001:db8:0:0:0:0:0:1]", true},
    {"[1.2.3.4.5]", false}, {"[1.2.3.-4]", false},     {"[ 1.2.3.4]", false},
    {"[IPv6:]", false},     {"[IPv6:1::2::3]", false}, {"[]", false},
    {"[", false},           {"1.2.3.4", false},        {"[tag:value]", false},
};

static void test_literal(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(lit_cases) / sizeof(lit_cases[0]); i++) {
        if (addr_literal_is_valid(lit_cases[i].s, strlen(lit_cases[i].s)) != lit_cases[i].ok) {
            print_error("literal case %zu \"%s\"\n", i, lit_cases[i].s);
            fail();
        }
    }
}

struct utf8_case {
    const char *s;
    size_t len;
    bool ok;
};

#define U(s, ok)                                                                                   \
    {                                                                                              \
        s, sizeof(s) - 1, ok                                                                       \
    }

static const struct utf8_case utf8_cases[] = {
    U("", true),
    U("plain ascii", true),
    U("\xc2\x80", true),               /* U+0080, smallest 2-octet */
    U("\xdf\xbf", true),               /* U+07FF */
    U("\xe0\xa0\x80", true),           /* U+0800 */
    U("\xed\x9f\xbf", true),           /* U+D7FF, just below the surrogates */
    U("\xee\x80\x80", true),           /* U+E000, just above them */
    U("\xef\xbf\xbf", true),           /* U+FFFF */
    U("\xf0\x90\x80\x80", true),       /* U+10000 */
    U("\xf4\x8f\xbf\xbf", true),       /* U+10FFFF */
    U("\xc0\x80", false),              /* overlong NUL */
    U("\xc1\xbf", false),              /* overlong */
    U("\xe0\x9f\xbf", false),          /* overlong 3-octet */
    U("\xf0\x8f\xbf\xbf", false),      /* overlong 4-octet */
    U("\xed\xa0\x80", false),          /* U+D800 */
    U("\xed\xbf\xbf", false),          /* U+DFFF */
    U("\xf4\x90\x80\x80", false),      /* U+110000 */
    U("\xf5\x80\x80\x80", false),      /* lead octet F5 */
    U("\xff", false),                  /* never valid */
    U("\xfe", false),                  /* never valid */
    U("\x80", false),                  /* continuation alone */
    U("\xc3", false),                  /* truncated */
    U("\xe2\x82", false),              /* truncated */
    U("\xf0\x9f\x98", false),          /* truncated */
    U("\xc3\x28", false),              /* bad continuation */
    U("\xe2\x28\xa1", false),          /* bad continuation */
    U("\xe2\x82\x28", false),          /* bad last continuation */
    U("a\xc3\xa9z\xe2\x82\xac", true), /* mixed */
    U("\xf8\x88\x80\x80\x80", false),  /* 5-octet form */
};

static void test_utf8(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        const struct utf8_case *c = &utf8_cases[i];
        if (addr_utf8_is_valid(c->s, c->len) != c->ok) {
            print_error("utf8 case %zu\n", i);
            fail();
        }
    }
    assert_true(addr_is_ascii("abc", 3));
    assert_false(addr_is_ascii("a\xc3\xa9", 3));
    assert_true(addr_is_ascii("", 0));
}

static void test_lower(void **state)
{
    char s[] = "MiXeD.Case-123\xc3\x89";

    (void)state;
    addr_lower(s);
    assert_string_equal(s, "mixed.case-123\xc3\x89");
}

struct key_case {
    const char *domain;
    int rc; /* key length or error */
    const char *key;
};

static const struct key_case key_cases[] = {
    {"branch.test", 12, "test.branch."},
    {"Branch.TEST", 12, "test.branch."},
    {"a.branch.test", 14, "test.branch.a."},
    {"localhost", 10, "localhost."},
    {"branch.test.", 12, "test.branch."}, /* absolute form */
    {"[127.0.0.1]", 12, "[127.0.0.1]."},
    {"", HF_EADDR, NULL},
    {".", HF_EADDR, NULL},
    {"a..b", HF_EADDR, NULL},
    {".a", HF_EADDR, NULL},
    {"a.b..", HF_EADDR, NULL},
};

static void test_domain_key(void **state)
{
    char key[300];
    char small[12];

    (void)state;
    for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
        const struct key_case *c = &key_cases[i];
        int rc = addr_domain_key(c->domain, key, sizeof(key));
        if (rc != c->rc) {
            print_error("key case %zu \"%s\": %d want %d\n", i, c->domain, rc, c->rc);
        }
        assert_int_equal(rc, c->rc);
        if (rc > 0) {
            assert_string_equal(key, c->key);
        }
    }
    /* "test.branch." needs 13 octets with the NUL. */
    assert_int_equal(addr_domain_key("branch.test", small, sizeof(small)), -ENOSPC);
    char fits[13];
    assert_int_equal(addr_domain_key("branch.test", fits, sizeof(fits)), 12);

    /* A domain's key is a prefix of its subdomains' keys, but not of a look-alike's. */
    char sub[64], other[64];
    assert_true(addr_domain_key("branch.test", key, sizeof(key)) > 0);
    assert_true(addr_domain_key("mx.branch.test", sub, sizeof(sub)) > 0);
    assert_true(addr_domain_key("evilbranch.test", other, sizeof(other)) > 0);
    assert_int_equal(strncmp(sub, key, strlen(key)), 0);
    assert_int_not_equal(strncmp(other, key, strlen(key)), 0);
}

struct match_case {
    const char *domain;
    const char *zone;
    bool subdomains;
    bool match;
};

static const struct match_case match_cases[] = {
    {"example.com", "example.com", false, true},
    {"EXAMPLE.com", "example.COM", false, true},
    {"example.com.", "example.com", false, true},
    {"mx.example.com", "example.com", false, false},
    {"mx.example.com", "example.com", true, true},
    {"a.b.example.com", "example.com", true, true},
    {"badexample.com", "example.com", true, false},
    {"badexample.com", "example.com", false, false},
    {"example.com", "badexample.com", true, false},
    {"xexample.com", "example.com", true, false},
    {".example.com", "example.com", true, false},
    {"a..example.com", "example.com", true, false},
    {"example.com.evil.test", "example.com", true, false},
    {"com", "example.com", true, false},
    {"example.com", "", true, false},
    {"", "example.com", true, false},
};

static void test_domain_matches(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *c = &match_cases[i];
        if (addr_domain_matches(c->domain, c->zone, c->subdomains) != c->match) {
            print_error("match case %zu \"%s\" in \"%s\" sub=%d\n", i, c->domain, c->zone,
                        c->subdomains);
            fail();
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mailbox_table),   cmocka_unit_test(test_mailbox_nul),
        cmocka_unit_test(test_mailbox_lengths), cmocka_unit_test(test_domain_valid),
        cmocka_unit_test(test_literal),         cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_lower),           cmocka_unit_test(test_domain_key),
        cmocka_unit_test(test_domain_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
