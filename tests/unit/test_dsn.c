/* Unit tests for dsn.c: every report is parsed back with a small, strict MIME reader
 * written here (RFC 5322 header fields with folding, RFC 2046 multipart boundaries, RFC 3464
 * field groups), and every field the report must carry is checked. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "dsn.h"

/* ---- a strict reader ------------------------------------------------------------------- */

#define MAXF 32
#define MAXP 8
#define MAXG 8

struct field {
    char name[64];
    char value[1024];
};

struct fields {
    struct field f[MAXF];
    size_t n;
};

struct part {
    struct fields h;
    const char *body;
    size_t body_len;
};

/* Parses the header section at p (CRLF lines, folding allowed) up to the empty line.
 * Returns the offset of the body, or -1 for anything malformed (a bare LF, a line without
 * a colon, a line over 998 octets). */
static long parse_fields(const char *p, size_t len, struct fields *out)
{
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    while (i < len) {
        const char *eol = NULL;
        for (size_t j = i; j + 1 < len; j++) {
            if (p[j] == '\n')
                return -1; /* bare LF */
            if (p[j] == '\r' && p[j + 1] == '\n') {
                eol = p + j;
                break;
            }
            if (p[j] == '\r')
                return -1;
        }
        if (!eol)
            return -1;
        size_t ll = (size_t)(eol - (p + i));
        if (ll > 998)
            return -1;
        if (ll == 0)
            return (long)(i + 2);
        if (p[i] == ' ' || p[i] == '\t') { /* folded continuation */
            if (out->n == 0)
                return -1;
            struct field *f = &out->f[out->n - 1];
            size_t vl = strlen(f->value);
            snprintf(f->value + vl, sizeof(f->value) - vl, " %.*s", (int)ll - 1, p + i + 1);
        } else {
            const char *colon = memchr(p + i, ':', ll);
            if (!colon || colon == p + i || out->n == MAXF)
                return -1;
            struct field *f = &out->f[out->n++];
            snprintf(f->name, sizeof(f->name), "%.*s", (int)(colon - (p + i)), p + i);
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            snprintf(f->value, sizeof(f->value), "%.*s", (int)(eol - v), v);
        }
        i += ll + 2;
    }
    return -1;
}

static const char *get(const struct fields *fs, const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < fs->n; i++)
        if (strcasecmp(fs->f[i].name, name) == 0) {
            if (found)
                return "(duplicate)";
            found = fs->f[i].value;
        }
    return found;
}

/* boundary="x" from a Content-Type value. */
static void param(const char *ct, const char *name, char *out, size_t outsz)
{
    out[0] = '\0';
    char key[64];
    snprintf(key, sizeof(key), "%s=", name);
    const char *p = strstr(ct, key);
    if (!p)
        return;
    p += strlen(key);
    if (*p == '"') {
        const char *e = strchr(p + 1, '"');
        if (e)
            snprintf(out, outsz, "%.*s", (int)(e - p - 1), p + 1);
    } else {
        size_t n = strcspn(p, "; \t");
        snprintf(out, outsz, "%.*s", (int)n, p);
    }
}

struct parsed {
    struct fields top;
    struct part parts[MAXP];
    size_t nparts;
    struct fields groups[MAXG]; /* delivery-status: [0] per message, then per recipient */
    size_t ngroups;
    bool closed; /* the close delimiter was found */
};

/* Splits a multipart body on "--boundary" lines (RFC 2046 5.1.1): delimiters must be at
 * the start of a line; text before the first is the preamble. */
