/* Unit tests for the smtpc module (lib/smtpc*.c): scripted server replies against the client
 * machine, checking the exact bytes it writes, the actions it raises and the per-recipient results.
 * Delivery with and without PIPELINING, HELO fallback, refusals at every step, lost
 * connections, STARTTLS, AUTH PLAIN (only under TLS, only when offered after it), dot-stuffing
 * across every chunk split, and ETRN mode. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hf_err.h"
#include "smtpc.h"

/* ---- harness ---- */

struct h {
    struct smtpc c;
    char out[65536]; /* what the last step wrote */
    size_t out_len;
    unsigned act; /* the last step's actions */
};

/* Collects the actions and output raised so far. */
static void h_drain(struct h *h)
{
    size_t len;
    h->act = smtpc_take_actions(&h->c);
    h->out_len = 0;
    h->out[0] = '\0';
    char *p = smtpc_out_take(&h->c, &len);
    if (p) {
        assert_true(h->act & SMTPC_ACT_WRITE);
        assert_true(len < sizeof(h->out));
        memcpy(h->out, p, len);
        h->out[len] = '\0';
        h->out_len = len;
        free(p);
    } else {
        assert_false(h->act & SMTPC_ACT_WRITE);
    }
}

/* Feeds a reply, lines separated by "\r\n" (the final line without it); expects rc from
 * the last line. */
static void h_feed_rc(struct h *h, const char *reply, int want)
{
    const char *p = reply;
    int rc = 0;
    for (;;) {
        const char *e = strstr(p, "\r\n");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        rc = smtpc_on_line(&h->c, p, len);
        if (!e || rc != 0)
            break;
        p = e + 2;
    }
    assert_int_equal(rc, want);
    h_drain(h);
}

static void h_feed(struct h *h, const char *reply)
{
    h_feed_rc(h, reply, 0);
}

/* Feeds a reply and checks the output and the exact action set. */
static void h_step(struct h *h, const char *reply, const char *want_out, unsigned want_act)
{
    h_feed(h, reply);
    assert_string_equal(h->out, want_out);
    assert_int_equal(h->act, want_act);
}

static void h_start(struct h *h, const struct smtpc_opts *o, const char *ehlo_reply)
{
    memset(h, 0, sizeof(*h));
    assert_int_equal(smtpc_init(&h->c, o), 0);
    assert_int_equal(h->c.state, SMTPC_ST_GREET);
    h_step(h, "220 mx.test ESMTP", "EHLO relay.test\r\n", SMTPC_ACT_WRITE);
    h_feed(h, ehlo_reply);
}

static const struct smtpc_opts deliver_opts = {
    .mode = SMTPC_MODE_DELIVER,
    .helo = "relay.test",
    .log_id = "c=1",
};

#define EHLO_PLAIN "250-mx.test\r\n250 8BITMIME"
#define EHLO_PIPE                                                                                  \
    "250-mx.test hello\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-DSN\r\n250-SIZE 1000000\r\n"       \
    "250 ENHANCEDSTATUSCODES"

static const struct smtpc_rcpt rcpts3[] = {
    {"b@y.test", NULL, NULL},
    {"c@y.test", NULL, NULL},
    {"d@y.test", NULL, NULL},
};

static struct smtpc_msg msg3(void)
{
    struct smtpc_msg m = {.sender = "a@x.test", .size = 100, .rcpts = rcpts3, .nrcpt = 3};
    return m;
}

static void assert_res(const struct smtpc_result *r, enum smtpc_outcome o, int code,
                       const char *text_part)
{
    if (r->outcome != o || r->code != code || !strstr(r->text, text_part))
        fail_msg("result %s %d \"%s\", want %s %d ~\"%s\"", smtpc_outcome_name(r->outcome), r->code,
                 r->text, smtpc_outcome_name(o), code, text_part);
}

/* ---- delivery without PIPELINING ---- */

static void test_plain_happy_path(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PLAIN);
    assert_int_equal(h.act, SMTPC_ACT_NEXT);
    assert_int_equal(h.c.ext, SMTPC_EXT_8BITMIME);

    struct smtpc_msg m = msg3();
    m.body_8bit = true;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    /* No SIZE offered: no SIZE=; 8-bit and offered: BODY=8BITMIME. */
    assert_string_equal(h.out, "MAIL FROM:<a@x.test> BODY=8BITMIME\r\n");
    assert_int_equal(smtpc_msg_begin(&h.c, &m), -EBUSY);
    h_step(&h, "250 2.1.0 ok", "RCPT TO:<b@y.test>\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "250 ok", "RCPT TO:<c@y.test>\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "250 ok", "RCPT TO:<d@y.test>\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "250 ok", "DATA\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "354 go ahead", "", SMTPC_ACT_BODY);
    assert_int_equal(h.c.state, SMTPC_ST_BODY);

    assert_int_equal(smtpc_body(&h.c, "Subject: t\r\n\r\n.hi\r\n", 19, false), 0);
    assert_int_equal(smtpc_body(&h.c, "bye", 3, true), 0);
    h_drain(&h);
    assert_string_equal(h.out, "Subject: t\r\n\r\n..hi\r\nbye\r\n.\r\n");
    assert_int_equal(smtpc_body(&h.c, "x", 1, false), -EBUSY);
    h_step(&h, "250 2.0.0 queued as 42", "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    for (int i = 0; i < 3; i++)
        assert_res(&h.c.rcpt_res[i], SMTPC_OK, 250, "queued as 42");
    assert_res(&h.c.msg_res, SMTPC_OK, 250, "queued as 42");
    assert_string_equal(h.c.msg_res.enh, "2.0.0");
    assert_int_equal(h.c.nmsgs, 1);

    assert_int_equal(smtpc_quit(&h.c), 0);
    h_drain(&h);
    assert_string_equal(h.out, "QUIT\r\n");
    h_step(&h, "221 bye", "", SMTPC_ACT_CLOSE);
    assert_int_equal(h.c.state, SMTPC_ST_DONE);
    assert_int_equal(h.c.session.outcome, SMTPC_OK);
    smtpc_close(&h.c);
}

static void test_helo_fallback_and_8bit_deferred(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, "502 5.5.1 what is EHLO");
    assert_string_equal(h.out, "HELO relay.test\r\n");
    h_step(&h, "250 mx.test", "", SMTPC_ACT_NEXT);
    assert_int_equal(h.c.ext, 0);

    /* RFC 6152 3: an 8-bit body to a server without 8BITMIME is not sent. */
    struct smtpc_msg m = msg3();
    m.body_8bit = true;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_int_equal(h.out_len, 0);
    assert_int_equal(h.act, SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    for (int i = 0; i < 3; i++)
        assert_res(&h.c.rcpt_res[i], SMTPC_DEFER, 0, "8-bit message but server lacks 8BITMIME");
    assert_res(&h.c.msg_res, SMTPC_DEFER, 0, "8BITMIME");

    /* SMTPUTF8 needed, not offered: deferred likewise. */
    m.body_8bit = false;
    m.smtputf8 = true;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_int_equal(h.out_len, 0);
    assert_res(&h.c.rcpt_res[0], SMTPC_DEFER, 0, "SMTPUTF8");

    /* A 7-bit message goes, without any parameter (no extensions after HELO). */
    m.smtputf8 = false;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_string_equal(h.out, "MAIL FROM:<a@x.test>\r\n");
    smtpc_close(&h.c);
}

