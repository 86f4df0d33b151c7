/* Unit tests for the smtpd module (relayd/inbound/smtpd*.c), the inbound SMTP state machine.
 *
 * Most of the file is one table of dialogues. A case is a list of steps; a step is what the
 * client sends before it waits (several pipelined commands, or message text) and the exact
 * replies it must get, optionally with the state the session must be in afterwards. The
 * driver plays the glue's part (smtpd_io.c): it keeps what smtpd_input() did not consume and
 * feeds it again once the answer it waits for has been given (queue commit, ETRN, AUTH
 * check, TLS handshake); after STARTTLS it discards the rest of the client's bytes, as the
 * glue does. Every case runs
 *   - with each step whole, byte by byte, and split into two chunks at every offset, and
 *   - with the answers given at once, and only after the whole step has arrived (a slow
 *     queue: the bytes that arrive meanwhile wait in the glue's buffer),
 * and must give the same replies, states and messages every time. Each case is its own
 * cmocka test, named after it, so one failing case does not hide the others. Each smtpd_input()
 * call gets a buffer of exactly the bytes offered, so AddressSanitizer sees any overread.
 *
 * Expected reply text is compared line by line and exactly, except that a line ending in
 * '*' only has to start with what comes before the '*'.
 *
 * A few tests outside the table check what the table cannot see: the return value of
 * smtpd_input() at STARTTLS and at the end of data, a large message, a failed handshake,
 * smtpd_refuse() and the state names. */
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

#include "cfg.h"
#include "cram.h"
#include "hf_err.h"
#include "log.h"
#include "policy.h"
#include "smtpd.h"

/* ---- the policy every case uses -------------------------------------------------------- */

static struct cfg g_cfg;
static struct cfg_errors g_errs;
static struct policy *g_policy;

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_LVL_ERR); /* refusals are logged at info level */
    static const char conf[] = "hostname = mx.test\n"
                               "[domain branch.test]\n"
                               "[domain backup.test]\n"
                               "subdomains = yes\n";
    if (cfg_init(&g_cfg) != 0 || cfg_parse(conf, strlen(conf), "test.conf", &g_cfg, &g_errs) != 0)
        return -1;
    if (policy_new(&g_cfg, &g_errs, &g_policy) != 0)
        return -1;
    /* branch.test has a recipient list; backup.test (and its subdomains) takes anyone. */
    if (policy_add_recipient(g_policy, "branch.test", "alice") != 0 ||
        policy_add_recipient(g_policy, "branch.test", "bob") != 0 ||
        policy_add_recipient(g_policy, "branch.test", "carol") != 0 ||
        policy_add_recipient(g_policy, "branch.test", "dave") != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    policy_free(g_policy);
    cfg_free(&g_cfg);
    cfg_errors_free(&g_errs);
    return 0;
}

/* ---- session parameters ---------------------------------------------------------------- */

static const struct smtpd_params P_DEF = {
    .hostname = "mx.test", .max_size = 1000000, .max_rcpts = 3, .max_bad = 10, .etrn = true};
static const struct smtpd_params P_NOETRN = {
    .hostname = "mx.test", .max_size = 1000000, .max_rcpts = 3, .max_bad = 10};
static const struct smtpd_params P_SMALL = {
    .hostname = "mx.test", .max_size = 100, .max_rcpts = 3, .max_bad = 10, .etrn = true};
static const struct smtpd_params P_NORM = {.hostname = "mx.test",
                                           .max_size = 1000000,
                                           .max_rcpts = 3,
                                           .max_bad = 10,
                                           .etrn = true,
                                           .bare_normalise = true};
static const struct smtpd_params P_BAD3 = {
    .hostname = "mx.test", .max_size = 1000000, .max_rcpts = 10, .max_bad = 3, .etrn = true};
static const struct smtpd_params P_LENIENT = {
    .hostname = "mx.test", .max_size = 1000000, .max_rcpts = 3, .max_bad = 100, .etrn = true};
static const struct smtpd_params P_TLS = {.hostname = "mx.test",
                                          .max_size = 1000000,
                                          .max_rcpts = 3,
                                          .max_bad = 10,
                                          .etrn = true,
                                          .tls_available = true,
                                          .auth_available = true,
                                          .submission = true,
                                          .submission_users = "bob, alice"};
/* submission = yes with submission_users empty (the default): nobody may relay. */
static const struct smtpd_params P_TLS_SUB_NOBODY = {.hostname = "mx.test",
                                                     .max_size = 1000000,
                                                     .max_rcpts = 3,
                                                     .max_bad = 10,
                                                     .etrn = true,
                                                     .tls_available = true,
                                                     .auth_available = true,
                                                     .submission = true,
                                                     .submission_users = ""};
static const struct smtpd_params P_TLS_SUB_OTHERS = {.hostname = "mx.test",
                                                     .max_size = 1000000,
                                                     .max_rcpts = 3,
                                                     .max_bad = 10,
                                                     .etrn = true,
                                                     .tls_available = true,
                                                     .auth_available = true,
                                                     .submission = true,
                                                     .submission_users = "alicea,ali bob"};
static const struct smtpd_params P_TLS_SUB_ALL = {.hostname = "mx.test",
                                                  .max_size = 1000000,
                                                  .max_rcpts = 3,
                                                  .max_bad = 10,
                                                  .etrn = true,
                                                  .tls_available = true,
                                                  .auth_available = true,
                                                  .submission = true,
                                                  .submission_users = "*"};
static const struct smtpd_params P_TLS_NOSUB = {.hostname = "mx.test",
                                                .max_size = 1000000,
                                                .max_rcpts = 3,
                                                .max_bad = 10,
                                                .etrn = true,
                                                .tls_available = true,
                                                .auth_available = true};
/* An ODMR listener (RFC 2645) with CRAM-MD5 secrets and a certificate; and the SMTP port of a
 * relay that has one (atrn_where) or none. */
static const struct smtpd_params P_ODMR = {.hostname = "mx.test",
                                           .max_size = 1000000,
                                           .max_rcpts = 3,
                                           .max_bad = 10,
                                           .odmr = true,
                                           .cram_available = true,
                                           .tls_available = true,
                                           .auth_available = true};
static const struct smtpd_params P_ODMR_NOCRAM = {.hostname = "mx.test",
                                                  .max_size = 1000000,
                                                  .max_rcpts = 3,
                                                  .max_bad = 10,
                                                  .odmr = true,
                                                  .tls_available = true,
                                                  .auth_available = true};
static const struct smtpd_params P_SMTP_ODMR = {.hostname = "mx.test",
                                                .max_size = 1000000,
                                                .max_rcpts = 3,
                                                .max_bad = 10,
                                                .etrn = true,
                                                .atrn_where = "192.0.2.1:366"};
static const struct smtpd_params P_TLS_NOAUTH = {.hostname = "mx.test",
                                                 .max_size = 1000000,
                                                 .max_rcpts = 3,
                                                 .max_bad = 10,
                                                 .etrn = true,
                                                 .tls_available = true};

/* ---- the table ------------------------------------------------------------------------- */

/* A step whose input is this array (compared by address) is a timeout, not client bytes. */
static const char EV_TIMEOUT[] = "<timeout>";

struct step {
    const char *in;  /* client bytes, or EV_TIMEOUT */
    const char *out; /* every reply the step must produce, "" for none */
    const char *st;  /* state name afterwards (smtpd_state_name), NULL: not checked */
};

struct emsg {
    const char *from;  /* envelope sender, "" for <> */
    const char *rcpts; /* recipients, comma-separated */
    const char *body;  /* message after dot-unstuffing */
    bool eight_bit;
};

struct dcase {
    const char *name;
    const struct smtpd_params *prm; /* NULL: P_DEF */
    struct step steps[16];          /* ends at in == NULL */
    struct emsg msgs[3];            /* messages committed, in order; ends at from == NULL */
    int commit_status;              /* smtpd_committed() status for every commit */
    const char *etrn_arg;           /* argument of the last ETRN, NULL: no ETRN expected */
};

#define EHLO_HEAD                                                                                  \
    "250-mx.test Hello client.test [127.0.0.1]\r\n"                                                \
    "250-PIPELINING\r\n"
#define EHLO_MID                                                                                   \
    "250-8BITMIME\r\n"                                                                             \
    "250-CHUNKING\r\n"                                                                             \
    "250-ENHANCEDSTATUSCODES\r\n"                                                                  \
    "250-SMTPUTF8\r\n"                                                                             \
    "250-DSN\r\n"
/* EHLO reply with the default parameters: ETRN, no STARTTLS, no AUTH. */
#define EHLO_DEF EHLO_HEAD "250-SIZE 1000000\r\n" EHLO_MID "250-ETRN\r\n250 HELP\r\n"
/* P_TLS before TLS: STARTTLS offered, AUTH not. */
#define EHLO_TLS                                                                                   \
    EHLO_HEAD "250-SIZE 1000000\r\n" EHLO_MID "250-ETRN\r\n250-STARTTLS\r\n250 HELP\r\n"
/* P_TLS over TLS, not yet authenticated: AUTH offered, STARTTLS not. */
#define EHLO_AUTH                                                                                  \
    EHLO_HEAD "250-SIZE 1000000\r\n" EHLO_MID "250-ETRN\r\n250-AUTH PLAIN LOGIN\r\n250 HELP\r\n"

#define S_EHLO                                                                                     \
    {                                                                                              \
        "EHLO client.test\r\n", EHLO_DEF, "READY"                                                  \
    }
#define S_HELO                                                                                     \
    {                                                                                              \
        "HELO client.test\r\n", "250 mx.test\r\n", "READY"                                         \
    }
#define S_EHLO_TLS                                                                                 \
    {                                                                                              \
        "EHLO client.test\r\n", EHLO_TLS, "READY"                                                  \
    }
#define S_STARTTLS                                                                                 \
    {                                                                                              \
        "STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n", "GREET"                                \
    }
#define S_EHLO_AUTH                                                                                \
    {                                                                                              \
        "EHLO client.test\r\n", EHLO_AUTH, "READY"                                                 \
    }
/* TLS and a successful AUTH PLAIN as alice. */
#define S_TLS_AUTH                                                                                 \
    S_EHLO_TLS, S_STARTTLS, S_EHLO_AUTH,                                                           \
    {                                                                                              \
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "235 2.7.0 Authentication successful\r\n", "READY"  \
    }

#define R_MAIL     "250 2.1.0 Ok\r\n"
#define R_RCPT     "250 2.1.5 Ok\r\n"
#define R_DATA     "354 End data with <CR><LF>.<CR><LF>\r\n"
#define R_QUEUED   "250 2.0.0 Ok: queued as ID\r\n"
#define R_OK       "250 2.0.0 Ok\r\n"
#define R_BYE      "221 2.0.0 Bye\r\n"
#define R_NEEDMAIL "503 5.5.1 Need MAIL before RCPT\r\n"
#define R_RELAY(a) "550 5.7.1 <" a ">: Relaying denied\r\n"
#define R_TRICK    "550 5.7.1 *\r\n"
#define R_BARE     "500 5.5.2 Bare CR or LF in command line\r\n"
#define R_LONG     "500 5.5.2 Line too long\r\n"
#define R_UNKNOWN  "500 5.5.1 Command unrecognized\r\n"
#define R_SIZE100  "552 5.3.4 Message size exceeds fixed limit of 100 octets\r\n"
#define R_BARE_DATA                                                                                \
    "554 5.6.0 Message refused: bare LF or bare CR in message, only CRLF ends a line\r\n"
#define R_LONG_DATA   "554 5.6.0 Message refused: a text line is over 1000 octets\r\n"
#define R_NOHELP      "504 5.5.4 No help for that; HELP alone lists the commands\r\n"
#define R_BDAT_NOMAIL "503 5.5.1 Need MAIL and RCPT before BDAT\r\n"
#define R_BDAT_EHLO   "503 5.5.1 BDAT needs EHLO (CHUNKING)\r\n"
#define R_NORCPT      "554 5.5.1 No valid recipients\r\n"
#define R_OCTETS(n)   "250 2.0.0 " #n " octets received\r\n"
#define R_AUTH_OK     "235 2.7.0 Authentication successful\r\n"
#define R_AUTH_BAD    "535 5.7.8 Authentication credentials invalid\r\n"
#define R_CLOSE_BAD   "421 4.7.0 Too many errors, closing connection\r\n"
/* ODMR: EHLO before and after TLS, CRAM-MD5 for session id 7 (challenge <0.7@mx.test>,
 * the digest from Python's hmac with the secret "secret"). */