static int parse_report(const char *msg, size_t len, struct parsed *out)
{
    memset(out, 0, sizeof(*out));
    long off = parse_fields(msg, len, &out->top);
    if (off < 0)
        return -1;
    const char *ct = get(&out->top, "Content-Type");
    if (!ct)
        return -2;
    char b[200];
    param(ct, "boundary", b, sizeof(b));
    if (!b[0])
        return -3;
    char delim[210];
    snprintf(delim, sizeof(delim), "--%s", b);
    size_t dl = strlen(delim);
    const char *p = msg + off, *end = msg + len;
    const char *cur = NULL;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol || eol == p || eol[-1] != '\r')
            return -4;
        size_t ll = (size_t)(eol - 1 - p);
        bool is_delim = ll >= dl && memcmp(p, delim, dl) == 0;
        if (is_delim) {
            if (cur) {
                struct part *pt = &out->parts[out->nparts - 1];
                /* The CRLF before the delimiter belongs to it. */
                size_t bl = (size_t)(p - cur);
                pt->body_len = bl >= 2 ? bl - 2 : 0;
            }
            if (ll == dl + 2 && p[dl] == '-' && p[dl + 1] == '-') {
                out->closed = true;
                return eol + 1 == end ? 0 : -5;
            }
            if (ll != dl || out->nparts == MAXP)
                return -6;
            struct part *pt = &out->parts[out->nparts++];
            long ho = parse_fields(eol + 1, (size_t)(end - eol - 1), &pt->h);
            if (ho < 0)
                return -7;
            pt->body = eol + 1 + ho;
            cur = pt->body;
            p = pt->body;
            continue;
        }
        p = eol + 1;
    }
    return -8; /* no close delimiter */
}

static int parse_status(struct parsed *ps, const struct part *pt)
{
    size_t i = 0;
    ps->ngroups = 0;
    while (i < pt->body_len && ps->ngroups < MAXG) {
        long o = parse_fields(pt->body + i, pt->body_len - i, &ps->groups[ps->ngroups]);
        if (o < 0) {
            /* the last group ends at the part's end without an empty line */
            char tmp[8192];
            size_t n = pt->body_len - i;
            if (n + 2 >= sizeof(tmp))
                return -1;
            memcpy(tmp, pt->body + i, n);
            memcpy(tmp + n, "\r\n", 2);
            o = parse_fields(tmp, n + 2, &ps->groups[ps->ngroups]);
            if (o < 0)
                return -1;
            ps->ngroups++;
            return 0;
        }
        ps->ngroups++;
        i += (size_t)o;
    }
    return 0;
}

/* ---- fixtures -------------------------------------------------------------------------- */

static const char ORIG[] = "Received: from client.example (client.example [192.0.2.1])\r\n"
                           "\tby relay.test with ESMTP id 01A2\r\n"
                           "From: <alice@example.org>\r\n"
                           "To: <bob@branch.test>\r\n"
                           "Subject: hello\r\n"
                           "\r\n"
                           "line one\r\n"
                           ".dot line\r\n"
                           "--b0 not a delimiter of ours\r\n";

static const char ORIG_HDRS[] = "Received: from client.example (client.example [192.0.2.1])\r\n"
                                "\tby relay.test with ESMTP id 01A2\r\n"
                                "From: <alice@example.org>\r\n"
                                "To: <bob@branch.test>\r\n"
                                "Subject: hello\r\n";

static struct dsn_report base_report(struct dsn_rcpt *rc, size_t n)
{
    struct dsn_report r = {
        .reporting_mta = "relay.test",
        .sender = "alice@example.org",
        .envid = "ENV+2B1",
        .queue_id = "01A202B00D110000",
        .message_id = "<01A202B00D110001@relay.test>",
        .boundary = "b0",
        .arrival = 1796608382, /* 2026-12-07T01:53:02Z */
        .date = 1796608442,
        .orig = ORIG,
        .orig_len = sizeof(ORIG) - 1,
        .ret = SMTP_RET_NONE,
        .full_max = 100000,
        .rcpts = rc,
        .nrcpt = n,
    };
    return r;
}

static void build_parse(const struct dsn_report *r, struct parsed *ps, char **msg, size_t *len,
                        bool *eight)
{
    assert_int_equal(dsn_build(r, msg, len, eight), 0);
    assert_non_null(*msg);
    int rc = parse_report(*msg, *len, ps);
    if (rc != 0)
        fprintf(stderr, "parse rc=%d\n%s\n", rc, *msg);
    assert_int_equal(rc, 0);
    assert_true(ps->closed);
    assert_int_equal(ps->nparts, r->orig ? 3 : 2);
    assert_int_equal(parse_status(ps, &ps->parts[1]), 0);
}