static void test_rcpt_refusals_and_data_end_4xx(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PLAIN);
    struct smtpc_msg m = msg3();
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_step(&h, "250 ok", "RCPT TO:<b@y.test>\r\n", SMTPC_ACT_WRITE); /* MAIL */
    h_step(&h, "450-4.2.0 mailbox busy\r\n450 4.2.0 try later", "RCPT TO:<c@y.test>\r\n",
           SMTPC_ACT_WRITE);
    h_step(&h, "550 5.1.1 no such user", "RCPT TO:<d@y.test>\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "250 ok", "DATA\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "354 go", "", SMTPC_ACT_BODY);
    assert_int_equal(smtpc_body(&h.c, "x\r\n", 3, true), 0);
    h_drain(&h);
    assert_string_equal(h.out, "x\r\n.\r\n");
    h_step(&h, "451 4.3.0 queue trouble", "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    assert_res(&h.c.rcpt_res[0], SMTPC_DEFER, 450, "mailbox busy\n4.2.0 try later");
    assert_string_equal(h.c.rcpt_res[0].enh, "4.2.0");
    assert_res(&h.c.rcpt_res[1], SMTPC_FAIL, 550, "no such user");
    assert_res(&h.c.rcpt_res[2], SMTPC_DEFER, 451, "queue trouble");
    assert_res(&h.c.msg_res, SMTPC_DEFER, 451, "queue trouble");

    /* The final reply ended the transaction: the next message needs no RSET. */
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_string_equal(h.out, "MAIL FROM:<a@x.test>\r\n");
    smtpc_close(&h.c);
}

static void test_mail_refused(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PLAIN);
    struct smtpc_msg m = msg3();
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_step(&h, "553 5.7.1 sender refused", "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    for (int i = 0; i < 3; i++)
        assert_res(&h.c.rcpt_res[i], SMTPC_FAIL, 553, "sender refused");
    assert_res(&h.c.msg_res, SMTPC_FAIL, 553, "sender refused");
    /* MAIL was refused: no transaction is open, no RSET. */
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_string_equal(h.out, "MAIL FROM:<a@x.test>\r\n");
    smtpc_close(&h.c);
}

static void test_no_recipient_then_rset(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PLAIN);
    struct smtpc_msg m = msg3();
    m.nrcpt = 1;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_step(&h, "250 ok", "RCPT TO:<b@y.test>\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "550 5.1.1 unknown", "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    assert_res(&h.c.rcpt_res[0], SMTPC_FAIL, 550, "unknown");
    assert_res(&h.c.msg_res, SMTPC_FAIL, 0, "no recipient accepted");

    /* MAIL was accepted and never ended: RSET before the next MAIL. */
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_string_equal(h.out, "RSET\r\n");
    h_step(&h, "250 reset", "MAIL FROM:<a@x.test>\r\n", SMTPC_ACT_WRITE);
    smtpc_close(&h.c);
}

static void test_data_refused(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PLAIN);
    struct smtpc_msg m = msg3();
    m.nrcpt = 2;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_feed(&h, "250 ok");
    h_feed(&h, "250 ok");
    h_step(&h, "452 4.5.3 too many", "DATA\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "554 5.6.0 no thanks", "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    assert_res(&h.c.rcpt_res[0], SMTPC_FAIL, 554, "no thanks");
    assert_res(&h.c.rcpt_res[1], SMTPC_DEFER, 452, "too many");
    smtpc_close(&h.c);
}

static void test_size_limit(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, "250-mx.test\r\n250 SIZE 1000");
    assert_int_equal(h.c.size_max, 1000);
    struct smtpc_msg m = msg3();
    m.size = 1001;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_int_equal(h.out_len, 0);
    assert_res(&h.c.rcpt_res[2], SMTPC_FAIL, 0, "exceeds the server's limit 1000");
    assert_string_equal(h.c.rcpt_res[2].enh, "5.3.4");
    m.size = 1000;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_string_equal(h.out, "MAIL FROM:<a@x.test> SIZE=1000\r\n");
    smtpc_close(&h.c);
}

/* ---- PIPELINING ---- */

static const struct smtpc_rcpt rcpts_dsn[] = {
    {"b@y.test", "SUCCESS,FAILURE", "rfc822;b@y.test"},
    {"c@y.test", NULL, NULL},
};

static void test_pipelined_happy_path(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PIPE);
    assert_int_equal(h.act, SMTPC_ACT_NEXT);
    assert_int_equal(h.c.size_max, 1000000);
    struct smtpc_msg m = {.sender = "",
                          .size = 4,
                          .ret = "HDRS",
                          .envid = "QQ314159",
                          .rcpts = rcpts_dsn,
                          .nrcpt = 2};
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    /* RFC 2920: the whole group in one write, DATA last. */
    assert_string_equal(h.out, "MAIL FROM:<> SIZE=4 RET=HDRS ENVID=QQ314159\r\n"
                               "RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y.test\r\n"
                               "RCPT TO:<c@y.test>\r\n"
                               "DATA\r\n");
    /* Replies may come in any grouping; they are matched in order. */
    h_step(&h, "250 2.1.0 ok\r\n550 5.1.1 no such user", "", 0);
    h_step(&h, "250 2.1.5 ok\r\n354 go", "", SMTPC_ACT_BODY);
    assert_int_equal(smtpc_body(&h.c, "hi\r\n", 4, true), 0);
    h_drain(&h);
    assert_string_equal(h.out, "hi\r\n.\r\n");
    h_step(&h, "250 2.0.0 ok", "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    assert_res(&h.c.rcpt_res[0], SMTPC_FAIL, 550, "no such user");
    assert_res(&h.c.rcpt_res[1], SMTPC_OK, 250, "ok");

    /* A second message on the same connection. */
    struct smtpc_msg m2 = msg3();
    assert_int_equal(smtpc_msg_begin(&h.c, &m2), 0);
    h_drain(&h);
    assert_string_equal(h.out, "MAIL FROM:<a@x.test> SIZE=100\r\nRCPT TO:<b@y.test>\r\n"
                               "RCPT TO:<c@y.test>\r\nRCPT TO:<d@y.test>\r\nDATA\r\n");
    smtpc_close(&h.c);
}

static void test_pipelined_mail_refused_never_bounces_rcpts(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PIPE);
    struct smtpc_msg m = msg3();
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    /* MAIL 451; the RCPTs and DATA then get 503, which says nothing about them. */
    h_step(&h,
           "451 4.3.0 try later\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
           "503 5.5.1 need MAIL",
           "", 0);
    h_step(&h, "503 5.5.1 need RCPT", "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    for (int i = 0; i < 3; i++)
        assert_res(&h.c.rcpt_res[i], SMTPC_DEFER, 451, "try later");
    assert_res(&h.c.msg_res, SMTPC_DEFER, 451, "try later");
    /* No transaction open: no RSET. */
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_true(strncmp(h.out, "MAIL FROM:", 10) == 0);
    smtpc_close(&h.c);
}

