/* Unit tests for smtp_cmd.c: every verb and its argument rules, MAIL/RCPT paths (null path,
 * Postmaster, source routes, relay tricks), every ESMTP parameter and its bad values, line
 * limits, bare CR/LF, NUL, and xtext. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include "smtp_cmd.h"
#include "hf_err.h"

static int parse(const char *line, struct smtp_cmd *out)
{
    return smtp_cmd_parse(line, strlen(line), out);
}

struct verb_case {
    const char *line;
    int rc;
    enum smtp_verb verb;
    const char *arg; /* checked when rc == 0 */
};

static const struct verb_case verb_cases[] = {
    /* HELO / EHLO: one domain or address literal */
    {"HELO client.test", 0, SMTP_V_HELO, "client.test"},
    {"helo client.test", 0, SMTP_V_HELO, "client.test"},
    {"EHLO client.test", 0, SMTP_V_EHLO, "client.test"},
    {"eHlO Client.Test", 0, SMTP_V_EHLO, "Client.Test"},
    {"EHLO [192.0.2.1]", 0, SMTP_V_EHLO, "[192.0.2.1]"},
    {"EHLO [IPv6:2001:db8::1]", 0, SMTP_V_EHLO, "[IPv6:2001:db8::1]"},
    {"EHLO localhost", 0, SMTP_V_EHLO, "localhost"},
    {"EHLO win_pc.corp.test", 0, SMTP_V_EHLO, "win_pc.corp.test"}, /* tolerated */
    {"EHLO client.test.", 0, SMTP_V_EHLO, "client.test."},
    {"EHLO  client.test  ", 0, SMTP_V_EHLO, "client.test"},
    {"EHLO", HF_ESYNTAX, SMTP_V_EHLO, NULL},
    {"EHLO ", HF_ESYNTAX, SMTP_V_EHLO, NULL},
    {"HELO", HF_ESYNTAX, SMTP_V_HELO, NULL},
    {"EHLO client.test extra", HF_ESYNTAX, SMTP_V_EHLO, NULL},
    {"EHLO client..test", HF_ESYNTAX, SMTP_V_EHLO, NULL},
    {"EHLO .client.test", HF_ESYNTAX, SMTP_V_EHLO, NULL},
    {"EHLO cli<ent>.test", HF_ESYNTAX, SMTP_V_EHLO, NULL},
    {"EHLO [300.0.0.1]", HF_ESYNTAX, SMTP_V_EHLO, NULL},
    {"EHLO [192.0.2.1", HF_ESYNTAX, SMTP_V_EHLO, NULL},
    {"EHLO cli\xc3\xa9nt.test", HF_ESYNTAX, SMTP_V_EHLO, NULL},
    /* no argument allowed; trailing blanks tolerated */
    {"DATA", 0, SMTP_V_DATA, ""},
    {"data", 0, SMTP_V_DATA, ""},
    {"DATA ", 0, SMTP_V_DATA, ""},
    {"DATA x", HF_ESYNTAX, SMTP_V_DATA, NULL},
    {"RSET", 0, SMTP_V_RSET, ""},
    {"RSET now", HF_ESYNTAX, SMTP_V_RSET, NULL},
    {"QUIT", 0, SMTP_V_QUIT, ""},
    {"quit", 0, SMTP_V_QUIT, ""},
    {"QUIT bye", HF_ESYNTAX, SMTP_V_QUIT, NULL},
    {"STARTTLS", 0, SMTP_V_STARTTLS, ""},
    {"starttls", 0, SMTP_V_STARTTLS, ""},
    {"STARTTLS now", HF_ESYNTAX, SMTP_V_STARTTLS, NULL},
    {"TURN", 0, SMTP_V_TURN, ""},
    {"TURN branch.test", HF_ESYNTAX, SMTP_V_TURN, NULL},
    /* optional argument */
    {"NOOP", 0, SMTP_V_NOOP, ""},
    {"NOOP anything at all", 0, SMTP_V_NOOP, "anything at all"},
    {"HELP", 0, SMTP_V_HELP, ""},
    {"HELP MAIL", 0, SMTP_V_HELP, "MAIL"},
    /* required argument */
    {"VRFY postmaster", 0, SMTP_V_VRFY, "postmaster"},
    {"VRFY <user@branch.test>", 0, SMTP_V_VRFY, "<user@branch.test>"},
    {"VRFY", HF_ESYNTAX, SMTP_V_VRFY, NULL},
    {"VRFY   ", HF_ESYNTAX, SMTP_V_VRFY, NULL},
    {"EXPN staff", 0, SMTP_V_EXPN, "staff"},
    {"EXPN", HF_ESYNTAX, SMTP_V_EXPN, NULL},
    /* ETRN (RFC 1985) */
    {"ETRN branch.test", 0, SMTP_V_ETRN, "branch.test"},
    {"ETRN @branch.test", 0, SMTP_V_ETRN, "@branch.test"},
    {"ETRN #office", 0, SMTP_V_ETRN, "#office"},
    {"etrn Branch.Test", 0, SMTP_V_ETRN, "Branch.Test"},
    {"ETRN", HF_ESYNTAX, SMTP_V_ETRN, NULL},
    {"ETRN @", HF_ESYNTAX, SMTP_V_ETRN, NULL},
    {"ETRN #", HF_ESYNTAX, SMTP_V_ETRN, NULL},
    {"ETRN @@branch.test", HF_ESYNTAX, SMTP_V_ETRN, NULL},
    {"ETRN branch.test other.test", HF_ESYNTAX, SMTP_V_ETRN, NULL},
    {"ETRN bad..test", HF_ESYNTAX, SMTP_V_ETRN, NULL},
    {"ETRN [192.0.2.1]", HF_ESYNTAX, SMTP_V_ETRN, NULL},
    {"ETRN #off\xc3\xa9", HF_ESYNTAX, SMTP_V_ETRN, NULL},
    /* ATRN (RFC 2645) */
    {"ATRN", 0, SMTP_V_ATRN, ""},
    {"ATRN branch.test", 0, SMTP_V_ATRN, "branch.test"},
    {"ATRN branch.test,other.test", 0, SMTP_V_ATRN, "branch.test,other.test"},
    {"ATRN branch.test,", HF_ESYNTAX, SMTP_V_ATRN, NULL},
    {"ATRN ,branch.test", HF_ESYNTAX, SMTP_V_ATRN, NULL},
    {"ATRN branch.test, other.test", HF_ESYNTAX, SMTP_V_ATRN, NULL},
    {"ATRN bad_domain", HF_ESYNTAX, SMTP_V_ATRN, NULL},
    /* BDAT (RFC 3030) */
    {"BDAT 1000", 0, SMTP_V_BDAT, "1000"},
    {"BDAT 0 LAST", 0, SMTP_V_BDAT, "0 LAST"},
    {"BDAT 12 last", 0, SMTP_V_BDAT, "12 last"},
    {"BDAT", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT x", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT -1", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 10 FIRST", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 10 LAST x", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 10  LAST", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 18446744073709551616", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 007", 0, SMTP_V_BDAT, "007"},
    {"bdat 5 LaSt", 0, SMTP_V_BDAT, "5 LaSt"},
    {"BDAT 1 LAST ", 0, SMTP_V_BDAT, "1 LAST"},
    {"BDAT +1", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 0x10", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 10LAST", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT LAST", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 1 2", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 1\tLAST", HF_ESYNTAX, SMTP_V_BDAT, NULL},
    {"BDAT 123456789012345678901", HF_ESYNTAX, SMTP_V_BDAT, NULL}, /* 21 digits */
    /* RFC 821 verbs we know and do not implement: any argument */
    {"SEND FROM:<a@b.test>", 0, SMTP_V_SEND, "FROM:<a@b.test>"},
    {"soml FROM:<a@b.test>", 0, SMTP_V_SOML, "FROM:<a@b.test>"},
    {"SAML", 0, SMTP_V_SAML, ""},
    {"SAML FROM:<bad", 0, SMTP_V_SAML, "FROM:<bad"},
    {"SENDX FROM:<a@b.test>", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    /* AUTH (RFC 4954) */
    {"AUTH PLAIN", 0, SMTP_V_AUTH, "PLAIN"},
    {"AUTH PLAIN AHVzZXIAcGFzcw==", 0, SMTP_V_AUTH, "PLAIN AHVzZXIAcGFzcw=="},
    {"AUTH PLAIN =", 0, SMTP_V_AUTH, "PLAIN ="},
    {"AUTH CRAM-MD5", 0, SMTP_V_AUTH, "CRAM-MD5"},
    {"auth login", 0, SMTP_V_AUTH, "login"},
    {"AUTH", HF_ESYNTAX, SMTP_V_AUTH, NULL},
    {"AUTH PL@IN", HF_ESYNTAX, SMTP_V_AUTH, NULL},
    {"AUTH ABCDEFGHIJKLMNOPQRSTU", HF_ESYNTAX, SMTP_V_AUTH, NULL}, /* 21 characters */
    {"AUTH PLAIN not*base64", HF_ESYNTAX, SMTP_V_AUTH, NULL},
    {"AUTH PLAIN abc def", HF_ESYNTAX, SMTP_V_AUTH, NULL},
    /* unknown verbs */
    {"", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    {" ", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    {"FOO", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    {"MAILFROM:<a@b.test>", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    {"QUITX", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    {"QUI", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    {" QUIT", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    {"QUIT\t", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    {"GET / HTTP/1.1", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
    {"XCLIENT ADDR=1.2.3.4", HF_EUNKNOWN, SMTP_V_UNKNOWN, NULL},
};

static void test_verbs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(verb_cases) / sizeof(verb_cases[0]); i++) {
        const struct verb_case *c = &verb_cases[i];
        struct smtp_cmd cmd;
        int rc = parse(c->line, &cmd);
        if (rc != c->rc || cmd.verb != c->verb) {
            print_error("case %zu \"%s\": rc %d verb %d, want %d %d\n", i, c->line, rc,
                        (int)cmd.verb, c->rc, (int)c->verb);
            fail();
        }
        if (rc == 0) {
            assert_string_equal(cmd.arg, c->arg);
        }
    }
}

static void test_numbers(void **state)
{
    struct smtp_cmd cmd;

    (void)state;
    assert_int_equal(parse("BDAT 4096", &cmd), 0);
    assert_true(cmd.has_size);
    assert_int_equal(cmd.size, 4096);
    assert_false(cmd.bdat_last);
    assert_int_equal(parse("BDAT 18446744073709551615 LAST", &cmd), 0);
    assert_true(cmd.size == UINT64_MAX);
    assert_true(cmd.bdat_last);
    /* SIZE takes the same largest value (the table uses it to mean "no SIZE"). */
    assert_int_equal(parse("MAIL FROM:<> SIZE=18446744073709551615", &cmd), 0);
    assert_true(cmd.has_size);
    assert_true(cmd.size == UINT64_MAX);
}

/* Flags in the path table. */
#define NUL 0x1 /* path_null */
#define RT  0x2 /* source_route */

struct path_case {
    const char *line;
    int rc;
    const char *path; /* checked when rc == 0 */
    unsigned flags;
};

static const struct path_case path_cases[] = {
    {"MAIL FROM:<user@client.test>", 0, "user@client.test", 0},
    {"mail from:<user@client.test>", 0, "user@client.test", 0},
    {"MAIL FROM: <user@client.test>", 0, "user@client.test", 0}, /* one space tolerated */
    {"MAIL  FROM:<user@client.test>", 0, "user@client.test", 0}, /* blanks after verb */
    {"MAIL FROM:<user@client.test>  ", 0, "user@client.test", 0},
    {"MAIL FROM:<User@Client.Test>", 0, "User@Client.Test", 0}, /* kept as received */
    {"MAIL FROM:<>", 0, "", NUL},
    {"MAIL FROM: <>", 0, "", NUL},
    {"MAIL FROM:<\"john doe\"@client.test>", 0, "\"john doe\"@client.test", 0},
    {"MAIL FROM:<\"a>b\"@client.test>", 0, "\"a>b\"@client.test", 0},
    {"MAIL FROM:<\"a\\\"> x\"@client.test>", 0, "\"a\\\"> x\"@client.test", 0},
    {"MAIL FROM:<user@[192.0.2.1]>", 0, "user@[192.0.2.1]", 0},
    {"MAIL FROM:<@a.test,@b.test:user@c.test>", 0, "user@c.test", RT},
    {"MAIL FROM:<@a.test:user@c.test>", 0, "user@c.test", RT},
    {"MAIL FROM:<Postmaster>", HF_EADDR, NULL, 0},
    {"MAIL FROM:user@client.test", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM:<user@client.test", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM:user@client.test>", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM:  <user@client.test>", HF_ESYNTAX, NULL, 0}, /* two spaces */
    {"MAIL FROM:\t<user@client.test>", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM <user@client.test>", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM :<user@client.test>", HF_ESYNTAX, NULL, 0},
    {"MAIL TO:<user@client.test>", HF_ESYNTAX, NULL, 0},
    {"MAIL", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM:", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM:<user@client.test>x", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM:<user@client.test><other@client.test>", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM:<\"unterminated@client.test>", HF_ESYNTAX, NULL, 0},
    {"MAIL FROM:<user>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<user@>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<@client.test>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<user@bad..test>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<<user@client.test>>", HF_ESYNTAX, NULL, 0}, /* '>' then junk */
    {"MAIL FROM:<user@client.test >", HF_EADDR, NULL, 0},
    {"MAIL FROM:< user@client.test>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<@a.test user@c.test>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<@a.test,user@c.test>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<@a.test,:user@c.test>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<@:user@c.test>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<@a.test:>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<@a..test:user@c.test>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<j\xc3\xb6rg@client.test>", HF_EADDR, NULL, 0},
    {"MAIL FROM:<j\xc3\xb6rg@client.test> SMTPUTF8", 0, "j\xc3\xb6rg@client.test", 0},
    {"MAIL FROM:<j\xc0\xafrg@client.test> SMTPUTF8", HF_EADDR, NULL, 0},
    /* RCPT */
    {"RCPT TO:<user@branch.test>", 0, "user@branch.test", 0},
    {"rcpt to:<user@branch.test>", 0, "user@branch.test", 0},
    {"RCPT TO: <user@branch.test>", 0, "user@branch.test", 0},
    {"RCPT TO:<Postmaster>", 0, "Postmaster", 0},
    {"RCPT TO:<postmaster>", 0, "Postmaster", 0},
    {"RCPT TO:<POSTMASTER>", 0, "Postmaster", 0},
    {"RCPT TO:<postmaster@branch.test>", 0, "postmaster@branch.test", 0},
    {"RCPT TO:<j\xc3\xb6rg@branch.test>", 0, "j\xc3\xb6rg@branch.test", 0},
    {"RCPT TO:<j\xed\xa0\x80@branch.test>", HF_EADDR, NULL, 0},
    {"RCPT TO:<>", HF_EADDR, NULL, 0},
    {"RCPT TO:<postmaster2>", HF_EADDR, NULL, 0},
    {"RCPT TO:user@branch.test", HF_ESYNTAX, NULL, 0},
    {"RCPT FROM:<user@branch.test>", HF_ESYNTAX, NULL, 0},
    {"RCPT TO <user@branch.test>", HF_ESYNTAX, NULL, 0},
    {"RCPT", HF_ESYNTAX, NULL, 0},
    /* relay tricks: syntax is fine, the session sees the path and refuses to relay */
    {"RCPT TO:<user%evil.test@branch.test>", 0, "user%evil.test@branch.test", 0},
    {"RCPT TO:<\"user@evil.test\"@branch.test>", 0, "\"user@evil.test\"@branch.test", 0},
    {"RCPT TO:<evil.test!user@branch.test>", 0, "evil.test!user@branch.test", 0},
    {"RCPT TO:<@branch.test:user@evil.test>", 0, "user@evil.test", RT},
    {"RCPT TO:<@a.test,@b.test:user@c.test>", 0, "user@c.test", RT},
    {"RCPT TO:<user@branch.test@evil.test>", HF_EADDR, NULL, 0},
    {"RCPT TO:<user@[127.0.0.1]>", 0, "user@[127.0.0.1]", 0},
    {"RCPT TO:<user@[IPv6:::1]>", 0, "user@[IPv6:::1]", 0},
    {"RCPT TO:<user@[127.0.0.256]>", HF_EADDR, NULL, 0},
    {"RCPT TO:<@branch.test:Postmaster>", HF_EADDR, NULL, 0},
};

static void test_paths(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        const struct path_case *c = &path_cases[i];
        struct smtp_cmd cmd;
        int rc = parse(c->line, &cmd);
        enum smtp_verb want = c->line[0] == 'M' || c->line[0] == 'm' ? SMTP_V_MAIL : SMTP_V_RCPT;
        if (rc != c->rc || cmd.verb != want) {
            print_error("case %zu \"%s\": rc %d verb %d, want %d\n", i, c->line, rc, (int)cmd.verb,
                        c->rc);
            fail();
        }
        if (rc != 0) {
            continue;
        }
        assert_string_equal(cmd.path, c->path);
        if (cmd.path_null != ((c->flags & NUL) != 0) ||
            cmd.source_route != ((c->flags & RT) != 0)) {
            print_error("case %zu \"%s\": null=%d route=%d\n", i, c->line, cmd.path_null,
                        cmd.source_route);
            fail();
        }
    }
}

/* "RCPT TO:<" 64 x 'l' "@" 63 d "." 63 d "." last d ">" */
static void build_rcpt(char *line, size_t last)
{
    size_t n;

    strcpy(line, "RCPT TO:<");
    n = strlen(line);
    memset(line + n, 'l', 64);
    n += 64;
    line[n++] = '@';
    for (int i = 0; i < 2; i++) {
        memset(line + n, 'd', 63);
        n += 63;
        line[n++] = '.';
    }
    memset(line + n, 'd', last);
    n += last;
    strcpy(line + n, ">");
}

static void test_path_length(void **state)
{
    char line[600];
    struct smtp_cmd cmd;

    (void)state;
    /* 256 octets with the brackets (RFC 5321 4.5.3.1.3): 1 + 64 + 1 + 189 + 1. */
    build_rcpt(line, 61);
    assert_int_equal(strlen(line) - strlen("RCPT TO:"), 256);
    assert_int_equal(parse(line, &cmd), 0);
    assert_int_equal(strlen(cmd.path), 254);
    build_rcpt(line, 62);
    assert_int_equal(parse(line, &cmd), HF_EADDR);
    assert_int_equal(cmd.verb, SMTP_V_RCPT);
    /* A local part of 65 octets is refused as an address. */
    strcpy(line, "RCPT TO:<");
    memset(line + 9, 'l', 65);
    strcpy(line + 9 + 65, "@branch.test>");
    assert_int_equal(parse(line, &cmd), HF_EADDR);
    assert_int_equal(cmd.verb, SMTP_V_RCPT);
}

/* Expected parameter fields; size ~0 means has_size false. */
struct param_case {
    const char *line;
    int rc;
    uint64_t size;
    enum smtp_body body;
    bool smtputf8;
    enum smtp_ret ret;
    const char *envid;
    unsigned notify;
    const char *orcpt;
};

#define NOSIZE UINT64_MAX
#define M      "MAIL FROM:<a@client.test> "
#define R      "RCPT TO:<b@branch.test> "
#define BAD(l, rc)                                                                                 \
    {                                                                                              \
        l, rc, NOSIZE, SMTP_BODY_NONE, false, SMTP_RET_NONE, "", 0, ""                             \
    }

static const struct param_case param_cases[] = {
    /* none */
    {"MAIL FROM:<a@client.test>", 0, NOSIZE, 0, false, 0, "", 0, ""},
    /* SIZE (RFC 1870) */
    {M "SIZE=0", 0, 0, 0, false, 0, "", 0, ""},
    {M "SIZE=1048576", 0, 1048576, 0, false, 0, "", 0, ""},
    {M "size=12", 0, 12, 0, false, 0, "", 0, ""},
    {M "SIZE=007", 0, 7, 0, false, 0, "", 0, ""},
    {M "SIZE=18446744073709551614", 0, UINT64_MAX - 1, 0, false, 0, "", 0, ""},
    BAD(M "SIZE=18446744073709551616", HF_ESYNTAX),
    BAD(M "SIZE=99999999999999999999", HF_ESYNTAX),
    BAD(M "SIZE=000000000000000000001", HF_ESYNTAX), /* 21 digits */
    BAD(M "SIZE=", HF_ESYNTAX),
    BAD(M "SIZE", HF_ESYNTAX),
    BAD(M "SIZE=x", HF_ESYNTAX),
    BAD(M "SIZE=12k", HF_ESYNTAX),
    BAD(M "SIZE=-1", HF_ESYNTAX),
    BAD(M "SIZE=+1", HF_ESYNTAX),
    BAD(M "SIZE=1 SIZE=2", HF_ESYNTAX),
    BAD(M "SIZE=1 size=1", HF_ESYNTAX),
    BAD(M "SIZE==1", HF_ESYNTAX),
    BAD(M "SIZE=1=2", HF_ESYNTAX),
    /* BODY (RFC 6152, RFC 3030) */
    {M "BODY=7BIT", 0, NOSIZE, SMTP_BODY_7BIT, false, 0, "", 0, ""},
    {M "BODY=8BITMIME", 0, NOSIZE, SMTP_BODY_8BITMIME, false, 0, "", 0, ""},
    {M "body=8bitmime", 0, NOSIZE, SMTP_BODY_8BITMIME, false, 0, "", 0, ""},
    {M "BODY=BINARYMIME", 0, NOSIZE, SMTP_BODY_BINARYMIME, false, 0, "", 0, ""},
    BAD(M "BODY=8BIT", HF_ESYNTAX),
    BAD(M "BODY=", HF_ESYNTAX),
    BAD(M "BODY", HF_ESYNTAX),
    BAD(M "BODY=7BIT BODY=8BITMIME", HF_ESYNTAX),
    /* SMTPUTF8 (RFC 6531) */
    {M "SMTPUTF8", 0, NOSIZE, 0, true, 0, "", 0, ""},
    {M "smtputf8", 0, NOSIZE, 0, true, 0, "", 0, ""},
    BAD(M "SMTPUTF8=yes", HF_ESYNTAX),
    BAD(M "SMTPUTF8 SMTPUTF8", HF_ESYNTAX),
    /* RET, ENVID (RFC 3461) */
    {M "RET=FULL", 0, NOSIZE, 0, false, SMTP_RET_FULL, "", 0, ""},
    {M "RET=hdrs", 0, NOSIZE, 0, false, SMTP_RET_HDRS, "", 0, ""},
    BAD(M "RET=BODY", HF_ESYNTAX),
    BAD(M "RET", HF_ESYNTAX),
    BAD(M "RET=FULL RET=HDRS", HF_ESYNTAX),
    {M "ENVID=QQ314159", 0, NOSIZE, 0, false, 0, "QQ314159", 0, ""},
    {M "ENVID=a+2Bb+3Dc", 0, NOSIZE, 0, false, 0, "a+2Bb+3Dc", 0, ""},
    {M "ENVID=x+20y", 0, NOSIZE, 0, false, 0, "x+20y", 0, ""},
    BAD(M "ENVID=", HF_ESYNTAX),
    BAD(M "ENVID", HF_ESYNTAX),
    BAD(M "ENVID=a+2", HF_ESYNTAX),
    BAD(M "ENVID=a+", HF_ESYNTAX),
    BAD(M "ENVID=a+GG", HF_ESYNTAX),
    BAD(M "ENVID=a+00", HF_ESYNTAX),
    BAD(M "ENVID=a+0A", HF_ESYNTAX),    /* decodes to a control character */
    BAD(M "ENVID=a+C3+A9", HF_ESYNTAX), /* decodes to non-ASCII */
    BAD(M "ENVID=\xc3\xa9", HF_ESYNTAX),
    BAD(M "ENVID=a ENVID=b", HF_ESYNTAX),
    /* AUTH= (RFC 4954): accepted, checked, not kept */
    {M "AUTH=<>", 0, NOSIZE, 0, false, 0, "", 0, ""},
    {M "AUTH=user+40client.test", 0, NOSIZE, 0, false, 0, "", 0, ""},
    BAD(M "AUTH=", HF_ESYNTAX),
    BAD(M "AUTH", HF_ESYNTAX),
    BAD(M "AUTH=a+Z", HF_ESYNTAX),
    BAD(M "AUTH=<> AUTH=<>", HF_ESYNTAX),
    /* several, any order, any case, extra spaces */
    {M "SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id1 AUTH=<>", 0, 100, SMTP_BODY_8BITMIME,
     true, SMTP_RET_HDRS, "id1", 0, ""},
    {M "envid=X   ret=full  size=5", 0, 5, 0, false, SMTP_RET_FULL, "X", 0, ""},
    /* keyword syntax and unknown keywords */
    BAD(M "FOO=bar", HF_EPARAM),
    BAD(M "X-EXT", HF_EPARAM),
    BAD(M "SIZE=1 FOO", HF_EPARAM),
    BAD(M "NOTIFY=NEVER", HF_EPARAM), /* RCPT parameter on MAIL */
    BAD(M "ORCPT=rfc822;a@b", HF_EPARAM),
    BAD(M "-SIZE=1", HF_ESYNTAX),
    BAD(M "SI_ZE=1", HF_ESYNTAX),
    BAD(M "=1", HF_ESYNTAX),
    {M "SIZE=1\t", 0, 1, 0, false, 0, "", 0, ""}, /* trailing blanks are trimmed */
    BAD(M "SIZE=1\tBODY=7BIT", HF_ESYNTAX),       /* a tab does not separate parameters */
    BAD(M "FOO=b\x01r", HF_ESYNTAX),
    BAD(M "FOO=\xc0\xaf", HF_ESYNTAX),
    /* NOTIFY (RFC 3461 4.1) */
    {R "NOTIFY=NEVER", 0, NOSIZE, 0, false, 0, "", SMTP_NOTIFY_NEVER, ""},
    {R "NOTIFY=SUCCESS", 0, NOSIZE, 0, false, 0, "", SMTP_NOTIFY_SUCCESS, ""},
    {R "NOTIFY=FAILURE", 0, NOSIZE, 0, false, 0, "", SMTP_NOTIFY_FAILURE, ""},
    {R "NOTIFY=DELAY", 0, NOSIZE, 0, false, 0, "", SMTP_NOTIFY_DELAY, ""},
    {R "notify=success,failure,delay", 0, NOSIZE, 0, false, 0, "",
     SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, ""},
    {R "NOTIFY=DELAY,FAILURE", 0, NOSIZE, 0, false, 0, "", SMTP_NOTIFY_DELAY | SMTP_NOTIFY_FAILURE,
     ""},
    BAD(R "NOTIFY=NEVER,SUCCESS", HF_ESYNTAX),
    BAD(R "NOTIFY=FAILURE,NEVER", HF_ESYNTAX),
    BAD(R "NOTIFY=", HF_ESYNTAX),
    BAD(R "NOTIFY", HF_ESYNTAX),
    BAD(R "NOTIFY=ALWAYS", HF_ESYNTAX),
    BAD(R "NOTIFY=SUCCESS,", HF_ESYNTAX),
    BAD(R "NOTIFY=,SUCCESS", HF_ESYNTAX),
    BAD(R "NOTIFY=SUCCESS,,DELAY", HF_ESYNTAX),
    BAD(R "NOTIFY=NEVER NOTIFY=NEVER", HF_ESYNTAX),
    /* ORCPT (RFC 3461 4.2, RFC 6533) */
    {R "ORCPT=rfc822;b@branch.test", 0, NOSIZE, 0, false, 0, "", 0, "rfc822;b@branch.test"},
    {R "ORCPT=RFC822;b+2Bx@branch.test", 0, NOSIZE, 0, false, 0, "", 0, "RFC822;b+2Bx@branch.test"},
    {R "ORCPT=utf-8;j\xc3\xb6rg@branch.test", 0, NOSIZE, 0, false, 0, "", 0,
     "utf-8;j\xc3\xb6rg@branch.test"},
    {R "NOTIFY=FAILURE ORCPT=rfc822;x@y", 0, NOSIZE, 0, false, 0, "", SMTP_NOTIFY_FAILURE,
     "rfc822;x@y"},
    BAD(R "ORCPT=", HF_ESYNTAX),
    BAD(R "ORCPT", HF_ESYNTAX),
    BAD(R "ORCPT=rfc822", HF_ESYNTAX),
    BAD(R "ORCPT=rfc822;", HF_ESYNTAX),
    BAD(R "ORCPT=;b@branch.test", HF_ESYNTAX),
    BAD(R "ORCPT=rf(822;b@branch.test", HF_ESYNTAX),
    BAD(R "ORCPT=rfc822;b+4@branch.test", HF_ESYNTAX),
    BAD(R "ORCPT=rfc822;j\xc3\xb6rg@branch.test", HF_ESYNTAX),
    BAD(R "ORCPT=utf-8;j\xc3\x28rg@branch.test", HF_ESYNTAX),
    BAD(R "ORCPT=rfc822;a@b ORCPT=rfc822;a@b", HF_ESYNTAX),
    /* MAIL parameters on RCPT */
    BAD(R "SIZE=1", HF_EPARAM),
    BAD(R "SMTPUTF8", HF_EPARAM),
    BAD(R "BODY=8BITMIME", HF_EPARAM),
    BAD(R "FOO", HF_EPARAM),
};

static void test_params(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(param_cases) / sizeof(param_cases[0]); i++) {
        const struct param_case *c = &param_cases[i];
        struct smtp_cmd cmd;
        int rc = parse(c->line, &cmd);
        if (rc != c->rc) {
            print_error("case %zu \"%s\": rc %d, want %d\n", i, c->line, rc, c->rc);
            fail();
        }
        assert_true(cmd.verb == SMTP_V_MAIL || cmd.verb == SMTP_V_RCPT);
        if (rc != 0) {
            continue;
        }
        if (c->size == NOSIZE) {
            assert_false(cmd.has_size);
        } else {
            assert_true(cmd.has_size);
            assert_true(cmd.size == c->size);
        }
        assert_int_equal(cmd.body, c->body);
        assert_int_equal(cmd.smtputf8, c->smtputf8);
        assert_int_equal(cmd.ret, c->ret);
        assert_string_equal(cmd.envid, c->envid);
        assert_int_equal(cmd.notify, c->notify);
        assert_string_equal(cmd.orcpt, c->orcpt);
    }
}

static void test_envid_limits(void **state)
{
    char line[SMTP_CMD_LINE_MAX];
    struct smtp_cmd cmd;
    size_t n;

    (void)state;
    /* 100 decoded octets is the most (RFC 3461 4.4). */
    strcpy(line, M "ENVID=");
    n = strlen(line);
    memset(line + n, 'e', 100);
    line[n + 100] = '\0';
    assert_int_equal(parse(line, &cmd), 0);
    assert_int_equal(strlen(cmd.envid), 100);
    line[n + 100] = 'e';
    line[n + 101] = '\0';
    assert_int_equal(parse(line, &cmd), HF_ESYNTAX);
    /* 100 decoded from 300 encoded. */
    for (int i = 0; i < 100; i++) {
        memcpy(line + n + 3 * i, "+2B", 3);
    }
    line[n + 300] = '\0';
    assert_int_equal(parse(line, &cmd), 0);
    assert_int_equal(strlen(cmd.envid), 300);
}

static void test_line_limits(void **state)
{
    char line[2048];
    struct smtp_cmd cmd;

    (void)state;
    /* 510 octets + CRLF = 512: accepted; 511 is one too many (RFC 5321 4.5.3.1.4). */
    strcpy(line, "NOOP ");
    memset(line + 5, 'x', 505);
    line[510] = '\0';
    assert_int_equal(smtp_cmd_parse(line, 510, &cmd), 0);
    assert_int_equal(cmd.verb, SMTP_V_NOOP);
    assert_int_equal(strlen(cmd.arg), 505);
    line[510] = 'x';
    line[511] = '\0';
    assert_int_equal(smtp_cmd_parse(line, 511, &cmd), HF_ELONGLINE);
    memset(line, 'x', 1100);
    assert_int_equal(smtp_cmd_parse(line, 1100, &cmd), HF_ELONGLINE);
    /* Length is checked first: even a line with a bare LF is too long first. */
    line[3] = '\n';
    assert_int_equal(smtp_cmd_parse(line, 600, &cmd), HF_ELONGLINE);

    /* An unknown verb has the ordinary limit too. */
    memset(line, 'x', 600);
    memcpy(line, "XYZZY ", 6);
    assert_int_equal(smtp_cmd_parse(line, 600, &cmd), HF_ELONGLINE);
    assert_int_equal(smtp_cmd_parse(line, 510, &cmd), HF_EUNKNOWN);

    /* MAIL and RCPT may be longer by what their extensions add (RFC 5321 4.5.3.1.4, RFC 1870
     * 3 and the others in smtp_cmd.h): padded with spaces to the exact boundary. */
    static const struct {
        const char *head;
        size_t max;
    } longer[] = {
        {"MAIL FROM:<a@client.test>", SMTP_MAIL_LINE_MAX},
        {"RCPT TO:<a@client.test>", SMTP_RCPT_LINE_MAX},
        {"VRFY a@client.test", SMTP_CMD_LINE_MAX},
    };
    for (size_t k = 0; k < sizeof(longer) / sizeof(longer[0]); k++) {
        for (size_t total = longer[k].max - 5; total <= longer[k].max; total++) {
            size_t n = strlen(longer[k].head);
            memcpy(line, longer[k].head, n);
            memset(line + n, ' ', total - n);
            line[total] = '\0';
            /* total octets + CRLF */
            int want = total + 2 <= longer[k].max ? 0 : HF_ELONGLINE;
            if (parse(line, &cmd) != want) {
                print_error("%s padded to %zu: want %d\n", longer[k].head, total, want);
                fail();
            }
        }
    }
    /* A MAIL line near its longest that is all real parameters. */
    size_t n = (size_t)sprintf(line, "MAIL FROM:<");
    memset(line + n, 'l', 64);
    n += 64;
    n += (size_t)sprintf(line + n, "@");
    for (int i = 0; i < 3; i++) {
        memset(line + n, 'd', 60);
        n += 60;
        line[n++] = '.';
    }
    n += (size_t)sprintf(line + n, "test> SIZE=18446744073709551615 BODY=8BITMIME SMTPUTF8 "
                                   "RET=HDRS ENVID=");
    for (int i = 0; i < 100; i++) {
        memcpy(line + n + 3 * (size_t)i, "+2B", 3);
    }
    n += 300;
    n += (size_t)sprintf(line + n, " AUTH=");
    memset(line + n, 'u', 400);
    n += 400;
    line[n] = '\0';
    assert_true(n + 2 > SMTP_CMD_LINE_MAX);
    assert_true(n + 2 <= SMTP_MAIL_LINE_MAX);
    assert_int_equal(parse(line, &cmd), 0);
    assert_int_equal(cmd.verb, SMTP_V_MAIL);
    assert_true(cmd.smtputf8);
    /* A RCPT with a long ORCPT and every NOTIFY. */
    n = (size_t)sprintf(line, "RCPT TO:<a@client.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;");
    memset(line + n, 'o', 480);
    n += 480;
    line[n] = '\0';
    assert_true(n + 2 > SMTP_CMD_LINE_MAX);
    assert_int_equal(parse(line, &cmd), 0);
    assert_int_equal(cmd.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
}

struct raw_case {
    const char *line;
    size_t len;
    int rc;
    enum smtp_verb verb;
};

#define RAW(s, rc, v)                                                                              \
    {                                                                                              \
        s, sizeof(s) - 1, rc, v                                                                    \
    }

static const struct raw_case raw_cases[] = {
    RAW("QUIT\n", HF_EBARELF, SMTP_V_UNKNOWN),
    RAW("QUIT\r", HF_EBARELF, SMTP_V_UNKNOWN),
    RAW("NOOP a\rb", HF_EBARELF, SMTP_V_UNKNOWN),
    RAW("MAIL FROM:<a@b.test>\nRCPT TO:<c@d.test>", HF_EBARELF, SMTP_V_UNKNOWN),
    RAW("\n", HF_EBARELF, SMTP_V_UNKNOWN),
    RAW("DATA\r\n", HF_EBARELF, SMTP_V_UNKNOWN),
    RAW("FOO\n", HF_EBARELF, SMTP_V_UNKNOWN),
    RAW("NOOP a\0b", HF_ESYNTAX, SMTP_V_NOOP),
    RAW("QUIT\0", HF_EUNKNOWN, SMTP_V_UNKNOWN), /* "QUIT\0" is the verb token */
    RAW("RCPT TO:<a\0@b.test>", HF_ESYNTAX, SMTP_V_RCPT),
    RAW("EHLO a.test\0", HF_ESYNTAX, SMTP_V_EHLO),
    RAW("\0", HF_EUNKNOWN, SMTP_V_UNKNOWN),
};

static void test_raw(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(raw_cases) / sizeof(raw_cases[0]); i++) {
        const struct raw_case *c = &raw_cases[i];
        struct smtp_cmd cmd;
        int rc = smtp_cmd_parse(c->line, c->len, &cmd);
        if (rc != c->rc || cmd.verb != c->verb) {
            print_error("raw case %zu: rc %d verb %d\n", i, rc, (int)cmd.verb);
            fail();
        }
    }
    /* len bounds the input; the buffer need not be NUL-terminated. */
    struct smtp_cmd cmd;
    assert_int_equal(smtp_cmd_parse("QUITXYZ", 4, &cmd), 0);
    assert_int_equal(cmd.verb, SMTP_V_QUIT);
}

static void test_verb_names(void **state)
{
    (void)state;
    assert_string_equal(smtp_cmd_verb_name(SMTP_V_UNKNOWN), "?");
    assert_string_equal(smtp_cmd_verb_name(SMTP_V_MAIL), "MAIL");
    assert_string_equal(smtp_cmd_verb_name(SMTP_V_STARTTLS), "STARTTLS");
    assert_string_equal(smtp_cmd_verb_name(SMTP_V_COUNT), "?");
    /* Every verb has a name, and parsing the name gives the verb back. */
    for (int v = SMTP_V_UNKNOWN + 1; v < SMTP_V_COUNT; v++) {
        const char *name = smtp_cmd_verb_name((enum smtp_verb)v);
        struct smtp_cmd cmd;
        assert_string_not_equal(name, "?");
        (void)parse(name, &cmd);
        assert_int_equal(cmd.verb, v);
    }
}

struct xdec_case {
    const char *in;
    int rc;
    const char *out;
};

static const struct xdec_case xdec_cases[] = {
    {"", 0, ""},
    {"abc", 3, "abc"},
    {"a+2Bb", 3, "a+b"},
    {"a+3Db", 3, "a=b"},
    {"+20", 1, " "},
    {"+2b", 1, "+"}, /* lower-case hex is taken */
    {"+C3+A9", 2, "\xc3\xa9"},
    {"!~<>\"", 5, "!~<>\""},
    {"a+", HF_ESYNTAX, NULL},
    {"a+2", HF_ESYNTAX, NULL},
    {"a+2G", HF_ESYNTAX, NULL},
    {"a+G2", HF_ESYNTAX, NULL},
    {"a+00", HF_ESYNTAX, NULL},
    {"a=b", HF_ESYNTAX, NULL},
    {"a b", HF_ESYNTAX, NULL},
    {"a\tb", HF_ESYNTAX, NULL},
    {"a\x7f", HF_ESYNTAX, NULL},
    {"\xc3\xa9", HF_ESYNTAX, NULL},
};

static void test_xtext(void **state)
{
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof(xdec_cases) / sizeof(xdec_cases[0]); i++) {
        const struct xdec_case *c = &xdec_cases[i];
        int rc = smtp_xtext_decode(c->in, strlen(c->in), out, sizeof(out));
        if (rc != c->rc) {
            print_error("xtext case %zu \"%s\": %d want %d\n", i, c->in, rc, c->rc);
            fail();
        }
        if (rc >= 0) {
            assert_string_equal(out, c->out);
        }
    }
    /* Space: "abc" needs 4 octets; syntax errors win over -ENOSPC. */
    assert_int_equal(smtp_xtext_decode("abc", 3, out, 3), -ENOSPC);
    assert_int_equal(smtp_xtext_decode("abc", 3, out, 4), 3);
    assert_int_equal(smtp_xtext_decode("abc", 3, out, 0), -ENOSPC);
    assert_int_equal(smtp_xtext_decode("", 0, out, 0), -ENOSPC);
    assert_int_equal(smtp_xtext_decode("abc=", 4, out, 2), HF_ESYNTAX);

    /* Encoding */
    assert_int_equal(smtp_xtext_encode("abc", out, sizeof(out)), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(smtp_xtext_encode("a+b=c d", out, sizeof(out)), 13);
    assert_string_equal(out, "a+2Bb+3Dc+20d");
    assert_int_equal(smtp_xtext_encode("\xc3\xa9\x7f", out, sizeof(out)), 9);
    assert_string_equal(out, "+C3+A9+7F");
    assert_int_equal(smtp_xtext_encode("", out, 1), 0);
    assert_int_equal(smtp_xtext_encode("", out, 0), -ENOSPC);
    assert_int_equal(smtp_xtext_encode("abc", out, 3), -ENOSPC);
    assert_int_equal(smtp_xtext_encode("abc", out, 4), 3);
    assert_int_equal(smtp_xtext_encode("+", out, 3), -ENOSPC);
    assert_int_equal(smtp_xtext_encode("+", out, 4), 3);

    /* Round trip over every octet but NUL. */
    char all[256], enc[800], dec[256];
    for (int i = 1; i < 256; i++) {
        all[i - 1] = (char)i;
    }
    all[255] = '\0';
    int n = smtp_xtext_encode(all, enc, sizeof(enc));
    assert_true(n > 0);
    assert_int_equal(smtp_xtext_decode(enc, (size_t)n, dec, sizeof(dec)), 255);
    assert_memory_equal(dec, all, 256);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbs),       cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_paths),       cmocka_unit_test(test_path_length),
        cmocka_unit_test(test_params),      cmocka_unit_test(test_envid_limits),
        cmocka_unit_test(test_line_limits), cmocka_unit_test(test_raw),
        cmocka_unit_test(test_verb_names),  cmocka_unit_test(test_xtext),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