/* ---- cases ----------------------------------------------------------------------------- */

static void test_failed_two_rcpts_full(void **state)
{
    (void)state;
    struct dsn_rcpt rc[2] = {
        {.addr = "bob@branch.test",
         .orcpt = "rfc822;Bob+2Bx@branch.test",
         .action = DSN_ACT_FAILED,
         .status = "5.1.1",
         .remote_mta = "mx.branch.test",
         .diag = "550 5.1.1 <bob@branch.test>: no such user",
         .diag_smtp = true,
         .last_attempt = 1796608440,
         .tls = "TLSv1.3,TLS_AES_256_GCM_SHA384,verified"},
        {.addr = "carol@branch.test",
         .action = DSN_ACT_FAILED,
         .status = "5.2.2",
         .remote_mta = "mx.branch.test",
         .diag = "552 5.2.2 mailbox full\r\nForged-Field: x",
         .diag_smtp = true,
         .last_attempt = 1796608441,
         .tls = "none"},
    };
    struct dsn_report r = base_report(rc, 2);
    struct parsed ps;
    char *msg;
    size_t len;
    bool eight;
    build_parse(&r, &ps, &msg, &len, &eight);
    assert_false(eight);

    /* The report's own header. */
    assert_string_equal(get(&ps.top, "From"), "Mail Delivery System <MAILER-DAEMON@relay.test>");
    assert_string_equal(get(&ps.top, "To"), "<alice@example.org>");
    assert_string_equal(get(&ps.top, "Subject"), "Undelivered Mail Returned to Sender");
    assert_string_equal(get(&ps.top, "Date"), "Mon, 07 Dec 2026 01:54:02 +0000");
    assert_string_equal(get(&ps.top, "Message-ID"), "<01A202B00D110001@relay.test>");
    assert_string_equal(get(&ps.top, "Auto-Submitted"), "auto-replied");
    assert_string_equal(get(&ps.top, "MIME-Version"), "1.0");
    const char *ct = get(&ps.top, "Content-Type");
    assert_non_null(strstr(ct, "multipart/report"));
    assert_non_null(strstr(ct, "report-type=delivery-status"));
    /* The original holds "--b0 ...": the boundary had to change. */
    char b[200];
    param(ct, "boundary", b, sizeof(b));
    assert_string_not_equal(b, "b0");

    /* 1: human part. */
    assert_non_null(strstr(get(&ps.parts[0].h, "Content-Type"), "text/plain"));
    char human[8192];
    snprintf(human, sizeof(human), "%.*s", (int)ps.parts[0].body_len, ps.parts[0].body);
    assert_non_null(strstr(human, "<bob@branch.test>: host mx.branch.test said: 550 5.1.1"));
    assert_non_null(strstr(human, "used TLS (TLSv1.3,TLS_AES_256_GCM_SHA384,verified)"));
    assert_non_null(strstr(human, "did not use TLS"));
    assert_non_null(strstr(human, "01A202B00D110000"));
    assert_non_null(strstr(human, "The message is attached."));

    /* 2: delivery status. */
    assert_string_equal(get(&ps.parts[1].h, "Content-Type"), "message/delivery-status");
    assert_int_equal(ps.ngroups, 3);
    assert_string_equal(get(&ps.groups[0], "Original-Envelope-Id"), "ENV+1");
    assert_string_equal(get(&ps.groups[0], "Reporting-MTA"), "dns; relay.test");
    assert_string_equal(get(&ps.groups[0], "Arrival-Date"), "Mon, 07 Dec 2026 01:53:02 +0000");
    assert_string_equal(get(&ps.groups[1], "Original-Recipient"), "rfc822;Bob+x@branch.test");
    assert_string_equal(get(&ps.groups[1], "Final-Recipient"), "rfc822; bob@branch.test");
    assert_string_equal(get(&ps.groups[1], "Action"), "failed");
    assert_string_equal(get(&ps.groups[1], "Status"), "5.1.1");
    assert_string_equal(get(&ps.groups[1], "Remote-MTA"), "dns; mx.branch.test");
    assert_string_equal(get(&ps.groups[1], "Diagnostic-Code"),
                        "smtp; 550 5.1.1 <bob@branch.test>: no such user");
    assert_string_equal(get(&ps.groups[1], "Last-Attempt-Date"), "Mon, 07 Dec 2026 01:54:00 +0000");
    assert_null(get(&ps.groups[1], "Will-Retry-Until"));
    assert_string_equal(get(&ps.groups[1], "X-Holdfast-TLS"),
                        "TLSv1.3,TLS_AES_256_GCM_SHA384,verified");
    assert_null(get(&ps.groups[2], "Original-Recipient"));
    assert_string_equal(get(&ps.groups[2], "Final-Recipient"), "rfc822; carol@branch.test");
    assert_string_equal(get(&ps.groups[2], "Status"), "5.2.2");
    /* A line break in the remote reply cannot add a field. */
    assert_null(get(&ps.groups[2], "Forged-Field"));
    assert_string_equal(get(&ps.groups[2], "Diagnostic-Code"),
                        "smtp; 552 5.2.2 mailbox full  Forged-Field: x");
    assert_string_equal(get(&ps.groups[2], "X-Holdfast-TLS"), "none");

    /* 3: the whole message, byte for byte. */
    assert_string_equal(get(&ps.parts[2].h, "Content-Type"), "message/rfc822");
    assert_int_equal(ps.parts[2].body_len, sizeof(ORIG) - 1);
    assert_memory_equal(ps.parts[2].body, ORIG, sizeof(ORIG) - 1);
    free(msg);
}