#define EHLO_ODMR                                                                                  \
    "250-mx.test Hello client.test [127.0.0.1]\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n"    \
    "250-AUTH CRAM-MD5\r\n250-ATRN\r\n250 HELP\r\n"
#define EHLO_ODMR_TLS                                                                              \
    "250-mx.test Hello client.test [127.0.0.1]\r\n250-ENHANCEDSTATUSCODES\r\n"                    \
    "250-AUTH CRAM-MD5 PLAIN LOGIN\r\n250-ATRN\r\n250 HELP\r\n"
#define CRAM_CHAL     "334 PDAuN0BteC50ZXN0Pg==\r\n"
#define CRAM_ALICE    "YWxpY2UgYjE1YmZjODczNDI0MzUyZjQyMTY0MDk3YmQ3MTRjZmU=\r\n"
#define CRAM_WRONG    "YWxpY2UgYmY1NjBkYjJkZTNiMTk0MWYzMDFlZmU2YTBkZjg1NDI=\r\n"
#define R_ODMR_NOMAIL(v)                                                                           \
    "502 5.5.1 " v " not accepted on the ODMR port: AUTH, then ATRN (RFC 2645); send mail to "     \
    "the SMTP port\r\n"
#define R_REVERSE "250 2.0.0 OK now reversing the connection\r\n"

#define MAIL_A     "MAIL FROM:<a@example.org>\r\n"
#define RCPT_ALICE "RCPT TO:<alice@branch.test>\r\n"

/* Long strings built from literals. */
#define X10  "xxxxxxxxxx"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define X500 X100 X100 X100 X100 X100
#define A10  "aaaaaaaaaa"
#define A90  A10 A10 A10 A10 A10 A10 A10 A10 A10
#define A100 A90 A10
#define A500 A100 A100 A100 A100 A100