static void test_pipelined_no_rcpt_but_354(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PIPE);
    struct smtpc_msg m = msg3();
    m.nrcpt = 2;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    /* RFC 2920 3.1: DATA accepted with no recipient: send the end of data at once. */
    h_step(&h, "250 ok\r\n550 no\r\n450 later\r\n354 go", ".\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "554 no valid recipients", "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    assert_res(&h.c.rcpt_res[0], SMTPC_FAIL, 550, "no");
    assert_res(&h.c.rcpt_res[1], SMTPC_DEFER, 450, "later");
    assert_res(&h.c.msg_res, SMTPC_DEFER, 0, "no recipient accepted");

    /* With no recipient and DATA refused, the next message starts with RSET, pipelined. */
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_true(strncmp(h.out, "MAIL", 4) == 0); /* the end of data closed the transaction */
    h_step(&h, "250 ok\r\n550 no\r\n550 no\r\n554 no valid recipients", "",
           SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    assert_true(strncmp(h.out, "RSET\r\nMAIL FROM:<a@x.test>", 26) == 0);
    h_step(&h, "250 reset\r\n250 ok\r\n250 ok\r\n250 ok", "", 0);
    h_step(&h, "354 go", "", SMTPC_ACT_BODY);
    smtpc_close(&h.c);
}

/* ---- CHUNKING (RFC 3030): BDAT with PIPELINING ---- */

#define EHLO_CHUNK                                                                                 \
    "250-mx.test hello\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-SIZE 1000000\r\n"  \
    "250 ENHANCEDSTATUSCODES"

/* Replies to MAIL, the three RCPTs, the chunk and BDAT LAST, and what they must decide. */
struct bdat_case {
    const char *envelope_replies; /* MAIL and the RCPTs */
    const char *chunk_replies;    /* the chunk and LAST */
    enum smtpc_outcome o[3];
    int code[3];
    const char *text[3];
    enum smtpc_outcome msg_o;
    const char *msg_text;
    bool rset_next; /* the next message starts with RSET */
};

static const struct bdat_case bdat_cases[] = {
    {"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok",
     "250 2.0.0 19 octets received\r\n250 2.0.0 queued as X",
     {SMTPC_OK, SMTPC_FAIL, SMTPC_OK},
     {250, 550, 250},
     {"queued", "no", "queued"},
     SMTPC_OK,
     "queued",
     false},
    /* a refused chunk decides for the accepted recipients; LAST then decides nothing */
    {"250 ok\r\n250 a\r\n250 b\r\n250 c",
     "552 5.3.4 too big\r\n552 5.3.4 too big",
     {SMTPC_FAIL, SMTPC_FAIL, SMTPC_FAIL},
     {552, 552, 552},
     {"too big", "too big", "too big"},
     SMTPC_FAIL,
     "too big",
     true},
    {"250 ok\r\n250 a\r\n250 b\r\n250 c",
     "451 4.3.1 full\r\n250 2.0.0 queued",
     {SMTPC_DEFER, SMTPC_DEFER, SMTPC_DEFER},
     {451, 451, 451},
     {"full", "full", "full"},
     SMTPC_DEFER,
     "full",
     true},
    {"250 ok\r\n250 a\r\n250 b\r\n250 c",
     "250 2.0.0 19 octets\r\n451 4.3.0 later",
     {SMTPC_DEFER, SMTPC_DEFER, SMTPC_DEFER},
     {451, 451, 451},
     {"later", "later", "later"},
     SMTPC_DEFER,
     "later",
     true},
    /* no recipient: the refusals of the chunks say nothing about them */
    {"250 ok\r\n550 5.1.1 a\r\n450 4.2.0 b\r\n550 5.1.1 c",
     "503 5.5.1 need RCPT\r\n554 5.5.1 no valid recipients",
     {SMTPC_FAIL, SMTPC_DEFER, SMTPC_FAIL},
     {550, 450, 550},
     {"a", "b", "c"},
     SMTPC_DEFER,
     "no recipient accepted",
     true},
    /* MAIL refused: every recipient shares its fate */
    {"451 4.3.0 later\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL",
     "503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL",
     {SMTPC_DEFER, SMTPC_DEFER, SMTPC_DEFER},
     {451, 451, 451},
     {"later", "later", "later"},
     SMTPC_DEFER,
     "later",
     true},
};

/* Every case twice: with the replies to MAIL and RCPT before the body is handed over, and
 * with all replies after it. */
static void test_bdat_cases(void **state)
{
    (void)state;
    static const char body[] = "hi\r\n.\r\n..x\r\nno CRLF";
    for (size_t i = 0; i < sizeof(bdat_cases) / sizeof(bdat_cases[0]); i++) {
        for (int early = 0; early < 2; early++) {
            const struct bdat_case *bc = &bdat_cases[i];
            struct h h;
            h_start(&h, &deliver_opts, EHLO_CHUNK);
            assert_true(h.c.ext & SMTPC_EXT_CHUNKING);
            struct smtpc_msg m = msg3();
            assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
            h_drain(&h);
            /* The whole group at once, no DATA; the body is asked for right away. */
            assert_string_equal(h.out, "MAIL FROM:<a@x.test> SIZE=100\r\nRCPT TO:<b@y.test>\r\n"
                                       "RCPT TO:<c@y.test>\r\nRCPT TO:<d@y.test>\r\n");
            assert_int_equal(h.act, SMTPC_ACT_WRITE | SMTPC_ACT_BODY);
            assert_int_equal(h.c.state, SMTPC_ST_BODY);
            if (early)
                h_step(&h, bc->envelope_replies, "", 0);
            assert_int_equal(smtpc_body(&h.c, body, strlen(body), false), 0);
            assert_int_equal(smtpc_body(&h.c, NULL, 0, true), 0);
            h_drain(&h);
            /* As stored: no dot-stuffing, no CRLF added. */
            assert_string_equal(h.out, "BDAT 19\r\nhi\r\n.\r\n..x\r\nno CRLFBDAT 0 LAST\r\n");
            assert_int_equal(h.c.state, SMTPC_ST_DOT);
            if (!early)
                h_step(&h, bc->envelope_replies, "", 0);
            h_step(&h, bc->chunk_replies, "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_NEXT);
            for (int k = 0; k < 3; k++)
                assert_res(&h.c.rcpt_res[k], bc->o[k], bc->code[k], bc->text[k]);
            assert_res(&h.c.msg_res, bc->msg_o, h.c.msg_res.code, bc->msg_text);
            assert_int_equal(h.c.state, SMTPC_ST_IDLE);
            assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
            h_drain(&h);
            assert_int_equal(strncmp(h.out, "RSET\r\n", 6) == 0, bc->rset_next);
            smtpc_close(&h.c);
        }
    }
}

/* CHUNKING without PIPELINING: DATA (BDAT would gain nothing without pipelining). */
static void test_chunking_without_pipelining(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, "250-mx.test\r\n250-CHUNKING\r\n250 8BITMIME");
    struct smtpc_msg m = msg3();
    m.nrcpt = 1;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_step(&h, "250 ok", "RCPT TO:<b@y.test>\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "250 ok", "DATA\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "354 go", "", SMTPC_ACT_BODY);
    assert_int_equal(smtpc_body(&h.c, ".x\r\n", 4, true), 0);
    h_drain(&h);
    assert_string_equal(h.out, "..x\r\n.\r\n");
    smtpc_close(&h.c);
}

/* A lost connection after BDAT LAST defers (maybe delivered: a duplicate, never a loss). */
static void test_bdat_drop_waiting_final_reply(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_CHUNK);
    struct smtpc_msg m = msg3();
    m.nrcpt = 1;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    assert_int_equal(smtpc_body(&h.c, "x\r\n", 3, false), 0);
    assert_int_equal(smtpc_body(&h.c, NULL, 0, true), 0);
    h_drain(&h);
    h_feed(&h, "250 ok\r\n250 ok\r\n250 3 octets");
    smtpc_on_closed(&h.c, -ETIMEDOUT);
    h_drain(&h);
    assert_res(&h.c.rcpt_res[0], SMTPC_DEFER, 0, "connection lost in DOT");
    smtpc_close(&h.c);
}