/* What is returned, by RET, size and action (RFC 3461 4.3). */
static void test_returned_part(void **state)
{
    (void)state;
    static const struct {
        enum smtp_ret ret;
        size_t full_max;
        enum dsn_action action;
        const char *ctype;
        bool whole;
        const char *says;
    } cases[] = {
        {SMTP_RET_NONE, 100000, DSN_ACT_FAILED, "message/rfc822", true, "message is attached"},
        {SMTP_RET_FULL, 100000, DSN_ACT_FAILED, "message/rfc822", true, "message is attached"},
        {SMTP_RET_FULL, sizeof(ORIG) - 1, DSN_ACT_FAILED, "message/rfc822", true, "attached"},
        {SMTP_RET_FULL, sizeof(ORIG) - 2, DSN_ACT_FAILED, "text/rfc822-headers", false,
         "only its headers"},
        {SMTP_RET_HDRS, 100000, DSN_ACT_FAILED, "text/rfc822-headers", false,
         "headers of the message are attached"},
        {SMTP_RET_FULL, 100000, DSN_ACT_DELAYED, "text/rfc822-headers", false,
         "headers of the message are attached"},
        {SMTP_RET_FULL, 100000, DSN_ACT_RELAYED, "text/rfc822-headers", false, "last report"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dsn_rcpt rc = {.addr = "bob@branch.test",
                              .action = cases[i].action,
                              .status = cases[i].action == DSN_ACT_FAILED    ? "5.0.0"
                                        : cases[i].action == DSN_ACT_DELAYED ? "4.4.1"
                                                                             : "2.0.0",
                              .retry_until = 1797040382};
        struct dsn_report r = base_report(&rc, 1);
        r.ret = cases[i].ret;
        r.full_max = cases[i].full_max;
        struct parsed ps;
        char *msg;
        size_t len;
        bool eight;
        build_parse(&r, &ps, &msg, &len, &eight);
        assert_string_equal(get(&ps.parts[2].h, "Content-Type"), cases[i].ctype);
        if (cases[i].whole) {
            assert_int_equal(ps.parts[2].body_len, sizeof(ORIG) - 1);
            assert_memory_equal(ps.parts[2].body, ORIG, sizeof(ORIG) - 1);
        } else {
            assert_int_equal(ps.parts[2].body_len, sizeof(ORIG_HDRS) - 1);
            assert_memory_equal(ps.parts[2].body, ORIG_HDRS, sizeof(ORIG_HDRS) - 1);
        }
        char human[8192];
        snprintf(human, sizeof(human), "%.*s", (int)ps.parts[0].body_len, ps.parts[0].body);
        if (!strstr(human, cases[i].says))
            fail_msg("case %zu: human part lacks \"%s\":\n%s", i, cases[i].says, human);
        free(msg);
    }
}

static void test_delayed_and_relayed_fields(void **state)
{
    (void)state;
    static const struct {
        enum dsn_action action;
        const char *status, *subject, *action_text;
        bool retry_until;
    } cases[] = {
        {DSN_ACT_DELAYED, "4.4.1", "Delayed Mail (still being retried)", "delayed", true},
        {DSN_ACT_RELAYED, "2.0.0", "Successful Mail Delivery Report", "relayed", false},
        {DSN_ACT_DELIVERED, "2.0.0", "Successful Mail Delivery Report", "delivered", false},
        {DSN_ACT_FAILED, "5.4.7", "Undelivered Mail Returned to Sender", "failed", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dsn_rcpt rc = {.addr = "bob@branch.test",
                              .action = cases[i].action,
                              .status = cases[i].status,
                              .remote_mta = "mx.branch.test",
                              .diag = "451 4.4.1 try later",
                              .diag_smtp = true,
                              .last_attempt = 1796608440,
                              .retry_until = 1797040382,
                              .tls = "none"};
        struct dsn_report r = base_report(&rc, 1);
        r.envid = NULL;
        struct parsed ps;
        char *msg;
        size_t len;
        bool eight;
        build_parse(&r, &ps, &msg, &len, &eight);
        assert_string_equal(get(&ps.top, "Subject"), cases[i].subject);
        assert_null(get(&ps.groups[0], "Original-Envelope-Id"));
        assert_string_equal(get(&ps.groups[1], "Action"), cases[i].action_text);
        assert_string_equal(get(&ps.groups[1], "Status"), cases[i].status);
        if (cases[i].retry_until)
            assert_string_equal(get(&ps.groups[1], "Will-Retry-Until"),
                                "Sat, 12 Dec 2026 01:53:02 +0000");
        else
            assert_null(get(&ps.groups[1], "Will-Retry-Until"));
        free(msg);
    }
}

/* A local reason (null MX, expiry) has no Remote-MTA and an X-Holdfast diagnostic; no
 * original available gives a two-part report; an 8-bit original is marked 8bit. */
static void test_local_reason_no_orig_8bit(void **state)
{
    (void)state;
    struct dsn_rcpt rc = {.addr = "bob@nullmx.test",
                          .action = DSN_ACT_FAILED,
                          .status = "5.1.10",
                          .diag = "nullmx.test publishes a null MX (RFC 7505)"};
    struct dsn_report r = base_report(&rc, 1);
    r.orig = NULL;
    r.orig_len = 0;
    struct parsed ps;
    char *msg;
    size_t len;
    bool eight;
    build_parse(&r, &ps, &msg, &len, &eight);
    assert_false(eight);
    assert_null(get(&ps.groups[1], "Remote-MTA"));
    assert_null(get(&ps.groups[1], "Last-Attempt-Date"));
    assert_null(get(&ps.groups[1], "X-Holdfast-TLS"));
    assert_string_equal(get(&ps.groups[1], "Diagnostic-Code"),
                        "X-Holdfast; nullmx.test publishes a null MX (RFC 7505)");
    assert_string_equal(get(&ps.groups[1], "Status"), "5.1.10");
    char human[4096];
    snprintf(human, sizeof(human), "%.*s", (int)ps.parts[0].body_len, ps.parts[0].body);
    assert_non_null(strstr(human, "No connection to a receiving mail system was made."));
    assert_non_null(strstr(human, "no longer available"));
    free(msg);

    static const char orig8[] = "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n";
    r = base_report(&rc, 1);
    r.orig = orig8;
    r.orig_len = sizeof(orig8) - 1;
    build_parse(&r, &ps, &msg, &len, &eight);
    assert_true(eight);
    assert_string_equal(get(&ps.top, "Content-Transfer-Encoding"), "8bit");
    assert_string_equal(get(&ps.parts[2].h, "Content-Transfer-Encoding"), "8bit");
    free(msg);
}

static void test_bad_input(void **state)
{
    (void)state;
    static const struct {
        const char *status, *addr, *remote, *sender, *orcpt;
        size_t nrcpt;
    } cases[] = {
        {"5.1.1", "bob@b.test", NULL, "a@x.test", NULL, 0},           /* no recipients */
        {"5.1", "bob@b.test", NULL, "a@x.test", NULL, 1},             /* status x.y */
        {"3.1.1", "bob@b.test", NULL, "a@x.test", NULL, 1},           /* class 3 */
        {"5.1.1000", "bob@b.test", NULL, "a@x.test", NULL, 1},        /* 4 digits */
        {"5..1", "bob@b.test", NULL, "a@x.test", NULL, 1},            /* empty subject */
        {"5.1.1 ", "bob@b.test", NULL, "a@x.test", NULL, 1},          /* trailing text */
        {"5.1.1", "", NULL, "a@x.test", NULL, 1},                     /* no address */
        {"5.1.1", "bob@b.test\r\nBcc: x", NULL, "a@x.test", NULL, 1}, /* header injection */
        {"5.1.1", "bob@b.test", "mx\n.test", "a@x.test", NULL, 1},
        {"5.1.1", "bob@b.test", NULL, "a@x\r.test", NULL, 1},
        {"5.1.1", "bob@b.test", NULL, NULL, NULL, 1},
        {"5.1.1", "bob@b.test", NULL, "a@x.test", "rfc822;a\r\nb", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dsn_rcpt rc = {.addr = cases[i].addr,
                              .action = DSN_ACT_FAILED,
                              .status = cases[i].status,
                              .remote_mta = cases[i].remote,
                              .orcpt = cases[i].orcpt};
        struct dsn_report r = base_report(&rc, cases[i].nrcpt);
        r.sender = cases[i].sender;
        char *msg = (char *)1;
        size_t len = 1;
        bool eight;
        if (dsn_build(&r, &msg, &len, &eight) != -EINVAL)
            fail_msg("case %zu accepted", i);
        assert_null(msg);
        assert_int_equal(len, 0);
    }
    /* An ORCPT whose xtext does not decode is left out rather than copied. */
    struct dsn_rcpt rc = {
        .addr = "bob@b.test", .action = DSN_ACT_FAILED, .status = "5.0.0", .orcpt = "rfc822;a+ZZ"};
    struct dsn_report r = base_report(&rc, 1);
    struct parsed ps;
    char *msg;
    size_t len;
    bool eight;
    build_parse(&r, &ps, &msg, &len, &eight);
    assert_null(get(&ps.groups[1], "Original-Recipient"));
    free(msg);
}

static void test_status_of(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *enh, *dflt, *want;
    } cases[] = {
        {550, "5.1.1", NULL, "5.1.1"}, {550, "", NULL, "5.0.0"},    {450, "4.2.0", NULL, "4.2.0"},
        {550, "4.2.0", NULL, "5.0.0"}, /* class mismatch: the code wins */
        {421, NULL, NULL, "4.0.0"},    {0, "", "4.4.1", "4.4.1"},   {0, "5.1.10", "x", "5.1.10"},
        {0, NULL, NULL, "5.0.0"},      {550, "5.1", NULL, "5.0.0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[16];
        assert_string_equal(dsn_status_of(cases[i].code, cases[i].enh, cases[i].dflt, out),
                            cases[i].want);
    }
    char d[40];
    assert_string_equal(dsn_date(0, d), "Thu, 01 Jan 1970 00:00:00 +0000");
    assert_string_equal(dsn_date(951782400, d), "Tue, 29 Feb 2000 00:00:00 +0000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_two_rcpts_full),
        cmocka_unit_test(test_returned_part),
        cmocka_unit_test(test_delayed_and_relayed_fields),
        cmocka_unit_test(test_local_reason_no_orig_8bit),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_status_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