static const struct dcase cases[] = {
    /* ---- HELO / EHLO -------------------------------------------------------------------- */
    {.name = "helo",
     .steps = {{"HELO client.test\r\n", "250 mx.test\r\n", "READY"},
               {"helo other.test\r\n", "250 mx.test\r\n", "READY"},
               {"HELO [192.0.2.1]\r\n", "250 mx.test\r\n", "READY"},
               {"HELO\r\n", "501 5.5.4 *\r\n", "READY"},
               {"HELO a b\r\n", "501 5.5.4 *\r\n", "READY"}}},
    {.name = "ehlo default: SIZE, ETRN, no STARTTLS, no AUTH",
     .steps = {S_EHLO, {"ehlo client.test\r\n", EHLO_DEF, "READY"}}},
    {.name = "ehlo without etrn",
     .prm = &P_NOETRN,
     .steps = {{"EHLO client.test\r\n", EHLO_HEAD "250-SIZE 1000000\r\n" EHLO_MID "250 HELP\r\n",
                "READY"},
               {"ETRN branch.test\r\n", "502 5.5.1 ETRN not available\r\n", "READY"},
               {"HELP\r\n",
                "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP; HELP "
                "command for its syntax\r\n",
                "READY"},
               {"HELP ETRN\r\n", R_NOHELP, "READY"}}},
    {.name = "ehlo SIZE value",
     .prm = &P_SMALL,
     .steps = {{"EHLO client.test\r\n",
                EHLO_HEAD "250-SIZE 100\r\n" EHLO_MID "250-ETRN\r\n250 HELP\r\n", "READY"}}},
    {.name = "ehlo tls available: STARTTLS, AUTH only after TLS",
     .prm = &P_TLS,
     .steps = {S_EHLO_TLS, S_STARTTLS, S_EHLO_AUTH}},
    {.name = "ehlo tls without auth",
     .prm = &P_TLS_NOAUTH,
     .steps = {S_EHLO_TLS,
               S_STARTTLS,
               {"EHLO client.test\r\n",
                EHLO_HEAD "250-SIZE 1000000\r\n" EHLO_MID "250-ETRN\r\n250 HELP\r\n", "READY"}}},

    /* ---- transactions -------------------------------------------------------------------- */
    {.name = "happy path with dot-unstuffing",
     .steps = {{"", "", "GREET"},
               S_EHLO,
               {MAIL_A, R_MAIL, "MAIL"},
               {RCPT_ALICE, R_RCPT, "RCPT"},
               {"DATA\r\n", R_DATA, "DATA"},
               {"Subject: t\r\n\r\n..dot\r\n..\r\n...x\r\n.\r\n", R_QUEUED, "READY"},
               {"QUIT\r\n", R_BYE, "CLOSED"}},
     .msgs = {{"a@example.org", "alice@branch.test", "Subject: t\r\n\r\n.dot\r\n.\r\n..x\r\n"}}},
    {.name = "message text that looks like commands",
     .steps = {S_HELO,
               {MAIL_A RCPT_ALICE "DATA\r\n", R_MAIL R_RCPT R_DATA, "DATA"},
               {"QUIT\r\nMAIL FROM:<x@y.test>\r\n. \r\n .\r\n.x\r\n", "", "DATA"},
               {".\r\n", R_QUEUED, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test",
               "QUIT\r\nMAIL FROM:<x@y.test>\r\n \r\n .\r\nx\r\n"}}},
    {.name = "empty message, null sender, parameters",
     .steps =
         {S_EHLO,
          {"MAIL FROM:<> SIZE=500 BODY=8BITMIME RET=HDRS ENVID=abc\r\n", R_MAIL, "MAIL"},
          {"RCPT TO:<alice@branch.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@branch.test\r\n",
           R_RCPT, "RCPT"},
          {"DATA\r\n.\r\n", R_DATA R_QUEUED, "READY"}},
     .msgs = {{"", "alice@branch.test", ""}}},
    {.name = "8-bit message",
     .steps = {S_EHLO,
               {"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n" RCPT_ALICE "DATA\r\n",
                R_MAIL R_RCPT R_DATA, "DATA"},
               {"caf\xc3\xa9\r\n.\r\n", R_QUEUED, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", "caf\xc3\xa9\r\n", true}}},
    {.name = "SMTPUTF8",
     .steps = {S_EHLO,
               {"MAIL FROM:<d\xc3\xb6rte@example.org> SMTPUTF8\r\n", R_MAIL, "MAIL"},
               {"RCPT TO:<j\xc3\xbcrgen@sub.backup.test>\r\n", R_RCPT, "RCPT"},
               {"DATA\r\nx\r\n.\r\n", R_DATA R_QUEUED, "READY"},
               {"MAIL FROM:<d\xc3\xb6rte@example.org>\r\n", "5*\r\n", "READY"},
               {MAIL_A "RCPT TO:<j\xc3\xbcrgen@sub.backup.test>\r\n", R_MAIL "553 5.6.7 *\r\n",
                "MAIL"}},
     .msgs = {{"d\xc3\xb6rte@example.org", "j\xc3\xbcrgen@sub.backup.test", "x\r\n"}}},
    {.name = "pipelining: answers in order, commands after the end of data wait for the commit",
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "RCPT TO:<x@elsewhere.test>\r\n"
                                  "RCPT TO:<bob@branch.test>\r\nDATA\r\n",
                R_MAIL R_RCPT R_RELAY("x@elsewhere.test") R_RCPT R_DATA, "DATA"},
               {"first\r\n.\r\nMAIL FROM:<b@example.org>\r\nRCPT TO:<carol@branch.test>\r\n"
                "DATA\r\nsecond\r\n.\r\nNOOP\r\nQUIT\r\n",
                R_QUEUED R_MAIL R_RCPT R_DATA R_QUEUED R_OK R_BYE, "CLOSED"}},
     .msgs = {{"a@example.org", "alice@branch.test,bob@branch.test", "first\r\n"},
              {"b@example.org", "carol@branch.test", "second\r\n"}}},
    {.name = "source route stripped, duplicate recipient kept once",
     .steps = {S_HELO,
               {MAIL_A "RCPT TO:<@hop.test,@hop2.test:alice@branch.test>\r\n" RCPT_ALICE
                       "DATA\r\n.\r\n",
                R_MAIL R_RCPT R_RCPT R_DATA R_QUEUED, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", ""}}},
    {.name = "RSET and HELO end a transaction",
     .steps = {S_HELO,
               {MAIL_A RCPT_ALICE "RSET\r\n", R_MAIL R_RCPT R_OK, "READY"},
               {RCPT_ALICE, R_NEEDMAIL, "READY"},
               {MAIL_A "HELO client.test\r\n" RCPT_ALICE, R_MAIL "250 mx.test\r\n" R_NEEDMAIL,
                "READY"},
               {"RSET x\r\n", "501 5.5.4 *\r\n", "READY"},
               {"NOOP\r\n", R_OK, "READY"}}},
    {.name = "RSET before HELO stays in GREET",
     .steps = {{"RSET\r\n", R_OK, "GREET"},
               {MAIL_A, "503 5.5.1 Send HELO or EHLO first\r\n", "GREET"}}},

    /* ---- refusals: README's table -------------------------------------------------------- */
    {.name = "relay denied, address literals",
     .steps = {S_HELO,
               {MAIL_A, R_MAIL, "MAIL"},
               {"RCPT TO:<x@elsewhere.test>\r\n", R_RELAY("x@elsewhere.test"), "MAIL"},
               {"RCPT TO:<alice@badbranch.test>\r\n", R_RELAY("alice@badbranch.test"), "MAIL"},
               {"RCPT TO:<alice@sub.branch.test>\r\n", R_RELAY("alice@sub.branch.test"), "MAIL"},
               {"RCPT TO:<alice@[127.0.0.1]>\r\n", R_RELAY("alice@[127.0.0.1]"), "MAIL"},
               {"RCPT TO:<alice@[IPv6:::1]>\r\n", R_RELAY("alice@[IPv6:::1]"), "MAIL"},
               {"RCPT TO:<postmaster>\r\n", "550 5.7.1 *\r\n", "MAIL"},
               {"RCPT TO:<x@a.b.backup.test>\r\n", R_RCPT, "RCPT"}}},
    {.name = "unknown user",
     .steps = {S_HELO,
               {MAIL_A "RCPT TO:<eve@branch.test>\r\nRCPT TO:<Alice@Branch.Test>\r\n",
                R_MAIL
                "550 5.1.1 <eve@branch.test>: Recipient address rejected: user unknown\r\n" R_RCPT,
                "RCPT"}}},
    {.name = "%-hack, bang path, quoted @",
     .steps = {S_HELO,
               {MAIL_A, R_MAIL, "MAIL"},
               {"RCPT TO:<alice%elsewhere.test@branch.test>\r\n", R_TRICK, "MAIL"},
               {"RCPT TO:<elsewhere.test!alice@branch.test>\r\n", R_TRICK, "MAIL"},
               {"RCPT TO:<\"alice@elsewhere.test\"@branch.test>\r\n", R_TRICK, "MAIL"},
               {"RCPT TO:<x%y@sub.backup.test>\r\n", R_TRICK, "MAIL"},
               {"DATA\r\n", "554 5.5.1 No valid recipients\r\n", "MAIL"}}},
    {.name = "too many recipients (max 3; a duplicate does not count)",
     .steps = {S_HELO,
               {MAIL_A RCPT_ALICE RCPT_ALICE "RCPT TO:<bob@branch.test>\r\n"
                                             "RCPT TO:<carol@branch.test>\r\n"
                                             "RCPT TO:<dave@branch.test>\r\nDATA\r\n.\r\n",
                R_MAIL R_RCPT R_RCPT R_RCPT R_RCPT
                "452 4.5.3 Too many recipients\r\n" R_DATA R_QUEUED,
                "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test,bob@branch.test,carol@branch.test", ""}}},
    {.name = "SIZE at MAIL",
     .prm = &P_SMALL,
     .steps = {{"EHLO client.test\r\n", NULL, "READY"},
               {"MAIL FROM:<a@example.org> SIZE=101\r\n", R_SIZE100, "READY"},
               {"MAIL FROM:<a@example.org> SIZE=99999999999999999\r\n", R_SIZE100, "READY"},
               {"MAIL FROM:<a@example.org> SIZE=100\r\n", R_MAIL, "MAIL"}}},
    {.name = "SIZE while receiving: 100 octets pass, 101 do not",
     .prm = &P_SMALL,
     .steps = {{"EHLO client.test\r\n", NULL, "READY"},
               {MAIL_A RCPT_ALICE "DATA\r\n", R_MAIL R_RCPT R_DATA, "DATA"},
               /* 101 octets */
               {A90 "aaaaaaaaa\r\n.\r\n", R_SIZE100, "READY"},
               {MAIL_A RCPT_ALICE "DATA\r\n", R_MAIL R_RCPT R_DATA, "DATA"},
               /* 100 octets */
               {A90 "aaaaaaaa\r\n.\r\n", R_QUEUED, "READY"},
               /* declared small, 100 octets after unstuffing (101 received) */
               {"MAIL FROM:<a@example.org> SIZE=10\r\n" RCPT_ALICE "DATA\r\n", R_MAIL R_RCPT R_DATA,
                "DATA"},
               {".." A90 "aaaaaaa\r\n.\r\n", R_QUEUED, "READY"},
               /* far too big: only scanned for the end */
               {MAIL_A RCPT_ALICE "DATA\r\n" A500 "\r\n" A500 "\r\n.\r\nNOOP\r\n",
                R_MAIL R_RCPT R_DATA R_SIZE100 R_OK, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", A90 "aaaaaaaa\r\n"},
              {"a@example.org", "alice@branch.test", "." A90 "aaaaaaa\r\n"}}},
    {.name = "command line of 512 octets passes, 513 do not",
     .steps = {S_HELO,
               /* 5 + 505 + 2 = 512 */
               {"VRFY " X500 "xxxxx\r\n", "252 2.5.2 *\r\n", "READY"},
               /* 513 */
               {"VRFY " X500 "xxxxxx\r\n", R_LONG, "READY"},
               /* far over, then a good command in the same chunk */
               {"VRFY " X500 X500 X500 "\r\nNOOP\r\n", R_LONG R_OK, "READY"},
               /* a long line ending in a bare LF is still one line with the next one */
               {"NOOP " X500 X100 "\nNOOP\r\nNOOP\r\n", R_LONG R_OK, "READY"},
               /* a long line whose CR is the last of 513 octets */
               {"NOOP " X500 "xxxxxx\r\r\n", R_LONG, "READY"}}},
    {.name = "MAIL and RCPT lines may pass 512 octets by what their extensions add",
     .steps = {S_EHLO,
               /* 534 octets: AUTH= adds up to 500 (RFC 4954 5) */
               {"MAIL FROM:<a@example.org> AUTH=" A500 "\r\n", R_MAIL, "MAIL"},
               /* 562 octets: NOTIFY and ORCPT add up to 500 (RFC 3461) */
               {"RCPT TO:<alice@branch.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;" A500
                "\r\n",
                "501 5.5.4 *\r\n", "MAIL"},
               {"RCPT TO:<alice@branch.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;" A100 A100
                    A100 A100 A90 "\r\n",
                R_RCPT, "RCPT"},
               /* past every limit: not executed */
               {"RSET\r\nMAIL FROM:<a@example.org> " X500 X500 X500
                "\r\nRCPT TO:<bob@branch.test> " X500 X500 "\r\n",
                R_OK R_LONG R_LONG, "READY"},
               {"VRFY " X500 "xxxxxx\r\n", R_LONG, "READY"}}},
    {.name = "bare LF and bare CR in command lines: one bad line, not executed",
     .steps = {S_HELO,
               {"MAIL FROM:<a@example.org>\nRCPT TO:<alice@branch.test>\r\n", R_BARE, "READY"},
               {RCPT_ALICE, R_NEEDMAIL, "READY"},
               {"MAIL FROM:<a@example.org>\rRCPT TO:<alice@branch.test>\r\n", R_BARE, "READY"},
               {"NOOP\n", "", "READY"},
               {"NOOP\r\n", R_BARE, "READY"},
               {"NOOP\r\r\n", R_BARE, "READY"},
               {"\nNOOP\r\n", R_BARE, "READY"},
               {"NOOP\n\r\nNOOP\r\n", R_BARE R_OK, "READY"},
               {"QUIT\rQUIT\nQUIT\r\n", R_BARE, "READY"}}},
    {.name = "bare LF / CR in message text: 554 after the real end, no smuggling",
     .steps = {S_HELO,
               {MAIL_A RCPT_ALICE "DATA\r\n", R_MAIL R_RCPT R_DATA, "DATA"},
               {"a\nb\r\n\n.\nMAIL FROM:<evil@x.test>\r\n\r.\r\n.\n\r\n", "", "DATA"},
               {"\r\n.\r\nNOOP\r\n", R_BARE_DATA R_OK, "READY"},
               {MAIL_A RCPT_ALICE "DATA\r\nx\ry\r\n.\r\n", R_MAIL R_RCPT R_DATA R_BARE_DATA,
                "READY"}}},
    {.name = "bare LF / CR in message text, normalise mode",
     .prm = &P_NORM,
     .steps = {S_HELO,
               {MAIL_A RCPT_ALICE "DATA\r\n", R_MAIL R_RCPT R_DATA, "DATA"},
               {"a\nb\rc\r\n\n.\nx\r\n.\r\n", R_QUEUED, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", "a\r\nb\r\nc\r\n\r\n.\r\nx\r\n"}}},
    {.name = "text line of 1000 octets passes, 1001 do not",
     .steps = {S_HELO,
               {MAIL_A RCPT_ALICE "DATA\r\n", R_MAIL R_RCPT R_DATA, "DATA"},
               {A500 A100 A100 A100 A100 A90 "aaaaaaaa\r\n.\r\n", R_QUEUED, "READY"},
               {MAIL_A RCPT_ALICE "DATA\r\n", R_MAIL R_RCPT R_DATA, "DATA"},
               {"ok\r\n" A500 A500 "\r\nok\r\n.\r\n", R_LONG_DATA, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", A500 A100 A100 A100 A100 A90 "aaaaaaaa\r\n"}}},
    {.name = "sequence errors",
     .steps = {{MAIL_A, "503 5.5.1 Send HELO or EHLO first\r\n", "GREET"},
               {RCPT_ALICE, "503 5.5.1 *\r\n", "GREET"},
               {"DATA\r\n", "503 5.5.1 *\r\n", "GREET"},
               S_HELO,
               {RCPT_ALICE, "503 5.5.1 Need MAIL before RCPT\r\n", "READY"},
               {"DATA\r\n", "503 5.5.1 Need RCPT before DATA\r\n", "READY"},
               {MAIL_A MAIL_A, R_MAIL "503 5.5.1 Nested MAIL command\r\n", "MAIL"},
               {"DATA\r\n", "554 5.5.1 No valid recipients\r\n", "MAIL"},
               {RCPT_ALICE MAIL_A, R_RCPT "503 5.5.1 Nested MAIL command\r\n", "RCPT"}}},
    {.name = "unknown commands",
     .steps = {{"FOO\r\n", R_UNKNOWN, "GREET"},
               S_HELO,
               {"XYZZY plugh\r\n", R_UNKNOWN, "READY"},
               {"MAILFROM:<a@example.org>\r\n", "500 5.5.1 *\r\n", "READY"},
               {"\r\n", "5*\r\n", "READY"}}},
    {.name = "syntax errors",
     .prm = &P_LENIENT,
     .steps = {S_EHLO,
               {"MAIL FROM:a@example.org\r\n", "501 5.5.4 *\r\n", "READY"},
               {"MAIL FROM:<a@example.org\r\n", "501 5.*\r\n", "READY"},
               {"MAIL FROM:<a@@example.org>\r\n", "501 5.1.7 *\r\n", "READY"},
               {"MAIL TO:<a@example.org>\r\n", "501 5.5.4 *\r\n", "READY"},
               {"MAIL FROM:<a@example.org> SIZE=x\r\n", "501 5.5.4 *\r\n", "READY"},
               {MAIL_A, R_MAIL, "MAIL"},
               {"RCPT TO:<alice@branch.test\r\n", "501 5.*\r\n", "MAIL"},
               {"RCPT TO:<@@>\r\n", "501 5.1.3 *\r\n", "MAIL"},
               {"RCPT TO:<alice@branch.test> NOTIFY=SOMETIMES\r\n", "501 5.5.4 *\r\n", "MAIL"},
               {RCPT_ALICE, R_RCPT, "RCPT"},
               {"DATA now\r\n", "501 5.5.4 *\r\n", "RCPT"},
               {"VRFY\r\n", "501 5.5.4 *\r\n", "RCPT"}}},
    {.name = "unknown parameters",
     .steps = {S_EHLO,
               {"MAIL FROM:<a@example.org> FOO=bar\r\n", "555 5.5.4 *\r\n", "READY"},
               {"MAIL FROM:<a@example.org> BODY=BINARYMIME\r\n", "555 5.5.4 *\r\n", "READY"},
               {MAIL_A, R_MAIL, "MAIL"},
               {"RCPT TO:<alice@branch.test> BAR=1\r\n", "555 5.5.4 *\r\n", "MAIL"},
               /* parameters need EHLO */
               {"HELO client.test\r\n", "250 mx.test\r\n", "READY"},
               {"MAIL FROM:<a@example.org> SIZE=10\r\n", "555 5.5.4 MAIL parameters need EHLO\r\n",
                "READY"},
               {MAIL_A "RCPT TO:<alice@branch.test> NOTIFY=NEVER\r\n",
                R_MAIL "555 5.5.4 RCPT parameters need EHLO\r\n", "MAIL"}}},
    {.name = "VRFY, EXPN, TURN, ATRN, SEND, SOML, SAML, HELP, NOOP",
     .steps = {S_HELO,
               {"VRFY alice\r\n",
                "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n",
                "READY"},
               {"EXPN staff\r\n", "502 5.5.1 EXPN not available\r\n", "READY"},
               {"TURN\r\n", "502 5.5.1 TURN refused: *\r\n", "READY"},
               {"ATRN branch.test\r\n", "502 5.5.1 *\r\n", "READY"},
               /* RFC 821 verbs: known and not implemented, 502 (not 500 unrecognized) */
               {"SEND FROM:<a@example.org>\r\nsoml FROM:<a@example.org>\r\nSAML\r\n",
                "502 5.5.1 SEND not implemented (RFC 821 terminal delivery)\r\n"
                "502 5.5.1 SOML not implemented (RFC 821 terminal delivery)\r\n"
                "502 5.5.1 SAML not implemented (RFC 821 terminal delivery)\r\n",
                "READY"},
               {MAIL_A "SEND FROM:<a@example.org>\r\n", R_MAIL "502 5.5.1 SEND *\r\n", "MAIL"},
               {"RSET\r\n", R_OK, "READY"},
               {"HELP\r\n",
                "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP ETRN; "
                "HELP command for its syntax\r\n",
                "READY"},
               {"HELP bdat\r\nHELP ETRN\r\n",
                "214 2.0.0 BDAT size [LAST], then exactly size octets of the message (RFC "
                "3030)\r\n214 2.0.0 ETRN domain | @domain | #queue (RFC 1985)\r\n",
                "READY"},
               {"HELP SEND\r\nHELP FOO\r\nHELP STARTTLS\r\nHELP EXPN\r\n",
                R_NOHELP R_NOHELP R_NOHELP R_NOHELP, "READY"},
               {"NOOP\r\n", R_OK, "READY"}}},
    {.name = "HELP lists STARTTLS, then AUTH over TLS",
     .prm = &P_TLS,
     .steps = {{"HELP\r\n",
                "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP ETRN "
                "STARTTLS; HELP command for its syntax\r\n",
                "GREET"},
               S_STARTTLS,
               {"HELP\r\n",
                "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP ETRN "
                "AUTH; HELP command for its syntax\r\n",
                "GREET"}}},

    /* ---- BDAT (RFC 3030) ------------------------------------------------------------------ */
    {.name = "bdat: one LAST chunk is stored byte for byte; CRLF.CRLF and commands in it are "
             "content",
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE, R_MAIL R_RCPT, "RCPT"},
               {"BDAT 36 LAST\r\na\r\n.\r\nMAIL FROM:<x@evil.test>\r\n..x\r\n", R_QUEUED, "READY"},
               {"QUIT\r\n", R_BYE, "CLOSED"}},
     .msgs = {{"a@example.org", "alice@branch.test",
               "a\r\n.\r\nMAIL FROM:<x@evil.test>\r\n..x\r\n"}}},
    {.name = "bdat: pipelined chunks answered in order; CRLF split across chunks; 0 LAST",
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "BDAT 3\r\nab\rBDAT 4\r\n\nc\r\nBDAT 0 LAST\r\nQUIT\r\n",
                R_MAIL R_RCPT R_OCTETS(3) R_OCTETS(4) R_QUEUED R_BYE, "CLOSED"}},
     .msgs = {{"a@example.org", "alice@branch.test", "ab\r\nc\r\n"}}},
    {.name = "bdat: two transactions pipelined, the second waits for the first commit",
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE
                "BDAT 2 LAST\r\nhi" MAIL_A
                "RCPT TO:<bob@branch.test>\r\nBDAT 3\r\nyo!BDAT 2 LAST\r\n\r\nNOOP\r\n",
                R_MAIL R_RCPT R_QUEUED R_MAIL R_RCPT R_OCTETS(3) R_QUEUED R_OK, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", "hi"},
              {"a@example.org", "bob@branch.test", "yo!\r\n"}}},
    {.name = "bdat: BDAT 0 LAST alone is an empty message; 8BITMIME body",
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "BDAT 0 LAST\r\n", R_MAIL R_RCPT R_QUEUED, "READY"},
               {"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n" RCPT_ALICE
                "BDAT 7 LAST\r\ncaf\xc3\xa9\r\n",
                R_MAIL R_RCPT R_QUEUED, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", ""},
              {"a@example.org", "alice@branch.test", "caf\xc3\xa9\r\n", true}}},
    {.name = "bdat before EHLO, MAIL or RCPT: refused after its octets, which are not commands",
     .steps = {{"BDAT 6\r\nQUIT\r\n", R_BDAT_EHLO, "GREET"},
               S_EHLO,
               {"BDAT 6 LAST\r\nQUIT\r\n", R_BDAT_NOMAIL, "READY"},
               {MAIL_A "BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n", R_MAIL R_NORCPT R_OK, "MAIL"},
               {RCPT_ALICE "BDAT 0 LAST\r\n", R_RCPT R_QUEUED, "READY"},
               /* no size: nothing can be skipped, the next line is a command */
               {"BDAT x\r\nNOOP\r\n", "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n" R_OK, "READY"},
               /* after HELO, CHUNKING was not offered */
               S_HELO,
               {MAIL_A RCPT_ALICE "BDAT 4 LAST\r\nRSETNOOP\r\n", R_MAIL R_RCPT R_BDAT_EHLO R_OK,
                "RCPT"}},
     .msgs = {{"a@example.org", "alice@branch.test", ""}}},
    {.name = "bdat then DATA: 503; MAIL and RCPT refused between chunks; RSET drops the chunks",
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "BDAT 2\r\nab", R_MAIL R_RCPT R_OCTETS(2), "BDAT"},
               {"DATA\r\n", "503 5.5.1 DATA cannot follow BDAT in one transaction; send RSET\r\n",
                "BDAT"},
               {MAIL_A RCPT_ALICE "ETRN branch.test\r\n",
                "503 5.5.1 Bad sequence of commands\r\n503 5.5.1 Bad sequence of commands\r\n"
                "503 5.5.1 Bad sequence of commands\r\n",
                "BDAT"},
               {"NOOP\r\nRSET\r\n", R_OK R_OK, "READY"},
               {"BDAT 1 LAST\r\nx", R_BDAT_NOMAIL, "READY"},
               {MAIL_A RCPT_ALICE "DATA\r\nhi\r\n.\r\n", R_MAIL R_RCPT R_DATA R_QUEUED, "READY"},
               /* DATA and BDAT may follow each other in one session */
               {MAIL_A RCPT_ALICE "BDAT 3\r\nyo\nBDAT 1 LAST\r\n!",
                R_MAIL R_RCPT R_BARE_DATA R_BARE_DATA, "READY"},
               /* EHLO in the middle ends the transaction too */
               {MAIL_A RCPT_ALICE "BDAT 1\r\nz", R_MAIL R_RCPT R_OCTETS(1), "BDAT"},
               {"EHLO client.test\r\nBDAT 1 LAST\r\nz", EHLO_DEF R_BDAT_NOMAIL, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", "hi\r\n"}}},
    {.name = "bdat: the size limit holds while chunks arrive; 100 octets pass",
     .prm = &P_SMALL,
     .steps = {{"EHLO client.test\r\n",
                EHLO_HEAD "250-SIZE 100\r\n" EHLO_MID "250-ETRN\r\n250 HELP\r\n", "READY"},
               {MAIL_A RCPT_ALICE "BDAT 60\r\n" A10 A10 A10 A10 A10 A10, R_MAIL R_RCPT R_OCTETS(60),
                "BDAT"},
               {"BDAT 41\r\n" A10 A10 A10 A10 "a", R_SIZE100, "BDAT"},
               /* chunks already in the pipeline: discarded, same answer */
               {"BDAT 5\r\nhelloBDAT 2 LAST\r\nhi", R_SIZE100 R_SIZE100, "READY"},
               {MAIL_A RCPT_ALICE "BDAT 99\r\n" A90 "aaaaaaaaaBDAT 1 LAST\r\na",
                R_MAIL R_RCPT R_OCTETS(99) R_QUEUED, "READY"},
               {MAIL_A RCPT_ALICE "BDAT 101 LAST\r\n" A100 "a"
                                  "NOOP\r\n",
                R_MAIL R_RCPT R_SIZE100 R_OK, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", A100}}},
    {.name = "bdat: bare LF or CR refuses the message at the chunk; the stream stays in step",
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "BDAT 4\r\na\nb\r", R_MAIL R_RCPT R_BARE_DATA, "BDAT"},
               {"BDAT 3\r\nxyzBDAT 2 LAST\r\n\r\n", R_BARE_DATA R_BARE_DATA, "READY"},
               {MAIL_A RCPT_ALICE "BDAT 3 LAST\r\nab\r", R_MAIL R_RCPT R_BARE_DATA, "READY"},
               /* a client that miscounts: the octet past the chunk starts a command line */
               {MAIL_A RCPT_ALICE "BDAT 3 LAST\r\nab\r\n", R_MAIL R_RCPT R_BARE_DATA, "READY"},
               {"NOOP\r\n", R_BARE, "READY"},
               {"NOOP\r\n", R_OK, "READY"}}},
    {.name = "bdat: bare LF and CR normalised (bare_lf = normalise)",
     .prm = &P_NORM,
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "BDAT 4\r\na\nb\rBDAT 1 LAST\r\nc",
                R_MAIL R_RCPT R_OCTETS(4) R_QUEUED, "READY"},
               {MAIL_A RCPT_ALICE "BDAT 2 LAST\r\nx\r", R_MAIL R_RCPT R_QUEUED, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", "a\r\nb\r\nc"},
              {"a@example.org", "alice@branch.test", "x\r\n"}}},
    {.name = "bdat: text line of 1000 octets passes, 1001 do not",
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "BDAT 1000 LAST\r\n" A500 A100 A100 A100 A100 A90 "aaaaaaaa\r\n",
                R_MAIL R_RCPT R_QUEUED, "READY"},
               {MAIL_A RCPT_ALICE "BDAT 1001\r\n" A500 A100 A100 A100 A100 A90 "aaaaaaaaa\r\n"
                                  "BDAT 0 LAST\r\n",
                R_MAIL R_RCPT R_LONG_DATA R_LONG_DATA, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", A500 A100 A100 A100 A100 A90 "aaaaaaaa\r\n"}}},
    {.name = "bdat: chunks after a failed one are not bad commands; refused BDATs are",
     .prm = &P_BAD3,
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "BDAT 2\r\n\n\nBDAT 1\r\nxBDAT 1\r\nxBDAT 1\r\nxBDAT 1 "
                                  "LAST\r\nxNOOP\r\n",
                R_MAIL R_RCPT R_BARE_DATA R_BARE_DATA R_BARE_DATA R_BARE_DATA R_BARE_DATA R_OK,
                "READY"},
               {"BDAT 1\r\nxBDAT 1\r\nx", R_BDAT_NOMAIL R_BDAT_NOMAIL, "READY"},
               {"BDAT 1\r\nxNOOP\r\n", R_BDAT_NOMAIL R_CLOSE_BAD, "CLOSED"}}},
    {.name = "bdat: timeout inside a chunk",
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "BDAT 10\r\nabc", R_MAIL R_RCPT, "CHUNK"},
               {EV_TIMEOUT, "421 4.4.2 Timeout exceeded, closing connection\r\n", "CLOSED"}}},
    {.name = "bdat: the commit fails",
     .commit_status = -ENOSPC,
     .steps = {S_EHLO,
               {MAIL_A RCPT_ALICE "BDAT 1\r\nxBDAT 2 LAST\r\n\r\nNOOP\r\n",
                R_MAIL R_RCPT R_OCTETS(
                    1) "452 4.3.1 Insufficient system storage, try again later\r\n" R_OK,
                "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", "x\r\n"}}},
    {.name = "max_bad_commands (3): 421 and close",
     .prm = &P_BAD3,
     .steps = {S_HELO,
               {"FOO\r\n", R_UNKNOWN, "READY"},
               {RCPT_ALICE, "503 5.5.1 *\r\n", "READY"},
               {"BAR\r\nNOOP\r\n", R_UNKNOWN R_CLOSE_BAD, "CLOSED"},
               {"NOOP\r\n", "", "CLOSED"}}},
    {.name = "refused recipients do not count as bad commands",
     .prm = &P_BAD3,
     .steps = {S_HELO,
               {MAIL_A "RCPT TO:<a@elsewhere.test>\r\nRCPT TO:<eve@branch.test>\r\n"
                       "RCPT TO:<a%b@branch.test>\r\nRCPT TO:<b@elsewhere.test>\r\nNOOP\r\n",
                R_MAIL R_RELAY("a@elsewhere.test") "550 5.1.1 *\r\n" R_TRICK R_RELAY(
                    "b@elsewhere.test") R_OK,
                "MAIL"}}},
    {.name = "QUIT", .steps = {{"QUIT\r\nNOOP\r\n", R_BYE, "CLOSED"}, {"NOOP\r\n", "", "CLOSED"}}},
    {.name = "QUIT inside a transaction",
     .steps = {S_HELO, {MAIL_A RCPT_ALICE "QUIT\r\n", R_MAIL R_RCPT R_BYE, "CLOSED"}}},
    {.name = "timeout waiting for a command",
     .steps = {S_HELO,
               {EV_TIMEOUT, "421 4.4.2 Timeout exceeded, closing connection\r\n", "CLOSED"},
               {"NOOP\r\n", "", "CLOSED"}}},
    {.name = "timeout in DATA",
     .steps = {S_HELO,
               {MAIL_A RCPT_ALICE "DATA\r\npartial\r\n", R_MAIL R_RCPT R_DATA, "DATA"},
               {EV_TIMEOUT, "421 4.4.2 Timeout exceeded, closing connection\r\n", "CLOSED"}}},
    {.name = "commit fails: queue full",
     .commit_status = -ENOSPC,
     .steps = {S_HELO,
               {MAIL_A RCPT_ALICE "DATA\r\nx\r\n.\r\nNOOP\r\n",
                R_MAIL R_RCPT R_DATA
                "452 4.3.1 Insufficient system storage, try again later\r\n" R_OK,
                "READY"},
               {MAIL_A, R_MAIL, "MAIL"}},
     .msgs = {{"a@example.org", "alice@branch.test", "x\r\n"}}},
    {.name = "commit fails: other error",
     .commit_status = -EIO,
     .steps = {S_HELO,
               {MAIL_A RCPT_ALICE "DATA\r\nx\r\n.\r\n",
                R_MAIL R_RCPT R_DATA "451 4.3.0 Local error in processing, try again later\r\n",
                "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", "x\r\n"}}},

    /* ---- STARTTLS ------------------------------------------------------------------------ */
    {.name = "STARTTLS: bytes after it in the same packet are discarded, EHLO again",
     .prm = &P_TLS,
     .steps = {S_EHLO_TLS,
               {"STARTTLS\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@branch.test>\r\n",
                "220 2.0.0 Ready to start TLS\r\n", "GREET"},
               {MAIL_A, "503 5.5.1 Send HELO or EHLO first\r\n", "GREET"},
               S_EHLO_AUTH,
               {"STARTTLS\r\n", "503 5.5.1 TLS already active\r\n", "READY"},
               {MAIL_A RCPT_ALICE "DATA\r\nx\r\n.\r\n", R_MAIL R_RCPT R_DATA R_QUEUED, "READY"}},
     .msgs = {{"a@example.org", "alice@branch.test", "x\r\n"}}},
    {.name = "STARTTLS discards a transaction and a partial line",
     .prm = &P_TLS,
     .steps = {S_EHLO_TLS,
               {MAIL_A "STARTTLS\r\nRCPT TO:<alice@bra", R_MAIL "220 2.0.0 Ready to start TLS\r\n",
                "GREET"},
               {"HELO client.test\r\n" RCPT_ALICE, "250 mx.test\r\n" R_NEEDMAIL, "READY"}}},
    {.name = "STARTTLS before EHLO, with an argument, unavailable",
     .prm = &P_TLS,
     .steps = {{"STARTTLS x\r\n", "501 5.5.4 *\r\n", "GREET"},
               {"STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n", "GREET"},
               S_EHLO_AUTH}},
    {.name = "STARTTLS not offered",
     .steps = {S_EHLO, {"STARTTLS\r\n", "502 5.5.1 STARTTLS not available\r\n", "READY"}}},

    /* ---- AUTH ---------------------------------------------------------------------------- */
    {.name = "AUTH PLAIN with initial response, then submission",
     .prm = &P_TLS,
     .steps = {S_TLS_AUTH,
               {"EHLO client.test\r\n",
                EHLO_HEAD "250-SIZE 1000000\r\n" EHLO_MID "250-ETRN\r\n250 HELP\r\n", "READY"},
               {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "503 5.5.1 Already authenticated\r\n",
                "READY"},
               {MAIL_A "RCPT TO:<x@elsewhere.test>\r\nRCPT TO:<y@sub.elsewhere.test>\r\n"
                       "RCPT TO:<eve@branch.test>\r\nRCPT TO:<a%b@branch.test>\r\n"
                       "DATA\r\nx\r\n.\r\n",
                R_MAIL R_RCPT R_RCPT
                "550 5.1.1 <eve@branch.test>: Recipient address rejected: user unknown\r\n" R_TRICK
                    R_DATA R_QUEUED,
                "READY"}},
     .msgs = {{"a@example.org", "x@elsewhere.test,y@sub.elsewhere.test", "x\r\n"}}},
    /* smtpd_verbs.c: "never through %-hacks or bang paths, which stay refused" (README: 550 5.7.1,
     * a downstream MTA might route them elsewhere) -- also for other domains. */
    {.name = "submission: %-hack and bang path to another domain stay refused",
     .prm = &P_TLS,
     .steps = {S_TLS_AUTH,
               {MAIL_A "RCPT TO:<z%w@elsewhere.test>\r\nRCPT TO:<w!z@elsewhere.test>\r\n"
                       "RCPT TO:<\"z@w\"@elsewhere.test>\r\n",
                R_MAIL R_TRICK R_TRICK R_TRICK, "MAIL"}}},
    {.name = "authenticated relay refused without submission",
     .prm = &P_TLS_NOSUB,
     .steps = {S_TLS_AUTH,
               {MAIL_A "RCPT TO:<x@elsewhere.test>\r\n" RCPT_ALICE,
                R_MAIL R_RELAY("x@elsewhere.test") R_RCPT, "RCPT"}}},
    /* Relaying is a right given per user: submission_users empty means nobody. */
    {.name = "authenticated relay refused when submission_users is empty",
     .prm = &P_TLS_SUB_NOBODY,
     .steps = {S_TLS_AUTH,
               {MAIL_A "RCPT TO:<x@elsewhere.test>\r\n" RCPT_ALICE,
                R_MAIL R_RELAY("x@elsewhere.test") R_RCPT, "RCPT"}}},
    {.name = "authenticated relay refused when submission_users names others (no prefix match)",
     .prm = &P_TLS_SUB_OTHERS,
     .steps = {S_TLS_AUTH,
               {MAIL_A "RCPT TO:<x@elsewhere.test>\r\n" RCPT_ALICE,
                R_MAIL R_RELAY("x@elsewhere.test") R_RCPT, "RCPT"}}},
    {.name = "submission_users = * lets every authenticated user relay",
     .prm = &P_TLS_SUB_ALL,
     .steps = {S_TLS_AUTH,
               {MAIL_A "RCPT TO:<x@elsewhere.test>\r\n", R_MAIL R_RCPT, "RCPT"}}},
    /* RFC 4954 4 and 8: continue-req = "334" SP [base64] CRLF; the space is required even
     * when the challenge is empty (smtpd_auth.c's comment at the 334 says so too). */
    {.name = "AUTH PLAIN with 334 continuation: success, cancel, bad base64, bare LF",
     .prm = &P_TLS,
     .steps = {S_EHLO_TLS,
               S_STARTTLS,
               S_EHLO_AUTH,
               {"AUTH PLAIN\r\n*\r\n", "334 \r\n501 5.0.0 Authentication cancelled\r\n", "READY"},
               {"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA\r\n", "334 \r\n501 5.5.2 *\r\n", "READY"},
               {"AUTH PLAIN\r\nAGFsaW\nNlAHNlY3JldA==\r\n", "334 \r\n501 5.5.2 *\r\n", "READY"},
               {"AUTH PLAIN\r\n", "334 \r\n", "AUTH"},
               {"AGFsaWNlAHNlY3JldA==\r\n", R_AUTH_OK, "READY"}}},
    {.name = "AUTH LOGIN, with and without initial response",
     .prm = &P_TLS,
     .steps = {S_EHLO_TLS,
               S_STARTTLS,
               S_EHLO_AUTH,
               {"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n", "AUTH"},
               {"YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n", "AUTH"},
               {"d3Jvbmc=\r\n", R_AUTH_BAD, "READY"},
               {"auth login YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n", "AUTH"},
               {"c2VjcmV0\r\n", R_AUTH_OK, "READY"}}},
    {.name = "AUTH failures: wrong password, temporary failure, other authzid",
     .prm = &P_TLS,
     .steps = {S_EHLO_TLS,
               S_STARTTLS,
               S_EHLO_AUTH,
               {"AUTH PLAIN AGFsaWNlAHdyb25n\r\n", R_AUTH_BAD, "READY"},
               {"AUTH PLAIN AHRlbXBmYWlsAHg=\r\n", "454 4.7.0 *\r\n", "READY"},
               {"AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n", R_AUTH_BAD, "READY"},
               {"AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\n", R_AUTH_OK, "READY"}}},
    {.name = "AUTH LOGIN cancel, bad base64, unknown mechanism, pipelined",
     .prm = &P_TLS,
     .steps = {S_EHLO_TLS,
               S_STARTTLS,
               S_EHLO_AUTH,
               {"AUTH LOGIN\r\n*\r\n", "334 VXNlcm5hbWU6\r\n501 5.0.0 Authentication cancelled\r\n",
                "READY"},
               {"AUTH LOGIN YWxpY2U=\r\n*\r\n",
                "334 UGFzc3dvcmQ6\r\n501 5.0.0 Authentication cancelled\r\n", "READY"},
               {"AUTH LOGIN\r\nYWxpY2U\r\n", "334 VXNlcm5hbWU6\r\n501 5.5.2 *\r\n", "READY"},
               {"AUTH PLAIN !!!!\r\n", "501 5.5.*\r\n", "READY"},
               {"AUTH PLAIN AGFsaWNlAHNlY3JldA\r\n", "501 5.5.2 *\r\n", "READY"},
               {"AUTH XOAUTH2 abc=\r\n", "504 5.5.4 *\r\n", "READY"},
               {"AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\nNOOP\r\n",
                "334 UGFzc3dvcmQ6\r\n" R_AUTH_OK R_OK, "READY"}}},
    {.name = "AUTH before TLS: 538",
     .prm = &P_TLS,
     .steps = {{"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "538 5.7.11 *\r\n", "GREET"},
               S_EHLO_TLS,
               {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
                "READY"},
               {"AUTH LOGIN\r\n", "538 5.7.11 *\r\n", "READY"}}},
    {.name = "AUTH not available, before EHLO, inside a transaction",
     .prm = &P_TLS,
     .steps = {S_EHLO_TLS,
               S_STARTTLS,
               {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "503 5.5.1 Send EHLO first\r\n", "GREET"},
               S_EHLO_AUTH,
               {MAIL_A "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                R_MAIL "503 5.5.1 AUTH not allowed inside a mail transaction\r\n", "MAIL"}}},
    {.name = "AUTH without a credentials file",
     .prm = &P_TLS_NOAUTH,
     .steps = {S_EHLO_TLS,
               {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "502 5.5.1 AUTH not available\r\n",
                "READY"}}},

    /* ---- ETRN ---------------------------------------------------------------------------- */
    {.name = "ETRN, pipelined commands wait for its answer",
     .etrn_arg = "#offices",
     .steps = {S_EHLO,
               {"ETRN branch.test\r\nNOOP\r\n", "250 2.0.0 Queuing started\r\n" R_OK, "READY"},
               {"ETRN @backup.test\r\nETRN #offices\r\n",
                "250 2.0.0 Queuing started\r\n250 2.0.0 Queuing started\r\n", "READY"}}},
    {.name = "ETRN refused: before HELO, in a transaction, syntax",
     .steps = {{"ETRN branch.test\r\n", "503 5.5.1 Send HELO or EHLO first\r\n", "GREET"},
               S_EHLO,
               {"ETRN\r\n", "501 5.5.4 *\r\n", "READY"},
               {"ETRN a.test b.test\r\n", "501 5.5.4 *\r\n", "READY"},
               {MAIL_A "ETRN branch.test\r\n",
                R_MAIL "503 5.5.1 ETRN not allowed inside a mail transaction\r\n", "MAIL"},
               {RCPT_ALICE "ETRN branch.test\r\n",
                R_RCPT "503 5.5.1 ETRN not allowed inside a mail transaction\r\n", "RCPT"}}},

    /* ---- ODMR (RFC 2645) ----------------------------------------------------------------- */
    {.name = "odmr: EHLO offers AUTH CRAM-MD5 and ATRN; mail is refused",
     .prm = &P_ODMR,
     .steps = {{"ATRN\r\n", "503 5.5.1 Send EHLO first\r\n", "GREET"},
               {"EHLO client.test\r\n", EHLO_ODMR, "READY"},
               {"ATRN branch.test\r\n", "530 5.7.0 Authentication required\r\n", "READY"},
               {MAIL_A RCPT_ALICE "DATA\r\nETRN branch.test\r\nBDAT 3 LAST\r\n",
                R_ODMR_NOMAIL("MAIL") R_ODMR_NOMAIL("RCPT") R_ODMR_NOMAIL("DATA")
                    R_ODMR_NOMAIL("ETRN") R_ODMR_NOMAIL("BDAT"),
                "READY"},
               {"RSET\r\n", R_OK, "READY"}}},
    {.name = "odmr: AUTH refusals before TLS, TURN, HELP",
     .prm = &P_ODMR,
     .steps = {{"EHLO client.test\r\n", EHLO_ODMR, "READY"},
               {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
                "READY"},
               {"AUTH CRAM-MD5 xyz\r\n", "501 5.5.4 CRAM-MD5 takes no initial response\r\n",
                "READY"},
               {"AUTH DIGEST-MD5\r\n",
                "504 5.5.4 Unrecognized authentication type (CRAM-MD5 offered; PLAIN and LOGIN "
                "after STARTTLS)\r\n",
                "READY"},
               {"TURN\r\n", "502 5.5.1 TURN refused: *\r\n", "READY"},
               {"HELP\r\n",
                "214 2.0.0 Commands: HELO EHLO RSET NOOP QUIT VRFY HELP STARTTLS AUTH ATRN; HELP "
                "command for its syntax\r\n",
                "READY"}}},
    {.name = "odmr: CRAM-MD5, wrong digest, cancel, then right; ATRN reverses",
     .prm = &P_ODMR,
     .steps = {{"EHLO client.test\r\n", EHLO_ODMR, "READY"},
               {"AUTH CRAM-MD5\r\n", CRAM_CHAL, "AUTH"},
               {CRAM_WRONG, R_AUTH_BAD, "READY"},
               {"AUTH CRAM-MD5\r\n", CRAM_CHAL, "AUTH"},
               {"*\r\n", "501 5.0.0 Authentication cancelled\r\n", "READY"},
               {"AUTH CRAM-MD5\r\n", CRAM_CHAL, "AUTH"},
               {"YWxpY2UgMDEyMw==\r\n", "501 5.5.2 *\r\n", "READY"}, /* "alice 0123" */
               {"AUTH CRAM-MD5\r\n" CRAM_ALICE, CRAM_CHAL R_AUTH_OK, "READY"},
               {"EHLO client.test\r\n",
                "250-mx.test Hello client.test [127.0.0.1]\r\n250-ENHANCEDSTATUSCODES\r\n"
                "250-STARTTLS\r\n250-ATRN\r\n250 HELP\r\n",
                "READY"},
               {"ATRN other.test\r\n", "450 4.7.1 ATRN request refused\r\n", "READY"},
               {"ATRN none.test\r\n", "453 4.2.0 You have no mail\r\n", "READY"},
               {"ATRN busy.test\r\n", "451 4.3.0 Unable to process ATRN request now\r\n",
                "READY"},
               {"ATRN a..test\r\n", "501 5.5.4 Syntax error in ATRN\r\n", "READY"},
               {"ATRN branch.test,Second.test\r\nQUIT\r\n", R_REVERSE, "REVERSED"}},
     .etrn_arg = "branch.test,Second.test"},
    {.name = "odmr: PLAIN after STARTTLS, ATRN without argument",
     .prm = &P_ODMR,
     .steps = {{"EHLO client.test\r\n", EHLO_ODMR, "READY"},
               S_STARTTLS,
               {"EHLO client.test\r\n", EHLO_ODMR_TLS, "READY"},
               {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", R_AUTH_OK, "READY"},
               {"ATRN\r\n", R_REVERSE, "REVERSED"}}},
    {.name = "odmr without CRAM secrets: AUTH only after TLS",
     .prm = &P_ODMR_NOCRAM,
     .steps = {{"EHLO client.test\r\n",
                "250-mx.test Hello client.test [127.0.0.1]\r\n250-ENHANCEDSTATUSCODES\r\n"
                "250-STARTTLS\r\n250-ATRN\r\n250 HELP\r\n",
                "READY"},
               {"AUTH CRAM-MD5\r\n",
                "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
                "READY"}}},
    {.name = "smtp port: ATRN names the ODMR port, TURN refused, ATRN not in HELP",
     .prm = &P_SMTP_ODMR,
     .steps = {S_EHLO,
               {"ATRN branch.test\r\n",
                "502 5.5.1 ATRN is served on the ODMR port 192.0.2.1:366, not here (RFC 2645)\r\n",
                "READY"},
               {"TURN\r\n",
                "502 5.5.1 TURN refused: it gives mail to whoever asks; use ETRN, or AUTH and "
                "ATRN (RFC 2645)\r\n",
                "READY"},
               {"HELP ATRN\r\n", R_NOHELP, "READY"}}},
    {.name = "smtp port without ODMR: ATRN not offered",
     .steps = {S_EHLO,
               {"ATRN\r\n", "502 5.5.1 ATRN not offered: this relay has no ODMR listener; use "
                             "ETRN\r\n",
                "READY"}}},
};

/* ---- the driver ------------------------------------------------------------------------ */

enum split_mode { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_TWO };

struct drv {
    const struct dcase *c;
    struct smtpd s;
    bool defer;         /* answer at the end of the step instead of at once */
    char stream[65536]; /* every byte delivered to the glue */
    size_t fed, consumed;
    bool closed;    /* SMTPD_ACT_CLOSE seen: nothing more is read */
    bool skip_rest; /* STARTTLS seen: the rest of this step is dropped */
    unsigned owe;   /* actions waiting for their answer */
    char *auth_user, *auth_pass;
    char etrn_arg[SMTP_CMD_LINE_MAX + 1];
    bool auth_cram;
    char replies[65536];
    size_t rlen;
    struct smtpd_msg *msgs[8];
    size_t nmsgs;
    char where[200]; /* case, mode and step, for failure messages */
    bool active;     /* holds a session and messages to release */
};

static bool st_waiting(enum smtpd_state st)
{
    return st == SMTPD_ST_COMMIT || st == SMTPD_ST_WAIT || st == SMTPD_ST_CLOSED ||
           st == SMTPD_ST_TLS || st == SMTPD_ST_REVERSED;
}

/* Takes the replies and actions out of s.out, as the glue does after every event. */
static void collect(struct drv *d)
{
    struct smtpd_out *o = &d->s.out;
    if (d->rlen + o->len > sizeof(d->replies))
        fail_msg("%s: replies overflow", d->where);
    if (o->len)
        memcpy(d->replies + d->rlen, o->buf, o->len);
    d->rlen += o->len;
    unsigned act = o->act;
    if (act & SMTPD_ACT_COMMIT) {
        if (d->s.st != SMTPD_ST_COMMIT)
            fail_msg("%s: COMMIT in state %s", d->where, smtpd_state_name(d->s.st));
        struct smtpd_msg *m = smtpd_take_message(&d->s);
        assert_non_null(m);
        assert_true(d->nmsgs < sizeof(d->msgs) / sizeof(d->msgs[0]));
        d->msgs[d->nmsgs++] = m;
        d->owe |= SMTPD_ACT_COMMIT;
    }
    if (act & SMTPD_ACT_ETRN) {
        if (d->s.st != SMTPD_ST_WAIT)
            fail_msg("%s: ETRN in state %s", d->where, smtpd_state_name(d->s.st));
        memcpy(d->etrn_arg, o->etrn_arg, sizeof(d->etrn_arg));
        d->owe |= SMTPD_ACT_ETRN;
    }
    if (act & SMTPD_ACT_ATRN) {
        if (d->s.st != SMTPD_ST_WAIT)
            fail_msg("%s: ATRN in state %s", d->where, smtpd_state_name(d->s.st));
        memcpy(d->etrn_arg, o->etrn_arg, sizeof(d->etrn_arg));
        d->owe |= SMTPD_ACT_ATRN;
    }
    if (act & SMTPD_ACT_REVERSE) {
        /* The glue hands the connection over: nothing more is read as commands. */
        if (d->s.st != SMTPD_ST_REVERSED)
            fail_msg("%s: REVERSE in state %s", d->where, smtpd_state_name(d->s.st));
        d->closed = true;
    }
    if (act & SMTPD_ACT_AUTH) {
        if (d->s.st != SMTPD_ST_WAIT)
            fail_msg("%s: AUTH in state %s", d->where, smtpd_state_name(d->s.st));
        d->auth_cram = o->auth_cram;
        assert_non_null(o->auth_user);
        assert_non_null(o->auth_pass);
        free(d->auth_user);
        free(d->auth_pass);
        d->auth_user = o->auth_user; /* the glue takes them */
        d->auth_pass = o->auth_pass;
        o->auth_user = o->auth_pass = NULL;
        d->owe |= SMTPD_ACT_AUTH;
    }
    if (act & SMTPD_ACT_STARTTLS) {
        if (d->s.st != SMTPD_ST_TLS)
            fail_msg("%s: STARTTLS in state %s", d->where, smtpd_state_name(d->s.st));
        /* smtpd stopped right after the STARTTLS line: nothing after it was consumed. */
        if (d->consumed < 10 || strncasecmp(d->stream + d->consumed - 10, "STARTTLS\r\n", 10))
            fail_msg("%s: STARTTLS action, but the input consumed does not end with it", d->where);
        static const char r220[] = "220 2.0.0 Ready to start TLS\r\n";
        if (d->rlen < sizeof(r220) - 1 ||
            memcmp(d->replies + d->rlen - (sizeof(r220) - 1), r220, sizeof(r220) - 1))
            fail_msg("%s: STARTTLS action without 220 as the last reply", d->where);
        d->consumed = d->fed; /* the glue discards what it holds */
        d->skip_rest = true;  /* and what follows in this step would be TLS */
        d->owe |= SMTPD_ACT_STARTTLS;
    }
    if (act & SMTPD_ACT_CLOSE) {
        if (d->s.st != SMTPD_ST_CLOSED)
            fail_msg("%s: CLOSE in state %s", d->where, smtpd_state_name(d->s.st));
        d->closed = true;
    }
    smtpd_out_reset(&d->s);
    assert_int_equal(d->s.out.len, 0);
    assert_int_equal(d->s.out.act, 0);
}

/* Gives every answer the session waits for. */
static void answer(struct drv *d)
{
    unsigned owe = d->owe;
    d->owe = 0;
    if (owe & SMTPD_ACT_COMMIT)
        smtpd_committed(&d->s, d->c->commit_status, "ID");
    if (owe & SMTPD_ACT_ETRN)
        smtpd_etrn_done(&d->s, 250, "2.0.0", "Queuing started");
    if (owe & SMTPD_ACT_ATRN) {
        /* The release of this test: branch.test (and second.test) have mail, none.test has
         * none, busy.test is being released, anything else is not alice's. */
        const char *a = d->etrn_arg;
        if (a[0] == '\0' || strcmp(a, "branch.test,Second.test") == 0)
            smtpd_atrn_done(&d->s, 250, "2.0.0", "OK now reversing the connection");
        else if (strcmp(a, "none.test") == 0)
            smtpd_atrn_done(&d->s, 453, "4.2.0", "You have no mail");
        else if (strcmp(a, "busy.test") == 0)
            smtpd_atrn_done(&d->s, 451, "4.3.0", "Unable to process ATRN request now");
        else
            smtpd_atrn_done(&d->s, 450, "4.7.1", "ATRN request refused");
    }
    if (owe & SMTPD_ACT_AUTH) {
        /* The credentials store of this test: alice / secret (CRAM-MD5 too, against the
         * session's own challenge); "tempfail" cannot be checked. */
        bool ok = strcmp(d->auth_user, "alice") == 0 &&
                  (d->auth_cram ? cram_md5_check(d->auth_pass, "secret", 6, d->s.cram_chal,
                                                 strlen(d->s.cram_chal))
                                : strcmp(d->auth_pass, "secret") == 0);
        bool temp = strcmp(d->auth_user, "tempfail") == 0;
        smtpd_auth_done(&d->s, ok, temp, d->auth_user);
        free(d->auth_user);
        free(d->auth_pass);
        d->auth_user = d->auth_pass = NULL;
    }
    if (owe & SMTPD_ACT_STARTTLS) {
        smtpd_tls_ready(&d->s, 0, "TLSv1.3 X");
        assert_true(d->s.tls);
        assert_string_equal(d->s.tls_info, "TLSv1.3 X");
        assert_int_equal(d->s.st, SMTPD_ST_GREET);
    }
    collect(d);
}

/* Feeds what the glue holds until the session must wait (or, answering at once, until
 * nothing moves). */
static void pump(struct drv *d)
{
    for (;;) {
        bool moved = false;
        if (!d->closed) {
            size_t avail = d->fed - d->consumed;
            /* Exactly the bytes offered, so an overread is an ASan error. */
            char *buf = malloc(avail ? avail : 1);
            assert_non_null(buf);
            memcpy(buf, d->stream + d->consumed, avail);
            enum smtpd_state before = d->s.st;
            size_t n = smtpd_input(&d->s, buf, avail);
            free(buf);
            if (n > avail)
                fail_msg("%s: consumed %zu of %zu", d->where, n, avail);
            if (n < avail && !st_waiting(d->s.st))
                fail_msg("%s: consumed %zu of %zu in state %s", d->where, n, avail,
                         smtpd_state_name(d->s.st));
            if (d->owe && (n != 0 || d->s.out.len != 0 || d->s.st != before))
                fail_msg("%s: input taken while waiting for an answer", d->where);
            d->consumed += n;
            moved = n > 0;
            collect(d);
        }
        if (d->owe && !d->defer) {
            answer(d);
            moved = true;
        }
        if (!moved)
            return;
    }
}

static void deliver(struct drv *d, const char *p, size_t n)
{
    if (d->skip_rest || d->closed || n == 0)
        return;
    if (d->fed + n > sizeof(d->stream))
        fail_msg("%s: stream overflow", d->where);
    memcpy(d->stream + d->fed, p, n);
    d->fed += n;
    pump(d);
}

/* Appends s to out (size sz, at *o) with control characters escaped. */
static void esc(char *out, size_t sz, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < sz; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r')
            o += (size_t)snprintf(out + o, sz - o, "\\r");
        else if (ch == '\n')
            o += (size_t)snprintf(out + o, sz - o, "\\n");
        else if (ch < 32 || ch >= 127)
            o += (size_t)snprintf(out + o, sz - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
}

/* Compares the replies with the expectation: line by line, exact, or a prefix where the
 * expected line ends in '*'. */
static bool replies_match(const char *exp, const char *got, size_t glen)
{
    size_t e = 0, g = 0, elen = strlen(exp);
    while (e < elen) {
        const char *ee = strstr(exp + e, "\r\n");
        assert_non_null(ee); /* the table's lines end in CRLF */
        size_t el = (size_t)(ee - (exp + e));
        const char *ge = memmem(got + g, glen - g, "\r\n", 2);
        if (!ge)
            return false;
        size_t gl = (size_t)(ge - (got + g));
        if (el > 0 && exp[e + el - 1] == '*') {
            if (gl < el - 1 || memcmp(exp + e, got + g, el - 1) != 0)
                return false;
        } else if (gl != el || memcmp(exp + e, got + g, el) != 0) {
            return false;
        }
        e += el + 2;
        g += gl + 2;
    }
    return g == glen;
}

static void check_step(struct drv *d, const struct step *st)
{
    if (st->out && !replies_match(st->out, d->replies, d->rlen)) {
        static char e1[8192], e2[8192];
        esc(e1, sizeof(e1), st->out, strlen(st->out));
        esc(e2, sizeof(e2), d->replies, d->rlen);
        fail_msg("%s: replies differ\n  expected: %s\n  got:      %s", d->where, e1, e2);
    }
    if (st->st && strcmp(smtpd_state_name(d->s.st), st->st) != 0)
        fail_msg("%s: state %s, expected %s", d->where, smtpd_state_name(d->s.st), st->st);
    d->rlen = 0;
}

static void check_msgs(struct drv *d)
{
    const struct dcase *c = d->c;
    size_t want = 0;
    while (want < sizeof(c->msgs) / sizeof(c->msgs[0]) && c->msgs[want].from)
        want++;
    if (d->nmsgs != want)
        fail_msg("%s: %zu messages committed, expected %zu", d->where, d->nmsgs, want);
    for (size_t i = 0; i < want; i++) {
        const struct emsg *e = &c->msgs[i];
        const struct smtpd_msg *m = d->msgs[i];
        char rc[1024];
        size_t o = 0;
        rc[0] = '\0';
        for (size_t j = 0; j < m->nrcpt; j++)
            o += (size_t)snprintf(rc + o, sizeof(rc) - o, "%s%s", j ? "," : "", m->rcpts[j].addr);
        if (strcmp(m->sender, e->from) != 0 || strcmp(rc, e->rcpts) != 0)
            fail_msg("%s: message %zu envelope <%s> -> %s, expected <%s> -> %s", d->where, i,
                     m->sender, rc, e->from, e->rcpts);
        assert_int_equal(m->head, SMTPD_BODY_HEADROOM);
        assert_non_null(m->buf);
        if (m->len != strlen(e->body) || memcmp(m->buf + m->head, e->body, m->len) != 0) {
            static char e1[4096], e2[4096];
            esc(e1, sizeof(e1), e->body, strlen(e->body));
            esc(e2, sizeof(e2), m->buf + m->head, m->len);
            fail_msg("%s: message %zu body differs\n  expected: %s\n  got:      %s", d->where, i,
                     e1, e2);
        }
        if (m->eight_bit != e->eight_bit)
            fail_msg("%s: message %zu eight_bit %d, expected %d", d->where, i, m->eight_bit,
                     e->eight_bit);
    }
}

static const char *const mode_names[] = {"whole", "byte by byte", "split"};

/* Runs case c once: steps whole, except step split_step which is cut as mode says (at
 * offset cut for SPLIT_TWO); SPLIT_BYTES cuts every step into bytes. */
/* The session of the run in progress; file scope so a failed run's memory can still be
 * released (cmocka leaves a failed test with a longjmp). 128 KiB: not on the stack. */
static struct drv g_drv;

static void drv_release(struct drv *d)
{
    if (!d->active)
        return;
    for (size_t i = 0; i < d->nmsgs; i++)
        smtpd_msg_free(d->msgs[i]);
    d->nmsgs = 0;
    free(d->auth_user);
    free(d->auth_pass);
    d->auth_user = d->auth_pass = NULL;
    smtpd_close(&d->s);
    d->active = false;
}

static int dialogue_teardown(void **state)
{
    (void)state;
    drv_release(&g_drv);
    return 0;
}

static void run_case(const struct dcase *c, enum split_mode mode, size_t split_step, size_t cut,
                     bool defer)
{
    struct drv *dp = &g_drv;
    drv_release(dp); /* a failed run before this one left its session */
    memset(dp, 0, sizeof(*dp));
    dp->active = true;
    dp->c = c;
    dp->defer = defer;
    smtpd_init(&dp->s, c->prm ? c->prm : &P_DEF, g_policy, 7, "127.0.0.1");
    assert_int_equal(dp->s.st, SMTPD_ST_GREET);
    snprintf(dp->where, sizeof(dp->where), "case \"%s\", greeting", c->name);
    collect(dp);
    static const struct step greet = {"", "220 mx.test ESMTP holdfast\r\n", "GREET"};
    check_step(dp, &greet);

    for (size_t i = 0; i < sizeof(c->steps) / sizeof(c->steps[0]) && c->steps[i].in; i++) {
        const struct step *st = &c->steps[i];
        snprintf(dp->where, sizeof(dp->where), "case \"%s\", %s%s, step %zu", c->name,
                 mode_names[mode], defer ? ", late answers" : "", i);
        if (mode == SPLIT_TWO && i == split_step)
            snprintf(dp->where + strlen(dp->where), sizeof(dp->where) - strlen(dp->where),
                     " cut at %zu", cut);
        if (st->in == EV_TIMEOUT) {
            if (!dp->closed) {
                smtpd_timeout(&dp->s);
                collect(dp);
            }
        } else {
            size_t n = strlen(st->in);
            if (mode == SPLIT_BYTES) {
                for (size_t k = 0; k < n; k++)
                    deliver(dp, st->in + k, 1);
            } else if (mode == SPLIT_TWO && i == split_step) {
                deliver(dp, st->in, cut);
                deliver(dp, st->in + cut, n - cut);
            } else {
                deliver(dp, st->in, n);
            }
        }
        dp->skip_rest = false;
        /* Late answers: they arrive after the whole step; the session then takes what the
         * glue held meanwhile, which may need further answers. */
        while (dp->owe) {
            answer(dp);
            pump(dp);
        }
        check_step(dp, st);
    }
    snprintf(dp->where, sizeof(dp->where), "case \"%s\", %s%s", c->name, mode_names[mode],
             defer ? ", late answers" : "");
    check_msgs(dp);
    if (c->etrn_arg)
        assert_string_equal(dp->etrn_arg, c->etrn_arg);
    else if (dp->etrn_arg[0])
        fail_msg("%s: unexpected ETRN %s", dp->where, dp->etrn_arg);
    drv_release(dp);
    assert_int_equal(dp->s.st, SMTPD_ST_CLOSED);
}

/* One cmocka test per case: whole and byte by byte, then every step cut in two at every
 * offset; each with answers at once and late. */
static void test_dialogue(void **state)
{
    const struct dcase *c = *state;
    for (int defer = 0; defer < 2; defer++) {
        run_case(c, SPLIT_WHOLE, 0, 0, defer);
        run_case(c, SPLIT_BYTES, 0, 0, defer);
        for (size_t i = 0; i < sizeof(c->steps) / sizeof(c->steps[0]) && c->steps[i].in; i++) {
            if (c->steps[i].in == EV_TIMEOUT)
                continue;
            size_t n = strlen(c->steps[i].in);
            for (size_t cut = 1; cut < n; cut++)
                run_case(c, SPLIT_TWO, i, cut, defer);
        }
    }
}

/* ---- outside the table ----------------------------------------------------------------- */

static void test_state_names(void **state)
{
    (void)state;
    static const struct {
        enum smtpd_state st;
        const char *name;
    } names[] = {
        {SMTPD_ST_GREET, "GREET"}, {SMTPD_ST_READY, "READY"},   {SMTPD_ST_MAIL, "MAIL"},
        {SMTPD_ST_RCPT, "RCPT"},   {SMTPD_ST_DATA, "DATA"},     {SMTPD_ST_COMMIT, "COMMIT"},
        {SMTPD_ST_WAIT, "WAIT"},   {SMTPD_ST_CLOSED, "CLOSED"}, {SMTPD_ST_TLS, "TLS"},
        {SMTPD_ST_AUTH, "AUTH"},   {SMTPD_ST_CHUNK, "CHUNK"},   {SMTPD_ST_BDAT, "BDAT"},
        {SMTPD_ST_REVERSED, "REVERSED"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_string_equal(smtpd_state_name(names[i].st), names[i].name);
    assert_string_equal(smtpd_state_name((enum smtpd_state)13), "?");
    assert_string_equal(smtpd_state_name((enum smtpd_state) - 1), "?");
}

static void out_is(struct smtpd *s, const char *want)
{
    if (s->out.len != strlen(want) || memcmp(s->out.buf, want, s->out.len) != 0) {
        char e1[2048], e2[2048];
        esc(e1, sizeof(e1), want, strlen(want));
        esc(e2, sizeof(e2), s->out.buf ? s->out.buf : "", s->out.len);
        fail_msg("replies differ\n  expected: %s\n  got:      %s", e1, e2);
    }
}

/* smtpd_input's return value: it stops after the STARTTLS line and after the end of data. */
static void test_input_stops(void **state)
{
    (void)state;
    struct smtpd s;
    smtpd_init(&s, &P_TLS, g_policy, 1, "192.0.2.7");
    out_is(&s, "220 mx.test ESMTP holdfast\r\n");
    assert_int_equal(s.out.act, 0);
    smtpd_out_reset(&s);

    static const char a[] = "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@example.org>\r\n";
    size_t n = smtpd_input(&s, a, sizeof(a) - 1);
    assert_int_equal(n, strlen("EHLO c\r\nSTARTTLS\r\n"));
    assert_int_equal(s.st, SMTPD_ST_TLS);
    assert_int_equal(s.out.act, SMTPD_ACT_STARTTLS);
    /* While the handshake runs nothing is taken. */
    assert_int_equal(smtpd_input(&s, a + n, sizeof(a) - 1 - n), 0);
    smtpd_out_reset(&s);
    /* Answers that do not fit the state are ignored. */
    smtpd_committed(&s, 0, "X");
    smtpd_etrn_done(&s, 250, NULL, "x");
    smtpd_auth_done(&s, true, false, "alice");
    assert_int_equal(s.out.len, 0);
    assert_int_equal(s.st, SMTPD_ST_TLS);
    assert_null(s.user);
    smtpd_tls_ready(&s, 0, "TLSv1.3 TLS_AES_256_GCM_SHA384");
    assert_int_equal(s.st, SMTPD_ST_GREET);
    assert_true(s.tls);
    assert_null(s.helo);
    assert_int_equal(s.out.len, 0);  /* no new greeting (RFC 3207 4.2) */
    smtpd_tls_ready(&s, 0, "again"); /* not waiting for a handshake: ignored */
    assert_string_equal(s.tls_info, "TLSv1.3 TLS_AES_256_GCM_SHA384");

    static const char b[] = "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@branch.test>\r\n"
                            "DATA\r\nhello\r\n.\r\nQUIT\r\n";
    n = smtpd_input(&s, b, sizeof(b) - 1);
    assert_int_equal(n, sizeof(b) - 1 - strlen("QUIT\r\n"));
    assert_int_equal(s.st, SMTPD_ST_COMMIT);
    assert_int_equal(s.out.act, SMTPD_ACT_COMMIT);
    assert_null(memmem(s.out.buf, s.out.len, "221", 3));
    struct smtpd_msg *m = smtpd_take_message(&s);
    assert_non_null(m);
    assert_int_equal(m->len, 7);
    assert_memory_equal(m->buf + m->head, "hello\r\n", 7);
    assert_string_equal(m->sender, "a@example.org");
    assert_int_equal(m->nrcpt, 1);
    assert_string_equal(m->rcpts[0].domain, "branch.test");
    smtpd_msg_free(m);
    smtpd_out_reset(&s);
    assert_int_equal(smtpd_input(&s, "QUIT\r\n", 6), 0);
    assert_int_equal(s.out.len, 0);
    smtpd_committed(&s, 0, "0123456789ABCDEF");
    out_is(&s, "250 2.0.0 Ok: queued as 0123456789ABCDEF\r\n");
    assert_int_equal(s.st, SMTPD_ST_READY);
    smtpd_out_reset(&s);
    smtpd_committed(&s, 0, "again"); /* not waiting: ignored */
    assert_int_equal(s.out.len, 0);
    assert_int_equal(smtpd_input(&s, "QUIT\r\n", 6), 6);
    out_is(&s, "221 2.0.0 Bye\r\n");
    assert_int_equal(s.out.act, SMTPD_ACT_CLOSE);
    assert_int_equal(smtpd_input(&s, "NOOP\r\n", 6), 0);
    smtpd_close(&s);
}

/* A failed handshake closes the session. */
static void test_tls_failure(void **state)
{
    (void)state;
    struct smtpd s;
    smtpd_init(&s, &P_TLS, g_policy, 2, "192.0.2.7");
    smtpd_out_reset(&s);
    assert_int_equal(smtpd_input(&s, "STARTTLS\r\n", 10), 10);
    smtpd_out_reset(&s);
    smtpd_tls_ready(&s, HF_ETLS, NULL);
    assert_int_equal(s.st, SMTPD_ST_CLOSED);
    assert_true(s.out.act & SMTPD_ACT_CLOSE);
    assert_false(s.tls);
    smtpd_close(&s);
}

/* smtpd_refuse (connection limits, shutdown) sends its reply and closes. */
static void test_refuse(void **state)
{
    (void)state;
    struct smtpd s;
    smtpd_init(&s, &P_DEF, g_policy, 3, "192.0.2.7");
    smtpd_out_reset(&s);
    smtpd_refuse(&s, 421, "4.7.0", "Too many connections");
    out_is(&s, "421 4.7.0 Too many connections\r\n");
    assert_int_equal(s.out.act, SMTPD_ACT_CLOSE);
    assert_int_equal(s.st, SMTPD_ST_CLOSED);
    assert_int_equal(smtpd_input(&s, "NOOP\r\n", 6), 0);
    smtpd_close(&s);
}

/* A message far larger than the first buffer, in odd-sized pieces; the session's buffers
 * grow and the message comes out whole. */
static void test_large_message(void **state)
{
    (void)state;
    const size_t lines = 20000; /* 20000 lines of 80 octets: 1.6 MB */
    size_t body_len = lines * 80;
    char *in = malloc(body_len + lines / 7 + 64);
    char *want = malloc(body_len);
    assert_non_null(in);
    assert_non_null(want);
    size_t o = 0, w = 0;
    for (size_t i = 0; i < lines; i++) {
        char line[81];
        snprintf(line, sizeof(line), "%c%077zu\r\n", i % 7 == 0 ? '.' : 'L', i);
        /* A leading dot is stuffed on the wire: send two, expect one. */
        if (line[0] == '.')
            in[o++] = '.';
        memcpy(in + o, line, 80);
        o += 80;
        memcpy(want + w, line, 80);
        w += 80;
    }
    memcpy(in + o, ".\r\nQUIT\r\n", 9);
    o += 9;

    static const struct smtpd_params big = {
        .hostname = "mx.test", .max_size = 2000000, .max_rcpts = 3, .max_bad = 10};
    for (int declared = 0; declared < 2; declared++) {
        struct smtpd s;
        smtpd_init(&s, &big, g_policy, 4, "192.0.2.7");
        const char *head = declared ? "EHLO c\r\nMAIL FROM:<a@example.org> SIZE=1000\r\n"
                                      "RCPT TO:<alice@branch.test>\r\nDATA\r\n"
                                    : "HELO c\r\nMAIL FROM:<a@example.org>\r\n"
                                      "RCPT TO:<alice@branch.test>\r\nDATA\r\n";
        assert_int_equal(smtpd_input(&s, head, strlen(head)), strlen(head));
        assert_int_equal(s.st, SMTPD_ST_DATA);
        size_t pos = 0, piece = 1;
        while (pos < o && s.st == SMTPD_ST_DATA) {
            size_t n = piece < o - pos ? piece : o - pos;
            char *buf = malloc(n);
            memcpy(buf, in + pos, n);
            pos += smtpd_input(&s, buf, n);
            free(buf);
            piece = piece * 3 + 1;
            if (piece > 70000)
                piece = 7;
        }
        assert_int_equal(s.st, SMTPD_ST_COMMIT);
        assert_int_equal(o - pos, strlen("QUIT\r\n"));
        struct smtpd_msg *m = smtpd_take_message(&s);
        assert_non_null(m);
        assert_int_equal(m->len, body_len);
        assert_memory_equal(m->buf + m->head, want, body_len);
        assert_false(m->eight_bit);
        smtpd_msg_free(m);
        smtpd_committed(&s, 0, "ID");
        smtpd_out_reset(&s);
        assert_int_equal(smtpd_input(&s, in + pos, o - pos), o - pos);
        out_is(&s, "221 2.0.0 Bye\r\n");
        smtpd_close(&s);
    }
    free(in);
    free(want);
}

/* The shared memory budget (max_data_memory): a message that would take the sessions past it
 * is refused with 452 4.3.1 at its end (or at DATA when even the first buffer does not fit),
 * the session goes on, and every octet counted is given back. */
static void test_memory_budget(void **state)
{
    (void)state;
    static size_t used;
    static const struct smtpd_params tight = {.hostname = "mx.test",
                                              .max_size = 1000000,
                                              .max_rcpts = 3,
                                              .max_bad = 10,
                                              .mem_used = &used,
                                              .mem_limit = 200000};
    used = 0;
    static const char head[] = "HELO c\r\nMAIL FROM:<a@example.org>\r\n"
                               "RCPT TO:<alice@branch.test>\r\nDATA\r\n";
    struct smtpd s;
    smtpd_init(&s, &tight, g_policy, 5, "192.0.2.7");
    assert_int_equal(smtpd_input(&s, head, strlen(head)), strlen(head));
    assert_int_equal(s.st, SMTPD_ST_DATA);
    assert_true(used > 0);
    /* 300 KB of body: over the 200 KB budget. */
    char line[82];
    memset(line, 'x', 78);
    memcpy(line + 78, "\r\n", 2);
    for (int i = 0; i < 3840 && s.st == SMTPD_ST_DATA; i++)
        assert_int_equal(smtpd_input(&s, line, 80), 80);
    assert_true(used <= tight.mem_limit);
    smtpd_out_reset(&s);
    assert_int_equal(smtpd_input(&s, ".\r\n", 3), 3);
    out_is(&s, "452 4.3.1 Insufficient system storage, try again later\r\n");
    assert_int_equal(s.st, SMTPD_ST_READY);
    assert_int_equal(used, 0);
    /* A small message still fits; taken by the glue, its octets stay counted in m->mem
     * until the glue gives them back. */
    smtpd_out_reset(&s);
    static const char small[] = "MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@branch.test>\r\n"
                                "DATA\r\nSubject: s\r\n\r\nhi\r\n.\r\n";
    assert_int_equal(smtpd_input(&s, small, strlen(small)), strlen(small));
    assert_int_equal(s.st, SMTPD_ST_COMMIT);
    struct smtpd_msg *m = smtpd_take_message(&s);
    assert_non_null(m);
    assert_true(m->mem > 0);
    assert_int_equal(used, m->mem);
    used -= m->mem;
    smtpd_msg_free(m);
    smtpd_committed(&s, 0, "ID");
    /* With the budget all taken by others, DATA itself is refused. */
    used = tight.mem_limit;
    smtpd_out_reset(&s);
    static const char again[] = "MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@branch.test>\r\n"
                                "DATA\r\n";
    assert_int_equal(smtpd_input(&s, again, strlen(again)), strlen(again));
    assert_non_null(memmem(s.out.buf, s.out.len, "452 4.3.1 Insufficient system storage", 37));
    assert_int_not_equal(s.st, SMTPD_ST_DATA);
    smtpd_close(&s);
    assert_int_equal(used, tight.mem_limit);
}

/* BDAT under the shared budget: a chunk that takes the session past it is consumed to its
 * last octet and answered 452 4.3.1, the transaction fails (the next chunk in the pipeline
 * gets the same answer), the session goes on and every octet counted is given back; a first
 * chunk whose buffer does not fit is refused the same way. A large message in many chunks of
 * odd sizes, fed in odd pieces, comes out whole. */
static void test_bdat_memory(void **state)
{
    (void)state;
    static size_t used;
    static const struct smtpd_params tight = {.hostname = "mx.test",
                                              .max_size = 4000000,
                                              .max_rcpts = 3,
                                              .max_bad = 10,
                                              .mem_used = &used,
                                              .mem_limit = 200000};
    static const char head[] = "EHLO c\r\nMAIL FROM:<a@example.org>\r\n"
                               "RCPT TO:<alice@branch.test>\r\nBDAT 320000\r\n";
    char line[80];
    memset(line, 'x', 78);
    memcpy(line + 78, "\r\n", 2);
    used = 0;
    struct smtpd s;
    smtpd_init(&s, &tight, g_policy, 6, "192.0.2.7");
    assert_int_equal(smtpd_input(&s, head, strlen(head)), strlen(head));
    assert_int_equal(s.st, SMTPD_ST_CHUNK);
    for (int i = 0; i < 4000; i++) {
        assert_int_equal(smtpd_input(&s, line, 80), 80);
        assert_true(used <= tight.mem_limit);
        if (i < 3999)
            assert_int_equal(s.st, SMTPD_ST_CHUNK);
    }
    assert_int_equal(s.st, SMTPD_ST_BDAT);
    assert_int_equal(used, 0);
    assert_non_null(memmem(s.out.buf, s.out.len, "\r\n452 4.3.1 Insufficient system storage", 39));
    smtpd_out_reset(&s);
    assert_int_equal(smtpd_input(&s, "BDAT 3 LAST\r\nabcNOOP\r\n", 22), 22);
    out_is(&s, "452 4.3.1 Insufficient system storage, try again later\r\n250 2.0.0 Ok\r\n");
    assert_int_equal(s.st, SMTPD_ST_READY);
    smtpd_out_reset(&s);
    /* The budget taken by others: the first chunk is refused after its octets. */
    used = tight.mem_limit;
    static const char full[] = "MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@branch.test>\r\n"
                               "BDAT 5 LAST\r\nhelloNOOP\r\n";
    assert_int_equal(smtpd_input(&s, full, strlen(full)), strlen(full));
    out_is(&s, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
               "452 4.3.1 Insufficient system storage, try again later\r\n250 2.0.0 Ok\r\n");
    assert_int_equal(used, tight.mem_limit);
    smtpd_out_reset(&s);
    used = 0;

    /* 2 MB in chunks of 1..60000 octets, each chunk fed in pieces of 1..70000. */
    const size_t body_len = 25000 * 80;
    char *body = malloc(body_len);
    char *in = malloc(body_len + 25000 * 24 + 64);
    assert_non_null(body);
    assert_non_null(in);
    for (size_t i = 0; i < body_len; i += 80) {
        memcpy(body + i, line, 80);
        body[i] = (char)('A' + i % 26);
        if (i % 7 == 0)
            body[i] = '.'; /* no stuffing in BDAT: a dot stays a dot */
    }
    size_t o = 0, pos = 0, csize = 1;
    memcpy(in, "MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@branch.test>\r\n", 56);
    o = 56;
    static const struct smtpd_params big = {
        .hostname = "mx.test", .max_size = 4000000, .max_rcpts = 3, .max_bad = 10};
    s.prm = &big;
    while (pos < body_len) {
        size_t n = csize < body_len - pos ? csize : body_len - pos;
        bool last = pos + n == body_len;
        o += (size_t)sprintf(in + o, "BDAT %zu%s\r\n", n, last ? " LAST" : "");
        memcpy(in + o, body + pos, n);
        o += n;
        pos += n;
        csize = csize * 7 + 3;
        if (csize > 60000)
            csize = csize % 997 + 1;
    }
    pos = 0;
    size_t piece = 1;
    while (pos < o && s.st != SMTPD_ST_COMMIT) {
        size_t n = piece < o - pos ? piece : o - pos;
        char *buf = malloc(n);
        memcpy(buf, in + pos, n);
        pos += smtpd_input(&s, buf, n);
        free(buf);
        piece = piece * 3 + 1;
        if (piece > 70000)
            piece = 7;
    }
    assert_int_equal(pos, o);
    assert_int_equal(s.st, SMTPD_ST_COMMIT);
    struct smtpd_msg *m = smtpd_take_message(&s);
    assert_non_null(m);
    assert_int_equal(m->len, body_len);
    assert_memory_equal(m->buf + m->head, body, body_len);
    smtpd_msg_free(m);
    smtpd_committed(&s, 0, "ID");
    assert_int_equal(s.st, SMTPD_ST_READY);
    smtpd_close(&s);
    free(in);
    free(body);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_state_names),   cmocka_unit_test(test_input_stops),
        cmocka_unit_test(test_tls_failure),   cmocka_unit_test(test_refuse),
        cmocka_unit_test(test_large_message), cmocka_unit_test(test_memory_budget),
        cmocka_unit_test(test_bdat_memory),
    };
    enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]), NCASES = sizeof(cases) / sizeof(cases[0]) };
    static struct CMUnitTest tests[NFIXED + NCASES];
    memcpy(tests, fixed, sizeof(fixed));
    for (size_t i = 0; i < NCASES; i++)
        tests[NFIXED + i] = (struct CMUnitTest){.name = cases[i].name,
                                                .test_func = test_dialogue,
                                                .teardown_func = dialogue_teardown,
                                                .initial_state = (void *)&cases[i]};
    return _cmocka_run_group_tests("test_smtpd", tests, NFIXED + NCASES, group_setup,
                                   group_teardown);
}