/* ---- broken dialogues ---- */

static void test_drop_mid_data_defers_all(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PIPE);
    struct smtpc_msg m = msg3();
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_step(&h, "250 ok\r\n250 ok\r\n550 5.1.1 gone\r\n250 ok\r\n354 go", "", SMTPC_ACT_BODY);
    assert_int_equal(smtpc_body(&h.c, "part one\r\n", 10, false), 0);
    h_drain(&h);
    smtpc_on_closed(&h.c, -ECONNRESET);
    h_drain(&h);
    assert_int_equal(h.act, SMTPC_ACT_MSG_DONE | SMTPC_ACT_CLOSE);
    assert_int_equal(h.c.state, SMTPC_ST_DONE);
    assert_res(&h.c.rcpt_res[0], SMTPC_DEFER, 0, "connection lost in BODY");
    assert_res(&h.c.rcpt_res[1], SMTPC_FAIL, 550, "gone"); /* already final: kept */
    assert_res(&h.c.rcpt_res[2], SMTPC_DEFER, 0, "connection lost");
    assert_res(&h.c.msg_res, SMTPC_DEFER, 0, "connection lost");
    assert_int_equal(h.c.session.outcome, SMTPC_DEFER);
    /* Nothing more happens. */
    smtpc_on_closed(&h.c, -ECONNRESET);
    h_drain(&h);
    assert_int_equal(h.act, 0);
    assert_int_equal(smtpc_on_line(&h.c, "250 ok", 6), HF_EPROTO);
    smtpc_close(&h.c);
}

static void test_drop_waiting_final_reply(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PIPE);
    struct smtpc_msg m = msg3();
    m.nrcpt = 1;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_feed(&h, "250 ok\r\n250 ok\r\n354 go");
    assert_int_equal(smtpc_body(&h.c, "", 0, true), 0);
    h_drain(&h);
    assert_string_equal(h.out, ".\r\n");
    smtpc_on_closed(&h.c, -ETIMEDOUT);
    h_drain(&h);
    /* Maybe delivered, maybe not: deferred (a duplicate rather than a loss). */
    assert_res(&h.c.rcpt_res[0], SMTPC_DEFER, 0, "connection lost in DOT");
    smtpc_close(&h.c);
}

static void test_malformed_reply_mid_transaction(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PLAIN);
    struct smtpc_msg m = msg3();
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_step(&h, "250 ok", "RCPT TO:<b@y.test>\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "550 no", "RCPT TO:<c@y.test>\r\n", SMTPC_ACT_WRITE);
    h_feed_rc(&h, "25O ok", HF_EPROTO);
    assert_int_equal(h.act, SMTPC_ACT_MSG_DONE | SMTPC_ACT_CLOSE);
    assert_int_equal(h.out_len, 0);
    assert_res(&h.c.rcpt_res[0], SMTPC_FAIL, 550, "no");
    assert_res(&h.c.rcpt_res[1], SMTPC_DEFER, 0, "malformed reply");
    assert_res(&h.c.rcpt_res[2], SMTPC_DEFER, 0, "malformed reply");
    smtpc_close(&h.c);

    /* A continuation line whose code differs is malformed too. */
    h_start(&h, &deliver_opts, EHLO_PLAIN);
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_feed_rc(&h, "250-ok\r\n251 ok", HF_EPROTO);
    assert_res(&h.c.rcpt_res[0], SMTPC_DEFER, 0, "malformed");
    smtpc_close(&h.c);
}

static void test_unexpected_reply_and_421(void **state)
{
    (void)state;
    struct h h;
    h_start(&h, &deliver_opts, EHLO_PLAIN);
    /* Idle: nothing was asked. */
    h_feed_rc(&h, "250 surprise", HF_EPROTO);
    assert_int_equal(h.act, SMTPC_ACT_CLOSE);
    assert_res(&h.c.session, SMTPC_DEFER, 0, "unexpected reply 250");
    smtpc_close(&h.c);

    /* RFC 5321 3.8: 421 to any command closes the session. */
    h_start(&h, &deliver_opts, EHLO_PLAIN);
    struct smtpc_msg m = msg3();
    assert_int_equal(smtpc_msg_begin(&h.c, &m), 0);
    h_drain(&h);
    h_feed(&h, "250 ok");
    h_step(&h, "421 4.3.2 shutting down", "", SMTPC_ACT_MSG_DONE | SMTPC_ACT_CLOSE);
    for (int i = 0; i < 3; i++)
        assert_res(&h.c.rcpt_res[i], SMTPC_DEFER, 421, "shutting down");
    assert_res(&h.c.session, SMTPC_DEFER, 421, "shutting down");
    smtpc_close(&h.c);
}

static void test_bad_greeting(void **state)
{
    (void)state;
    struct h h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(smtpc_init(&h.c, &deliver_opts), 0);
    h_step(&h, "554 5.7.1 go away", "QUIT\r\n", SMTPC_ACT_WRITE);
    assert_res(&h.c.session, SMTPC_FAIL, 554, "go away");
    assert_int_equal(smtpc_msg_begin(&h.c, &(struct smtpc_msg){0}), -EBUSY);
    h_step(&h, "221 bye", "", SMTPC_ACT_CLOSE);
    assert_res(&h.c.session, SMTPC_FAIL, 554, "go away"); /* the failure is kept */
    smtpc_close(&h.c);

    /* EHLO 4xx: no fallback, the session fails temporarily. */
    h_start(&h, &deliver_opts, "451 not now");
    assert_string_equal(h.out, "QUIT\r\n");
    assert_res(&h.c.session, SMTPC_DEFER, 451, "not now");
    smtpc_on_closed(&h.c, -ECONNRESET); /* closed instead of 221: nothing lost */
    h_drain(&h);
    assert_int_equal(h.act, SMTPC_ACT_CLOSE);
    assert_res(&h.c.session, SMTPC_DEFER, 451, "not now");
    smtpc_close(&h.c);
}

/* ---- STARTTLS ---- */

static void test_starttls(void **state)
{
    (void)state;
    struct h h;
    struct smtpc_opts o = deliver_opts;
    o.tls = SMTPC_TLS_OPPORTUNISTIC;
    h_start(&h, &o, "250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING");
    assert_string_equal(h.out, "STARTTLS\r\n");
    h_step(&h, "220 2.0.0 ready", "", SMTPC_ACT_STARTTLS);
    assert_int_equal(h.c.state, SMTPC_ST_TLS);
    smtpc_on_tls_ready(&h.c);
    h_drain(&h);
    assert_string_equal(h.out, "EHLO relay.test\r\n");
    assert_int_equal(h.c.ext, 0); /* forgotten (RFC 3207 4.2) */
    h_step(&h, "250-mx.test\r\n250-STARTTLS\r\n250 8BITMIME", "", SMTPC_ACT_NEXT);
    assert_true(h.c.tls_active);
    assert_int_equal(h.c.ext, SMTPC_EXT_STARTTLS | SMTPC_EXT_8BITMIME);
    smtpc_close(&h.c);

    /* A reply before the handshake was injected: the session ends. */
    h_start(&h, &o, "250-mx.test\r\n250 STARTTLS");
    h_feed(&h, "220 ready");
    h_feed_rc(&h, "250 injected", HF_EPROTO);
    assert_int_equal(h.act, SMTPC_ACT_CLOSE);
    smtpc_close(&h.c);

    /* Opportunistic: refused STARTTLS, go on in clear. */
    h_start(&h, &o, "250-mx.test\r\n250 STARTTLS");
    h_step(&h, "454 4.7.0 no TLS now", "", SMTPC_ACT_NEXT);
    smtpc_close(&h.c);

    /* Required but not offered: no mail. */
    o.tls = SMTPC_TLS_REQUIRED;
    h_start(&h, &o, "250-mx.test\r\n250 8BITMIME");
    assert_string_equal(h.out, "QUIT\r\n");
    assert_res(&h.c.session, SMTPC_DEFER, 0, "TLS required");
    smtpc_close(&h.c);
}

/* ---- AUTH PLAIN ---- */

#define EHLO_TLS_AUTH "250-mx.test\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME"
#define AUTH_ALICE    "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n" /* base64("\0alice\0secret") */

static const struct smtpc_opts auth_opts = {
    .mode = SMTPC_MODE_DELIVER,
    .helo = "relay.test",
    .log_id = "c=1",
    .tls = SMTPC_TLS_REQUIRED,
    .auth_user = "alice",
    .auth_pass = "secret",
};

/* Greeting, EHLO (pre_tls), STARTTLS, handshake, EHLO again answered with post_tls. */
static void h_start_tls(struct h *h, const struct smtpc_opts *o, const char *pre_tls,
                        const char *post_tls)
{
    h_start(h, o, pre_tls);
    assert_string_equal(h->out, "STARTTLS\r\n");
    h_step(h, "220 2.0.0 go ahead", "", SMTPC_ACT_STARTTLS);
    smtpc_on_tls_ready(&h->c);
    h_drain(h);
    assert_string_equal(h->out, "EHLO relay.test\r\n");
    h_feed(h, post_tls);
}

static void test_auth_plain_replies(void **state)
{
    (void)state;
    struct h h;

    /* 235: authenticated, then the mode's work. */
    h_start_tls(&h, &auth_opts, EHLO_TLS_AUTH, EHLO_TLS_AUTH);
    assert_true(h.c.ext & SMTPC_EXT_AUTH_PLAIN);
    assert_string_equal(h.out, AUTH_ALICE);
    assert_int_equal(h.c.state, SMTPC_ST_AUTH);
    h_step(&h, "235 2.7.0 Authentication successful", "", SMTPC_ACT_NEXT);
    assert_int_equal(h.c.state, SMTPC_ST_IDLE);
    assert_int_equal(h.c.session.outcome, SMTPC_PENDING);
    smtpc_close(&h.c);

    /* 535: permanent; nothing but QUIT follows. */
    h_start_tls(&h, &auth_opts, EHLO_TLS_AUTH, EHLO_TLS_AUTH);
    h_step(&h, "535 5.7.8 Authentication credentials invalid", "QUIT\r\n", SMTPC_ACT_WRITE);
    assert_res(&h.c.session, SMTPC_FAIL, 535, "credentials invalid");
    assert_string_equal(h.c.session.enh, "5.7.8");
    h_step(&h, "221 bye", "", SMTPC_ACT_CLOSE);
    assert_res(&h.c.session, SMTPC_FAIL, 535, "credentials invalid"); /* kept after QUIT */
    smtpc_close(&h.c);

    /* 454: temporary. */
    h_start_tls(&h, &auth_opts, EHLO_TLS_AUTH, EHLO_TLS_AUTH);
    h_step(&h, "454 4.7.0 Temporary authentication failure", "QUIT\r\n", SMTPC_ACT_WRITE);
    assert_res(&h.c.session, SMTPC_DEFER, 454, "Temporary");
    smtpc_close(&h.c);

    /* Another 5xx (534 mechanism too weak) is permanent too. */
    h_start_tls(&h, &auth_opts, EHLO_TLS_AUTH, EHLO_TLS_AUTH);
    h_step(&h, "534 5.7.9 too weak", "QUIT\r\n", SMTPC_ACT_WRITE);
    assert_res(&h.c.session, SMTPC_FAIL, 534, "too weak");
    smtpc_close(&h.c);

    /* 334 after a complete initial response: cancelled with "*", then the session fails. */
    h_start_tls(&h, &auth_opts, EHLO_TLS_AUTH, EHLO_TLS_AUTH);
    h_step(&h, "334 ", "*\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "501 5.7.0 cancelled", "QUIT\r\n", SMTPC_ACT_WRITE);
    assert_res(&h.c.session, SMTPC_FAIL, 0, "334");
    smtpc_close(&h.c);

    /* 421: the server closes; deferred like any 421. */
    h_start_tls(&h, &auth_opts, EHLO_TLS_AUTH, EHLO_TLS_AUTH);
    h_step(&h, "421 4.3.0 shutting down", "", SMTPC_ACT_CLOSE);
    assert_res(&h.c.session, SMTPC_DEFER, 421, "shutting down");
    smtpc_close(&h.c);
}

struct auth_refusal_case {
    enum smtpc_tls tls;
    const char *pre_tls;  /* EHLO reply in clear */
    const char *starttls; /* reply to STARTTLS, or NULL when STARTTLS is not sent */
    const char *post_tls; /* EHLO reply under TLS, or NULL when TLS never starts */
    enum smtpc_outcome outcome;
    const char *enh;
    const char *text;
};

static const struct auth_refusal_case auth_refusal_cases[] = {
    /* { tls, EHLO in clear, STARTTLS reply, EHLO under TLS, outcome, enh, text } */
    {SMTPC_TLS_NEVER, "250-mx.test\r\n250-STARTTLS\r\n250 AUTH PLAIN", NULL, NULL, SMTPC_FAIL,
     "5.7.11", "refusing to send credentials without TLS"},
    {SMTPC_TLS_OPPORTUNISTIC, "250-mx.test\r\n250 AUTH PLAIN", NULL, NULL, SMTPC_FAIL, "5.7.11",
     "refusing to send credentials without TLS"},
    {SMTPC_TLS_OPPORTUNISTIC, EHLO_TLS_AUTH, "454 4.7.0 TLS not available", NULL, SMTPC_FAIL,
     "5.7.11", "refusing to send credentials without TLS"},
    /* Required TLS missing: that is the reason, temporary as before. */
    {SMTPC_TLS_REQUIRED, "250-mx.test\r\n250 AUTH PLAIN", NULL, NULL, SMTPC_DEFER, "4.7.10",
     "TLS required"},
    /* AUTH advertised only before TLS does not count (RFC 4954 4). */
    {SMTPC_TLS_REQUIRED, EHLO_TLS_AUTH, "220 go", "250-mx.test\r\n250 8BITMIME", SMTPC_FAIL,
     "5.7.4", "does not offer AUTH"},
    {SMTPC_TLS_REQUIRED, EHLO_TLS_AUTH, "220 go", "250-mx.test\r\n250 AUTH LOGIN CRAM-MD5",
     SMTPC_FAIL, "5.7.4", "does not offer AUTH PLAIN"},
    {SMTPC_TLS_REQUIRED, EHLO_TLS_AUTH, "220 go", "250-mx.test\r\n250 AUTH PLAINISH", SMTPC_FAIL,
     "5.7.4", "does not offer AUTH PLAIN"},
    {SMTPC_TLS_REQUIRED, EHLO_TLS_AUTH, "220 go", "250-mx.test\r\n250 AUTH=PLAIN", SMTPC_FAIL,
     "5.7.4", "does not offer AUTH"},
};

static void test_auth_never_without_tls_or_offer(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(auth_refusal_cases) / sizeof(auth_refusal_cases[0]); i++) {
        const struct auth_refusal_case *k = &auth_refusal_cases[i];
        struct smtpc_opts o = auth_opts;
        o.tls = k->tls;
        struct h h;
        h_start(&h, &o, k->pre_tls);
        if (k->starttls) {
            assert_string_equal(h.out, "STARTTLS\r\n");
            h_feed(&h, k->starttls);
        }
        if (k->post_tls) {
            assert_int_equal(h.act, SMTPC_ACT_STARTTLS);
            smtpc_on_tls_ready(&h.c);
            h_drain(&h);
            assert_string_equal(h.out, "EHLO relay.test\r\n");
            h_feed(&h, k->post_tls);
        }
        if (strcmp(h.out, "QUIT\r\n") != 0)
            fail_msg("case %zu: wrote \"%s\", want only QUIT", i, h.out);
        assert_int_equal(h.act, SMTPC_ACT_WRITE);
        assert_res(&h.c.session, k->outcome, 0, k->text);
        assert_string_equal(h.c.session.enh, k->enh);
        h_step(&h, "221 bye", "", SMTPC_ACT_CLOSE);
        smtpc_close(&h.c);
    }
}

static void test_auth_etrn_and_arguments(void **state)
{
    (void)state;
    static const char *const args[] = {"branch.test"};
    struct smtpc_opts o = {.mode = SMTPC_MODE_ETRN,
                           .helo = "relay.test",
                           .tls = SMTPC_TLS_REQUIRED,
                           .etrn = args,
                           .netrn = 1,
                           .auth_user = "alice",
                           .auth_pass = "secret"};
    struct h h;
    h_start_tls(&h, &o, EHLO_TLS_AUTH, "250-relay\r\n250-ETRN\r\n250 AUTH PLAIN");
    assert_string_equal(h.out, AUTH_ALICE);
    h_step(&h, "235 2.7.0 ok", "ETRN branch.test\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "253 OK, 1 pending message started", "QUIT\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "221 bye", "", SMTPC_ACT_CLOSE);
    assert_res(&h.c.etrn_res[0], SMTPC_OK, 253, "started");
    assert_int_equal(h.c.session.outcome, SMTPC_OK);
    smtpc_close(&h.c);

    /* The longest fields RFC 4616 allows fit in one line. */
    char user[256], pass[256];
    memset(user, 'u', 255);
    memset(pass, 'p', 255);
    user[255] = pass[255] = '\0';
    o.auth_user = user;
    o.auth_pass = pass;
    h_start_tls(&h, &o, EHLO_TLS_AUTH, EHLO_TLS_AUTH);
    assert_int_equal(h.out_len, strlen("AUTH PLAIN ") + 4 * ((2 * 255 + 2 + 2) / 3) + 2);
    assert_memory_equal(h.out, "AUTH PLAIN AHV1dXV1", 19);
    smtpc_close(&h.c);

    /* Bad credentials options are refused before anything happens. */
    struct smtpc c;
    char longer[257];
    memset(longer, 'x', 256);
    longer[256] = '\0';
    static const struct {
        const char *user, *pass;
    } bad[] = {{"alice", NULL}, {NULL, "secret"}, {"", "secret"}, {"alice", ""}, {NULL, NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.auth_user = bad[i].user;
        o.auth_pass = bad[i].pass;
        int rc = smtpc_init(&c, &o);
        if (!bad[i].user && !bad[i].pass) {
            assert_int_equal(rc, 0); /* no AUTH at all */
            smtpc_close(&c);
            continue;
        }
        assert_int_equal(rc, -EINVAL);
    }
    o.auth_user = longer;
    o.auth_pass = "secret";
    assert_int_equal(smtpc_init(&c, &o), -EINVAL);
    o.auth_user = "alice";
    o.auth_pass = longer;
    assert_int_equal(smtpc_init(&c, &o), -EINVAL);
}

/* ---- dot-stuffing ---- */

struct stuff_case {
    const char *in;
    const char *out;
};

static const struct stuff_case stuff_cases[] = {
    /* { body, on the wire } */
    {"", ".\r\n"},
    {".\r\n", "..\r\n.\r\n"},
    {"a\r\n.b\r\n", "a\r\n..b\r\n.\r\n"},
    {"a\r\n..\r\n", "a\r\n...\r\n.\r\n"},
    {"abc", "abc\r\n.\r\n"},          /* no final CRLF: added */
    {"a.b\r\n", "a.b\r\n.\r\n"},      /* dots inside a line stay */
    {"a\nb", "a\r\nb\r\n.\r\n"},      /* bare LF sent as CRLF */
    {"a\n.b", "a\r\n..b\r\n.\r\n"},   /* ... and starts a line */
    {"a\r.b", "a\r\n..b\r\n.\r\n"},   /* bare CR likewise */
    {"a\r", "a\r\n.\r\n"},            /* CR at the very end */
    {"\r\n.\r\n", "\r\n..\r\n.\r\n"}, /* a would-be end of data inside */
    {"x\r\n\r\n", "x\r\n\r\n.\r\n"},
    {"\r\r\n", "\r\n\r\n.\r\n"},
};

static size_t stuff_all(const char *in, size_t len, const size_t *cuts, size_t ncuts, char *out)
{
    struct smtpc_stuff st;
    size_t n = 0, from = 0;
    smtpc_stuff_init(&st);
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : len;
        n += smtpc_stuff(&st, in + from, to - from, k == ncuts, out + n);
        from = to;
    }
    return n;
}

static void test_stuff_every_split(void **state)
{
    (void)state;
    char out[256];
    for (size_t i = 0; i < sizeof(stuff_cases) / sizeof(stuff_cases[0]); i++) {
        const struct stuff_case *sc = &stuff_cases[i];
        size_t len = strlen(sc->in), want = strlen(sc->out);
        assert_true(want <= SMTPC_STUFF_MAX(len));
        /* One chunk. */
        size_t n = stuff_all(sc->in, len, NULL, 0, out);
        out[n] = '\0';
        if (strcmp(out, sc->out) != 0)
            fail_msg("case %zu: got \"%s\"", i, out);
        /* Every split into two chunks (empty chunks included). */
        for (size_t cut = 0; cut <= len; cut++) {
            n = stuff_all(sc->in, len, &cut, 1, out);
            out[n] = '\0';
            if (strcmp(out, sc->out) != 0)
                fail_msg("case %zu cut %zu: got \"%s\"", i, cut, out);
        }
        /* One octet at a time. */
        size_t cuts[64];
        for (size_t k = 0; k < len; k++)
            cuts[k] = k + 1;
        n = stuff_all(sc->in, len, cuts, len, out);
        out[n] = '\0';
        if (strcmp(out, sc->out) != 0)
            fail_msg("case %zu bytewise: got \"%s\"", i, out);
    }
}

static void test_stuff_worst_case_bound(void **state)
{
    (void)state;
    /* "\r." repeated: every octet pair grows to four. */
    char in[200], out[SMTPC_STUFF_MAX(200)];
    for (size_t i = 0; i < sizeof(in); i += 2) {
        in[i] = '\r';
        in[i + 1] = '.';
    }
    struct smtpc_stuff st;
    smtpc_stuff_init(&st);
    size_t n = smtpc_stuff(&st, in, sizeof(in), true, out);
    assert_true(n <= sizeof(out));
    assert_int_equal(n, 100 * 4 + 2 + 3);
}

/* ---- ETRN ---- */

static void test_etrn_mode(void **state)
{
    (void)state;
    static const char *const args[] = {"branch.test", "@backup.test", "#q1",
                                       "a.test",      "b.test",       "c.test"};
    struct smtpc_opts o = {
        .mode = SMTPC_MODE_ETRN, .helo = "branch.test", .etrn = args, .netrn = 6};
    struct h h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(smtpc_init(&h.c, &o), 0);
    h_step(&h, "220 relay", "EHLO branch.test\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "250-relay\r\n250 ETRN", "ETRN branch.test\r\n", SMTPC_ACT_WRITE);
    assert_true(h.c.ext & SMTPC_EXT_ETRN);
    h_step(&h, "250 Queuing started", "ETRN @backup.test\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "251 OK, no messages waiting", "ETRN #q1\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "253 OK, 3 pending messages started", "ETRN a.test\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "458 Unable to queue messages", "ETRN b.test\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "459 not queued here", "ETRN c.test\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "501 5.5.4 syntax", "QUIT\r\n", SMTPC_ACT_WRITE);
    h_step(&h, "221 bye", "", SMTPC_ACT_CLOSE);
    static const int codes[] = {250, 251, 253, 458, 459, 501};
    static const enum smtpc_outcome oc[] = {SMTPC_OK,    SMTPC_OK,    SMTPC_OK,
                                            SMTPC_DEFER, SMTPC_DEFER, SMTPC_FAIL};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(h.c.etrn_res[i].code, codes[i]);
        assert_int_equal(h.c.etrn_res[i].outcome, oc[i]);
    }
    assert_string_equal(h.c.etrn_res[2].text, "OK, 3 pending messages started");
    assert_int_equal(h.c.session.outcome, SMTPC_OK);
    smtpc_close(&h.c);

    /* A lost connection mid-way leaves the rest PENDING. */
    memset(&h, 0, sizeof(h));
    assert_int_equal(smtpc_init(&h.c, &o), 0);
    h_feed(&h, "220 relay");
    h_feed(&h, "502 no EHLO");
    assert_string_equal(h.out, "HELO branch.test\r\n");
    h_step(&h, "250 relay", "ETRN branch.test\r\n", SMTPC_ACT_WRITE);
    smtpc_on_closed(&h.c, -ECONNRESET);
    h_drain(&h);
    assert_int_equal(h.act, SMTPC_ACT_CLOSE);
    assert_int_equal(h.c.etrn_res[0].outcome, SMTPC_PENDING);
    assert_int_equal(h.c.session.outcome, SMTPC_DEFER);
    smtpc_close(&h.c);
}

/* ---- ATRN (RFC 2645) ---- */

static void test_atrn_mode(void **state)
{
    (void)state;
    static const char *const args[] = {"a.test", "b.test"};
    struct smtpc_opts o = {
        .mode = SMTPC_MODE_ATRN, .helo = "branch.test", .etrn = args, .netrn = 2};
    struct h h;
    /* 250: the connection turns around, no QUIT, no CLOSE. */
    memset(&h, 0, sizeof(h));
    assert_int_equal(smtpc_init(&h.c, &o), 0);
    h_feed(&h, "220 relay");
    h_step(&h, "250-relay\r\n250 ATRN", "ATRN a.test,b.test\r\n", SMTPC_ACT_WRITE);
    assert_true(h.c.ext & SMTPC_EXT_ATRN);
    h_feed(&h, "250 OK now reversing the connection");
    assert_string_equal(h.out, "");
    assert_int_equal(h.act, SMTPC_ACT_TURN);
    assert_int_equal(h.c.state, SMTPC_ST_DONE);
    assert_int_equal(h.c.etrn_res[0].code, 250);
    assert_int_equal(h.c.etrn_res[1].code, 250);
    assert_int_equal(smtpc_on_line(&h.c, "250 x", 5), HF_EPROTO); /* nothing more for us */
    smtpc_close(&h.c);
    /* 453 (no mail), 451, 450: recorded for every domain, then QUIT. */
    static const int codes[] = {453, 451, 450, 530};
    for (size_t i = 0; i < 4; i++) {
        memset(&h, 0, sizeof(h));
        assert_int_equal(smtpc_init(&h.c, &o), 0);
        h_feed(&h, "220 relay");
        h_step(&h, "250 relay", "ATRN a.test,b.test\r\n", SMTPC_ACT_WRITE);
        char line[32];
        snprintf(line, sizeof(line), "%d no", codes[i]);
        h_step(&h, line, "QUIT\r\n", SMTPC_ACT_WRITE);
        assert_int_equal(h.c.etrn_res[0].code, codes[i]);
        assert_int_equal(h.c.etrn_res[1].code, codes[i]);
        assert_int_equal(h.c.etrn_res[1].outcome, codes[i] >= 500 ? SMTPC_FAIL : SMTPC_DEFER);
        smtpc_close(&h.c);
    }
}

/* CRAM-MD5 (RFC 2195) through the glue's function: here a stand-in that shows what it was
 * given ("user challenge-secretlength"), so the test sees the decoded challenge. */
static int fake_cram(const char *user, const void *secret, size_t slen, const void *chal,
                     size_t clen, char *out, size_t outsz)
{
    (void)secret;
    if (clen == 4 && memcmp(chal, "FAIL", 4) == 0)
        return -EIO;
    int n = snprintf(out, outsz, "%s %.*s-%zu", user, (int)clen, (const char *)chal, slen);
    return n < 0 || (size_t)n >= outsz ? -ENOSPC : 0;
}

#define EHLO_CRAM      "250-relay\r\n250-AUTH CRAM-MD5\r\n250 ATRN"
#define CRAM_CHALLENGE "334 PDEuMkByZWxheT4="             /* base64("<1.2@relay>") */
#define CRAM_RESPONSE  "YWxpY2UgPDEuMkByZWxheT4tNg==\r\n" /* base64("alice <1.2@relay>-6") */

static void test_atrn_cram_md5(void **state)
{
    (void)state;
    static const char *const args[] = {"a.test"};
    struct smtpc_opts o = {.mode = SMTPC_MODE_ATRN,
                           .helo = "relay.test",
                           .tls = SMTPC_TLS_NEVER,
                           .etrn = args,
                           .netrn = 1,
                           .auth_user = "alice",
                           .auth_pass = "secret",
                           .cram = fake_cram};
    struct h h;
    /* No TLS: CRAM-MD5, the challenge decoded, the response base64, then ATRN. */
    h_start(&h, &o, EHLO_CRAM);
    assert_true(h.c.ext & SMTPC_EXT_AUTH_CRAM);
    assert_string_equal(h.out, "AUTH CRAM-MD5\r\n");
    h_step(&h, CRAM_CHALLENGE, CRAM_RESPONSE, SMTPC_ACT_WRITE);
    h_step(&h, "235 2.7.0 ok", "ATRN a.test\r\n", SMTPC_ACT_WRITE);
    smtpc_close(&h.c);
    /* A refused response: permanent, QUIT. */
    h_start(&h, &o, EHLO_CRAM);
    h_step(&h, CRAM_CHALLENGE, CRAM_RESPONSE, SMTPC_ACT_WRITE);
    h_step(&h, "535 5.7.8 no", "QUIT\r\n", SMTPC_ACT_WRITE);
    assert_res(&h.c.session, SMTPC_FAIL, 535, "no");
    smtpc_close(&h.c);
    /* A challenge that is not base64, or one the function cannot answer: nothing sent. */
    static const char *const bad[] = {"334 !!!!", "334 PDE", "334 PD=E", "334 RkFJTA=="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        h_start(&h, &o, EHLO_CRAM);
        h_step(&h, bad[i], "QUIT\r\n", SMTPC_ACT_WRITE);
        assert_int_equal(h.c.session.outcome, SMTPC_FAIL);
        assert_int_equal(h.c.session.code, 0);
        smtpc_close(&h.c);
    }
    /* PLAIN offered without TLS: never sent in clear, even with CRAM-MD5 available. */
    h_start(&h, &o, "250-relay\r\n250-AUTH PLAIN\r\n250 ATRN");
    assert_string_equal(h.out, "QUIT\r\n");
    assert_res(&h.c.session, SMTPC_FAIL, 0, "without TLS");
    smtpc_close(&h.c);
    /* Without the function, CRAM-MD5 is not tried. */
    o.cram = NULL;
    h_start(&h, &o, EHLO_CRAM);
    assert_string_equal(h.out, "QUIT\r\n");
    assert_res(&h.c.session, SMTPC_FAIL, 0, "without TLS");
    smtpc_close(&h.c);
    /* Under TLS: PLAIN when offered, CRAM-MD5 when only that is. */
    o.cram = fake_cram;
    o.tls = SMTPC_TLS_REQUIRED;
    h_start_tls(&h, &o, "250-relay\r\n250 STARTTLS",
                "250-relay\r\n250-AUTH CRAM-MD5 PLAIN\r\n250 ATRN");
    assert_string_equal(h.out, AUTH_ALICE);
    smtpc_close(&h.c);
    h_start_tls(&h, &o, "250-relay\r\n250 STARTTLS", EHLO_CRAM);
    assert_string_equal(h.out, "AUTH CRAM-MD5\r\n");
    smtpc_close(&h.c);
}

/* ---- argument checks ---- */

static void test_bad_arguments(void **state)
{
    (void)state;
    struct smtpc c;
    struct smtpc_opts o = deliver_opts;
    o.mode = SMTPC_MODE_ATRN;
    assert_int_equal(smtpc_init(&c, &o), -EINVAL); /* ATRN without domains */
    o = deliver_opts;
    o.helo = NULL;
    assert_int_equal(smtpc_init(&c, &o), -EINVAL);
    o.helo = "bad\r\nname";
    assert_int_equal(smtpc_init(&c, &o), -EINVAL);
    o = deliver_opts;
    o.mode = SMTPC_MODE_ETRN;
    assert_int_equal(smtpc_init(&c, &o), -EINVAL); /* no arguments */
    static const char *const bad[] = {"x.test\r\nQUIT"};
    o.etrn = bad;
    o.netrn = 1;
    assert_int_equal(smtpc_init(&c, &o), -EINVAL);

    struct h h;
    h_start(&h, &deliver_opts, EHLO_PIPE);
    /* Command injection through an address or a parameter is refused. */
    static const struct smtpc_rcpt evil[] = {{"b@y.test>\r\nRCPT TO:<c@y.test", NULL, NULL}};
    struct smtpc_msg m = {.sender = "a@x.test", .rcpts = evil, .nrcpt = 1};
    assert_int_equal(smtpc_msg_begin(&h.c, &m), -EINVAL);
    m.rcpts = rcpts3;
    m.envid = "a b";
    assert_int_equal(smtpc_msg_begin(&h.c, &m), -EINVAL);
    m.envid = NULL;
    m.nrcpt = 0;
    assert_int_equal(smtpc_msg_begin(&h.c, &m), -EINVAL);
    h_drain(&h);
    assert_int_equal(h.out_len, 0);
    assert_int_equal(h.c.state, SMTPC_ST_IDLE);
    smtpc_close(&h.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_happy_path),
        cmocka_unit_test(test_helo_fallback_and_8bit_deferred),
        cmocka_unit_test(test_rcpt_refusals_and_data_end_4xx),
        cmocka_unit_test(test_mail_refused),
        cmocka_unit_test(test_no_recipient_then_rset),
        cmocka_unit_test(test_data_refused),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_pipelined_happy_path),
        cmocka_unit_test(test_pipelined_mail_refused_never_bounces_rcpts),
        cmocka_unit_test(test_pipelined_no_rcpt_but_354),
        cmocka_unit_test(test_bdat_cases),
        cmocka_unit_test(test_chunking_without_pipelining),
        cmocka_unit_test(test_bdat_drop_waiting_final_reply),
        cmocka_unit_test(test_drop_mid_data_defers_all),
        cmocka_unit_test(test_drop_waiting_final_reply),
        cmocka_unit_test(test_malformed_reply_mid_transaction),
        cmocka_unit_test(test_unexpected_reply_and_421),
        cmocka_unit_test(test_bad_greeting),
        cmocka_unit_test(test_starttls),
        cmocka_unit_test(test_auth_plain_replies),
        cmocka_unit_test(test_auth_never_without_tls_or_offer),
        cmocka_unit_test(test_auth_etrn_and_arguments),
        cmocka_unit_test(test_stuff_every_split),
        cmocka_unit_test(test_stuff_worst_case_bound),
        cmocka_unit_test(test_etrn_mode),
        cmocka_unit_test(test_atrn_mode),
        cmocka_unit_test(test_atrn_cram_md5),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
