/* Unit tests for fetchd/atrn_srv.c, the server role after ATRN: every command in every
 * state, the events the glue answers (MAIL, each RCPT, the message) and the replies made of
 * those answers, the DATA decoder's refusals (bare LF, long lines, size), BDAT chunks (content
 * never read as commands, refusals answered in order, the pipelined chunks after a failed one,
 * the pause while a whole message arrives during MAIL's event), RESET when a
 * transaction the local MTA knows of is abandoned, and the input kept while an event is
 * open. Each dialogue is fed whole and split at every offset, with the glue answering at
 * once or only after all input was fed (pipelining): the replies, the events and the
 * messages handed over must be the same octets every time. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "atrn_srv.h"

/* A growing string. */
struct buf {
    char *p;
    size_t len;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    b->p = realloc(b->p, b->len + n + 1);
    assert_non_null(b->p);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* The stand-in glue: the local MTA refuses recipients by their local part ("bad" 550,
 * "full" 452, "down" no answer), a sender "down@..." (the local MTA is down: no answer),
 * and a message whose body contains "REJECT" (554) or "DEFER" (451). */
static void glue_answer(struct atrn_srv *s, struct buf *events)
{
    char line[2048];
    const struct atrn_srv_msg *m = &s->msg;
    int rc = 0;
    switch (s->event) {
    case ATRN_SRV_EV_MAIL:
        snprintf(line, sizeof(line), "MAIL<%s>%s|", m->sender, m->body_8bit ? "8" : "");
        buf_str(events, line);
        if (strncmp(m->sender, "down@", 5) == 0)
            rc = atrn_srv_answer(s, 451, "4.4.1", "local MTA not reachable");
        else
            rc = atrn_srv_answer(s, 250, "2.1.0", "local: sender ok");
        break;
    case ATRN_SRV_EV_RCPT: {
        const char *r = m->rcpts[m->nrcpt];
        snprintf(line, sizeof(line), "RCPT<%s>|", r);
        buf_str(events, line);
        if (strncmp(r, "bad@", 4) == 0)
            rc = atrn_srv_answer(s, 550, "5.1.1", "local: no such user");
        else if (strncmp(r, "full@", 5) == 0)
            rc = atrn_srv_answer(s, 452, "4.2.2", "local: mailbox full");
        else if (strncmp(r, "odd@", 4) == 0)
            rc = atrn_srv_answer(s, 354, NULL, "nonsense"); /* 3xx: made 451 4.3.0 */
        else
            rc = atrn_srv_answer(s, 250, "2.1.5", "local: recipient ok");
        break;
    }
    case ATRN_SRV_EV_MSG:
        snprintf(line, sizeof(line), "MSG n=%zu len=%zu [", m->nrcpt, m->len);
        buf_str(events, line);
        buf_add(events, m->body, m->len);
        buf_str(events, "]|");
        if (memmem(m->body, m->len, "REJECT", 6))
            rc = atrn_srv_answer(s, 554, "5.7.1", "local: content refused");
        else if (memmem(m->body, m->len, "DEFER", 5))
            rc = atrn_srv_answer(s, 451, "4.3.0", "local: try later");
        else
            rc = atrn_srv_answer(s, 250, "2.0.0", "local: queued as X1");
        break;
    case ATRN_SRV_EV_NONE:
        fail_msg("answer without an event");
    }
    assert_int_equal(rc, 0);
}

/* Takes every action: replies to out, events to events; answers open events when
 * answer_now. */
static void glue_run(struct atrn_srv *s, struct buf *out, struct buf *events, bool answer_now)
{
    for (int guard = 0; guard < 10000; guard++) {
        unsigned act = atrn_srv_take_actions(s);
        if (act & ATRN_SRV_ACT_WRITE) {
            size_t len;
            char *o = atrn_srv_out_take(s, &len);
            assert_non_null(o);
            buf_add(out, o, len);
            free(o);
        }
        if (act & ATRN_SRV_ACT_RESET)
            buf_str(events, "RESET|");
        if (act & ATRN_SRV_ACT_CLOSE)
            buf_str(events, "CLOSE|");
        if (s->state == ATRN_SRV_ST_WAIT && answer_now && s->event != ATRN_SRV_EV_NONE) {
            glue_answer(s, events);
            continue;
        }
        if (!act)
            return;
    }
    fail_msg("glue loop did not settle");
}

/* Runs one dialogue: input split at split (== len: whole), answers at once or deferred. */
static void dialogue(const char *in, size_t len, size_t split, bool answer_now, uint64_t size_max,
                     struct buf *out, struct buf *events)
{
    struct atrn_srv s;
    struct atrn_srv_opts o = {.name = "branch.test", .size_max = size_max};
    assert_int_equal(atrn_srv_init(&s, &o), 0);
    glue_run(&s, out, events, answer_now);
    assert_int_equal(atrn_srv_feed(&s, in, split), 0);
    glue_run(&s, out, events, answer_now);
    assert_int_equal(atrn_srv_feed(&s, in + split, len - split), 0);
    glue_run(&s, out, events, answer_now);
    glue_run(&s, out, events, true);
    char tail[128];
    snprintf(tail, sizeof(tail), "END %s taken=%zu refused=%zu temp=%zu quit=%d own=%zu",
             atrn_srv_state_name(s.state), s.nmsgs_taken, s.nmsgs_refused, s.ntemp, s.quit,
             s.nrefusals);
    buf_str(events, tail);
    atrn_srv_close(&s);
}

/* The dialogue fed whole must give exactly want_out and want_events; every split, answered
 * at once or deferred, the same. */
static void check_dialogue(const char *in, uint64_t size_max, const char *want_out,
                           const char *want_events)
{
    size_t len = strlen(in);
    struct buf out0 = {0}, ev0 = {0};
    dialogue(in, len, len, true, size_max, &out0, &ev0);
    if (strcmp(out0.p, want_out) != 0)
        fail_msg("replies differ:\n--- got\n%s--- want\n%s", out0.p, want_out);
    if (strcmp(ev0.p, want_events) != 0)
        fail_msg("events differ:\n--- got\n%s\n--- want\n%s", ev0.p, want_events);
    for (int now = 0; now < 2; now++) {
        for (size_t k = 0; k <= len; k++) {
            struct buf out = {0}, ev = {0};
            dialogue(in, len, k, now, size_max, &out, &ev);
            if (strcmp(out.p, out0.p) != 0 || strcmp(ev.p, ev0.p) != 0)
                fail_msg("split at %zu (answer %s) differs:\n%s\n%s", k, now ? "now" : "later",
                         out.p, ev.p);
            free(out.p);
            free(ev.p);
        }
    }
    free(out0.p);
    free(ev0.p);
}

#define GREETING "220 branch.test ESMTP fetchd (ATRN)\r\n"
#define EHLO_REPLY                                                                                 \
    "250-branch.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-CHUNKING\r\n"                        \
    "250-SIZE 1000000\r\n250 ENHANCEDSTATUSCODES\r\n"

static void test_transaction_per_recipient(void **state)
{
    (void)state;
    /* Two messages: the first with one recipient taken, one refused for good and one for
     * now; dot-stuffing undone; the second refused by the local MTA's content check. */
    check_dialogue("EHLO relay.test\r\n"
                   "MAIL FROM:<a@x.test> BODY=8BITMIME\r\n"
                   "RCPT TO:<u@branch.test>\r\n"
                   "RCPT TO:<bad@branch.test>\r\n"
                   "RCPT TO:<full@branch.test>\r\n"
                   "DATA\r\n"
                   "Subject: t\r\n\r\n..dot\r\nline\r\n.\r\n"
                   "MAIL FROM:<>\r\n"
                   "RCPT TO:<v@branch.test>\r\n"
                   "DATA\r\n"
                   "REJECT me\r\n.\r\n"
                   "QUIT\r\n",
                   1000000,
                   GREETING EHLO_REPLY "250 2.1.0 local: sender ok\r\n"
                                       "250 2.1.5 local: recipient ok\r\n"
                                       "550 5.1.1 local: no such user\r\n"
                                       "452 4.2.2 local: mailbox full\r\n"
                                       "354 end data with <CR><LF>.<CR><LF>\r\n"
                                       "250 2.0.0 local: queued as X1\r\n"
                                       "250 2.1.0 local: sender ok\r\n"
                                       "250 2.1.5 local: recipient ok\r\n"
                                       "354 end data with <CR><LF>.<CR><LF>\r\n"
                                       "554 5.7.1 local: content refused\r\n"
                                       "221 2.0.0 branch.test closing\r\n",
                   "MAIL<a@x.test>8|RCPT<u@branch.test>|RCPT<bad@branch.test>|"
                   "RCPT<full@branch.test>|MSG n=1 len=26 [Subject: t\r\n\r\n.dot\r\nline\r\n]|"
                   "MAIL<>|RCPT<v@branch.test>|MSG n=1 len=11 [REJECT me\r\n]|CLOSE|"
                   "END done taken=1 refused=1 temp=1 quit=1 own=0");
}

static void test_local_down_and_odd_answers(void **state)
{
    (void)state;
    /* MAIL refused for now (local MTA down): RCPT and DATA then have no transaction. A 3xx
     * answer to RCPT is nonsense and becomes 451 4.3.0. A message deferred by the local
     * MTA counts as temporary. */
    check_dialogue("EHLO relay.test\r\n"
                   "MAIL FROM:<down@x.test>\r\n"
                   "RCPT TO:<u@branch.test>\r\n"
                   "DATA\r\n"
                   "MAIL FROM:<a@x.test>\r\n"
                   "RCPT TO:<odd@branch.test>\r\n"
                   "DATA\r\n"
                   "RCPT TO:<u@branch.test>\r\n"
                   "DATA\r\n"
                   "DEFER\r\n.\r\n",
                   1000000,
                   GREETING EHLO_REPLY "451 4.4.1 local MTA not reachable\r\n"
                                       "503 5.5.1 need MAIL before RCPT\r\n"
                                       "503 5.5.1 need RCPT before DATA\r\n"
                                       "250 2.1.0 local: sender ok\r\n"
                                       "451 4.3.0 nonsense\r\n"
                                       "554 5.5.1 no valid recipients\r\n"
                                       "250 2.1.5 local: recipient ok\r\n"
                                       "354 end data with <CR><LF>.<CR><LF>\r\n"
                                       "451 4.3.0 local: try later\r\n",
                   "MAIL<down@x.test>|MAIL<a@x.test>|RCPT<odd@branch.test>|RCPT<u@branch.test>|"
                   "MSG n=1 len=7 [DEFER\r\n]|END ready taken=0 refused=1 temp=3 quit=0 own=3");
}

static void test_commands_in_every_state(void **state)
{
    (void)state;
    /* Before EHLO; verbs not offered; syntax; RSET and EHLO abandoning a transaction the
     * local MTA knows of (RESET); nested MAIL; parameters not offered. */
    check_dialogue("MAIL FROM:<a@x.test>\r\n"
                   "NOOP\r\n"
                   "HELO relay.test\r\n"
                   "XYZZY\r\n"
                   "VRFY u\r\n"
                   "BDAT 3 LAST\r\nxyz"
                   "STARTTLS\r\n"
                   "AUTH PLAIN AGEAYg==\r\n"
                   "ATRN branch.test\r\n"
                   "ETRN branch.test\r\n"
                   "TURN\r\n"
                   "RCPT TO:<u@branch.test>\r\n"
                   "MAIL FROM:<a@x.test\r\n"
                   "MAIL FROM:<a@x.test> SMTPUTF8\r\n"
                   "MAIL FROM:<a@x.test> SIZE=1000001\r\n"
                   "MAIL FROM:<a@x.test> SIZE=1000000\r\n"
                   "MAIL FROM:<b@x.test>\r\n"
                   "RSET\r\n"
                   "MAIL FROM:<c@x.test>\r\n"
                   "RCPT TO:<u@branch.test> NOTIFY=NEVER\r\n"
                   "RCPT TO:<u@branch.test>\r\n"
                   "EHLO again.test\r\n"
                   "DATA\r\n"
                   "bare LF\n"
                   "RSET\r\n",
                   1000000,
                   GREETING "503 5.5.1 EHLO or HELO first\r\n"
                            "250 2.0.0 ok\r\n"
                            "250 branch.test\r\n"
                            "500 5.5.1 command unrecognized\r\n"
                            "502 5.5.1 VRFY not implemented\r\n"
                            "503 5.5.1 BDAT needs EHLO (CHUNKING)\r\n"
                            "502 5.5.1 STARTTLS not implemented\r\n"
                            "502 5.5.1 AUTH not implemented\r\n"
                            "502 5.5.1 ATRN not implemented\r\n"
                            "502 5.5.1 ETRN not implemented\r\n"
                            "502 5.5.1 TURN not implemented\r\n"
                            "503 5.5.1 need MAIL before RCPT\r\n"
                            "501 5.5.4 syntax error\r\n"
                            "555 5.5.4 SMTPUTF8 not offered\r\n"
                            "552 5.3.4 message size exceeds fixed maximum of 1000000\r\n"
                            "250 2.1.0 local: sender ok\r\n"
                            "503 5.5.1 nested MAIL command\r\n"
                            "250 2.0.0 reset\r\n"
                            "250 2.1.0 local: sender ok\r\n"
                            "555 5.5.4 DSN not offered\r\n"
                            "250 2.1.5 local: recipient ok\r\n" EHLO_REPLY
                            "503 5.5.1 need RCPT before DATA\r\n"
                            "500 5.5.2 bare LF: lines end with CRLF\r\n"
                            "250 2.0.0 reset\r\n",
                   "MAIL<a@x.test>|RESET|MAIL<c@x.test>|RCPT<u@branch.test>|RESET|"
                   "END ready taken=0 refused=0 temp=0 quit=0 own=17");
}

static void test_message_refused_here(void **state)
{
    (void)state;
    /* Refused by the decoder: never handed over, and the local transaction is dropped
     * (RESET). Bare LF (RFC 5321 2.3.8), "\n.\n" is no end of data; a text line of 1001
     * octets with its CRLF (4.5.3.1.6) while 1000 pass; a message over SIZE. */
    char in[8192], want[4096];
    char l1000[1001], l1001[1002], big[1200];
    memset(l1000, 'a', 998); /* + CRLF: 1000 octets, the limit itself */
    l1000[998] = '\0';
    memset(l1001, 'b', 999);
    l1001[999] = '\0';
    memset(big, 'c', 600);
    big[600] = '\0';
    snprintf(in, sizeof(in),
             "EHLO r\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<u@b.test>\r\nDATA\r\n"
             "one\nbare\n.\nstill data\r\n.\r\n"
             "MAIL FROM:<a@x.test>\r\nRCPT TO:<u@b.test>\r\nDATA\r\n%s\r\n.\r\n"
             "MAIL FROM:<a@x.test>\r\nRCPT TO:<u@b.test>\r\nDATA\r\n%s\r\n.\r\n"
             "MAIL FROM:<a@x.test>\r\nRCPT TO:<u@b.test>\r\nDATA\r\n%s\r\n%s\r\n.\r\n",
             l1001, l1000, big, big);
    snprintf(want, sizeof(want),
             GREETING "250-branch.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-CHUNKING\r\n"
                      "250-SIZE 1010\r\n"
                      "250 ENHANCEDSTATUSCODES\r\n"
                      "250 2.1.0 local: sender ok\r\n250 2.1.5 local: recipient ok\r\n"
                      "354 end data with <CR><LF>.<CR><LF>\r\n"
                      "554 5.6.0 bare CR or LF in message (only CRLF ends a line)\r\n"
                      "250 2.1.0 local: sender ok\r\n250 2.1.5 local: recipient ok\r\n"
                      "354 end data with <CR><LF>.<CR><LF>\r\n"
                      "554 5.6.0 text line over 1000 octets (RFC 5321 4.5.3.1.6)\r\n"
                      "250 2.1.0 local: sender ok\r\n250 2.1.5 local: recipient ok\r\n"
                      "354 end data with <CR><LF>.<CR><LF>\r\n"
                      "250 2.0.0 local: queued as X1\r\n"
                      "250 2.1.0 local: sender ok\r\n250 2.1.5 local: recipient ok\r\n"
                      "354 end data with <CR><LF>.<CR><LF>\r\n"
                      "552 5.3.4 message too big\r\n");
    char want_ev[2048];
    snprintf(want_ev, sizeof(want_ev),
             "MAIL<a@x.test>|RCPT<u@b.test>|RESET|MAIL<a@x.test>|RCPT<u@b.test>|RESET|"
             "MAIL<a@x.test>|RCPT<u@b.test>|MSG n=1 len=1000 [%s\r\n]|"
             "MAIL<a@x.test>|RCPT<u@b.test>|RESET|END ready taken=1 refused=3 temp=0 quit=0 own=3",
             l1000);
    check_dialogue(in, 1010, want, want_ev);
}

static void test_recipient_and_size_limits(void **state)
{
    (void)state;
    /* RFC 5321 4.5.3.1.8: 100 recipients must be taken; the 101st gets 452 4.5.3 (4.5.3.1.10),
     * and the relay sends it again later. A message of exactly SIZE octets is taken. */
    struct buf in = {0}, out = {0}, ev = {0};
    buf_str(&in, "EHLO r\r\nMAIL FROM:<a@x.test>\r\n");
    for (int i = 1; i <= 101; i++) {
        char line[64];
        snprintf(line, sizeof(line), "RCPT TO:<u%d@branch.test>\r\n", i);
        buf_str(&in, line);
    }
    buf_str(&in, "DATA\r\n0123456789abcdef\r\n.\r\n"); /* 18 octets */
    dialogue(in.p, in.len, in.len, true, 18, &out, &ev);
    char *last452 = strstr(out.p, "452 4.5.3 too many recipients\r\n");
    assert_non_null(last452);
    assert_null(strstr(last452 + 1, "452 "));
    size_t n250 = 0;
    for (char *p = out.p; (p = strstr(p, "250 2.1.5 local: recipient ok")) != NULL; p++)
        n250++;
    assert_int_equal(n250, 100);
    assert_non_null(strstr(ev.p, "MSG n=100 len=18 ["));
    assert_non_null(strstr(out.p, "250 2.0.0 local: queued as X1\r\n"));
    free(out.p);
    free(ev.p);
    out = (struct buf){0};
    ev = (struct buf){0};
    /* One octet more than SIZE: refused. */
    dialogue(in.p, in.len, in.len, true, 17, &out, &ev);
    assert_non_null(strstr(out.p, "552 5.3.4 message too big\r\n"));
    assert_null(strstr(ev.p, "MSG "));
    free(out.p);
    free(ev.p);
    free(in.p);
}

static void test_bdat_chunks_are_content(void **state)
{
    (void)state;
    /* RFC 3030 2: a chunk is its count of octets: "..", CRLF.CRLF and command words inside
     * it are content, stored as they came (no unstuffing); each chunk but the last is
     * answered at once, BDAT LAST with the local MTA's answer. A last line without CRLF is
     * possible by BDAT; the local hand-off (smtpc_stuff) completes it. A CRLF split between
     * two chunks is one line end. */
    check_dialogue("EHLO relay.test\r\n"
                   "MAIL FROM:<a@x.test> BODY=8BITMIME\r\n"
                   "RCPT TO:<u@branch.test>\r\n"
                   "RCPT TO:<bad@branch.test>\r\n"
                   "BDAT 6\r\nSubj\r\n"
                   "BDAT 13\r\n..\r\n.\r\nQUIT\r\n"
                   "BDAT 0 LAST\r\n"
                   "MAIL FROM:<>\r\n"
                   "RCPT TO:<v@branch.test>\r\n"
                   "BDAT 3 LAST\r\nabc"
                   "MAIL FROM:<>\r\n"
                   "RCPT TO:<v@branch.test>\r\n"
                   "BDAT 3\r\nab\r"
                   "BDAT 2 LAST\r\n\nc"
                   "MAIL FROM:<>\r\n"
                   "RCPT TO:<v@branch.test>\r\n"
                   "BDAT 11 LAST\r\nREJECT me\r\n"
                   "QUIT\r\n",
                   1000000,
                   GREETING EHLO_REPLY "250 2.1.0 local: sender ok\r\n"
                                       "250 2.1.5 local: recipient ok\r\n"
                                       "550 5.1.1 local: no such user\r\n"
                                       "250 2.0.0 6 octets received\r\n"
                                       "250 2.0.0 13 octets received\r\n"
                                       "250 2.0.0 local: queued as X1\r\n"
                                       "250 2.1.0 local: sender ok\r\n"
                                       "250 2.1.5 local: recipient ok\r\n"
                                       "250 2.0.0 local: queued as X1\r\n"
                                       "250 2.1.0 local: sender ok\r\n"
                                       "250 2.1.5 local: recipient ok\r\n"
                                       "250 2.0.0 3 octets received\r\n"
                                       "250 2.0.0 local: queued as X1\r\n"
                                       "250 2.1.0 local: sender ok\r\n"
                                       "250 2.1.5 local: recipient ok\r\n"
                                       "554 5.7.1 local: content refused\r\n"
                                       "221 2.0.0 branch.test closing\r\n",
                   "MAIL<a@x.test>8|RCPT<u@branch.test>|RCPT<bad@branch.test>|"
                   "MSG n=1 len=19 [Subj\r\n..\r\n.\r\nQUIT\r\n]|"
                   "MAIL<>|RCPT<v@branch.test>|MSG n=1 len=3 [abc]|"
                   "MAIL<>|RCPT<v@branch.test>|MSG n=1 len=5 [ab\r\nc]|"
                   "MAIL<>|RCPT<v@branch.test>|MSG n=1 len=11 [REJECT me\r\n]|CLOSE|"
                   "END done taken=3 refused=1 temp=0 quit=1 own=0");
}

static void test_bdat_sequence(void **state)
{
    (void)state;
    /* Every refused BDAT still consumes its octets (RFC 3030 2), so "NOOP" or "QUIT" inside
     * a refused chunk is never a command. Before EHLO, after HELO (CHUNKING is an EHLO
     * extension), before MAIL, without an accepted recipient; DATA, RCPT and MAIL between
     * chunks; RSET and EHLO drop the chunks received (RESET). */
    check_dialogue("BDAT 4\r\nNOOP"
                   "HELO r\r\n"
                   "BDAT 2 LAST\r\nhi"
                   "EHLO r\r\n"
                   "BDAT 4\r\nQUIT"
                   "MAIL FROM:<a@x.test>\r\n"
                   "RCPT TO:<bad@branch.test>\r\n"
                   "BDAT 5 LAST\r\nhello"
                   "RCPT TO:<u@branch.test>\r\n"
                   "BDAT 3\r\nabc"
                   "DATA\r\n"
                   "RCPT TO:<w@branch.test>\r\n"
                   "MAIL FROM:<b@x.test>\r\n"
                   "RSET\r\n"
                   "BDAT 1 LAST\r\nz"
                   "MAIL FROM:<c@x.test>\r\n"
                   "RCPT TO:<u@branch.test>\r\n"
                   "BDAT 2\r\nab"
                   "EHLO again\r\n"
                   "QUIT\r\n",
                   1000000,
                   GREETING "503 5.5.1 EHLO or HELO first\r\n"
                            "250 branch.test\r\n"
                            "503 5.5.1 BDAT needs EHLO (CHUNKING)\r\n" EHLO_REPLY
                            "503 5.5.1 need MAIL and RCPT before BDAT\r\n"
                            "250 2.1.0 local: sender ok\r\n"
                            "550 5.1.1 local: no such user\r\n"
                            "554 5.5.1 no valid recipients\r\n"
                            "250 2.1.5 local: recipient ok\r\n"
                            "250 2.0.0 3 octets received\r\n"
                            "503 5.5.1 DATA after BDAT\r\n"
                            "503 5.5.1 RCPT after BDAT\r\n"
                            "503 5.5.1 nested MAIL command\r\n"
                            "250 2.0.0 reset\r\n"
                            "503 5.5.1 need MAIL and RCPT before BDAT\r\n"
                            "250 2.1.0 local: sender ok\r\n"
                            "250 2.1.5 local: recipient ok\r\n"
                            "250 2.0.0 2 octets received\r\n" EHLO_REPLY
                            "221 2.0.0 branch.test closing\r\n",
                   "MAIL<a@x.test>|RCPT<bad@branch.test>|RCPT<u@branch.test>|RESET|"
                   "MAIL<c@x.test>|RCPT<u@branch.test>|RESET|CLOSE|"
                   "END done taken=0 refused=0 temp=0 quit=1 own=8");
}

static void test_bdat_cut_mid_chunk(void **state)
{
    (void)state;
    /* The connection goes in the middle of a chunk: the machine is DONE, no message event
     * was raised, so the glue hands nothing to the local MTA and the relay keeps the mail. */
    const char *in = "EHLO r\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<u@b.test>\r\n"
                     "BDAT 4\r\nabcdBDAT 10 LAST\r\nabc";
    struct atrn_srv s;
    struct atrn_srv_opts o = {.name = "branch.test", .size_max = 1000};
    struct buf out = {0}, ev = {0};
    assert_int_equal(atrn_srv_init(&s, &o), 0);
    assert_int_equal(atrn_srv_feed(&s, in, strlen(in)), 0);
    glue_run(&s, &out, &ev, true);
    assert_int_equal(s.state, ATRN_SRV_ST_CHUNK);
    atrn_srv_on_closed(&s);
    assert_int_equal(s.state, ATRN_SRV_ST_DONE);
    glue_run(&s, &out, &ev, true);
    assert_string_equal(ev.p, "MAIL<a@x.test>|RCPT<u@b.test>|");
    assert_non_null(strstr(out.p, "250 2.0.0 4 octets received\r\n"));
    assert_int_equal(s.nmsgs_taken, 0);
    free(out.p);
    free(ev.p);
    atrn_srv_close(&s);
}

static void test_bdat_content_and_size(void **state)
{
    (void)state;
    /* The content rules of DATA hold for chunks: a bare LF refuses the message after its
     * chunk, and the chunks pipelined after it get the same reply until BDAT LAST. Line
     * length: in BDAT a leading "." is content, not a transparency dot, so "." + 997 + CRLF
     * (1000) passes and "." + 998 + CRLF (1001) is refused (RFC 5321 4.5.3.1.6). Size: a
     * chunk that would pass SIZE is refused from its count (552), one of exactly SIZE taken. */
    char in[16384], want[8192], want_ev[4096];
    char d1000[1001], d1001[1002], c600[601], big[1012], half[505];
    memset(d1000, 'a', 998);
    d1000[0] = '.';
    d1000[998] = '\0';
    memset(d1001, 'b', 999);
    d1001[0] = '.';
    d1001[999] = '\0';
    memset(c600, 'c', 598);
    c600[598] = '\0';
    memset(big, 'e', 1011);
    big[1011] = '\0';
    memset(half, 'd', 503);
    half[503] = '\0';
#define TX "MAIL FROM:<a@x.test>\r\nRCPT TO:<u@b.test>\r\n"
    snprintf(in, sizeof(in),
             "EHLO r\r\n" TX "BDAT 5\r\nab\ncd"
             "BDAT 4\r\nxy\r\n"
             "BDAT 2 LAST\r\nzz"
             "BDAT 1 LAST\r\nq" TX "BDAT 1001 LAST\r\n%s\r\n" TX "BDAT 1000 LAST\r\n%s\r\n" TX
             "BDAT 1011 LAST\r\n%s" TX "BDAT 600\r\n%s\r\n"
             "BDAT 600\r\n%s\r\n"
             "BDAT 0 LAST\r\n" TX "BDAT 1010 LAST\r\n%s\r\n%s\r\n" TX "BDAT 3 LAST\r\nab\r",
             d1001, d1000, big, c600, c600, half, half);
#define OK_TX   "250 2.1.0 local: sender ok\r\n250 2.1.5 local: recipient ok\r\n"
#define BARE    "554 5.6.0 bare CR or LF in message (only CRLF ends a line)\r\n"
#define TOO_BIG "552 5.3.4 message size exceeds fixed maximum of 1010\r\n"
    snprintf(want, sizeof(want),
             GREETING "250-branch.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-CHUNKING\r\n"
                      "250-SIZE 1010\r\n250 ENHANCEDSTATUSCODES\r\n" OK_TX BARE BARE BARE
                      "503 5.5.1 need MAIL and RCPT before BDAT\r\n" OK_TX
                      "554 5.6.0 text line over 1000 octets (RFC 5321 4.5.3.1.6)\r\n" OK_TX
                      "250 2.0.0 local: queued as X1\r\n" OK_TX TOO_BIG OK_TX
                      "250 2.0.0 600 octets received\r\n" TOO_BIG TOO_BIG OK_TX
                      "250 2.0.0 local: queued as X1\r\n" OK_TX BARE);
#define EV_TX "MAIL<a@x.test>|RCPT<u@b.test>|"
    snprintf(want_ev, sizeof(want_ev),
             EV_TX "RESET|" EV_TX "RESET|" EV_TX "MSG n=1 len=1000 [%s\r\n]|" EV_TX "RESET|" EV_TX
                   "RESET|" EV_TX "MSG n=1 len=1010 [%s\r\n%s\r\n]|" EV_TX
                   "RESET|END ready taken=2 refused=5 temp=0 quit=0 own=9",
             d1000, half, half);
#undef TX
#undef OK_TX
#undef BARE
#undef TOO_BIG
#undef EV_TX
    check_dialogue(in, 1010, want, want_ev);
}

static void test_bdat_whole_message_while_mail_waits(void **state)
{
    (void)state;
    /* The relay sends MAIL, RCPT and every chunk without waiting: a 200 KiB message arrives
     * while MAIL's event is open. The machine asks the glue to pause (it keeps no more than
     * ATRN_SRV_HOLD_MAX and one read), and after the answers the message is whole. */
    enum { LINES = 2600, LINE = 80, HALF = LINES * LINE / 2 };
    struct buf in = {0};
    char head[64];
    buf_str(&in, "EHLO r\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<u@branch.test>\r\n");
    char line[LINE + 1];
    memset(line, 'x', LINE - 2);
    memcpy(line + LINE - 2, "\r\n", 3);
    for (int part = 0; part < 2; part++) {
        snprintf(head, sizeof(head), "BDAT %d%s\r\n", HALF, part ? " LAST" : "");
        buf_str(&in, head);
        for (int i = 0; i < LINES / 2; i++)
            buf_str(&in, line);
    }
    buf_str(&in, "QUIT\r\n");
    struct atrn_srv s;
    struct atrn_srv_opts o = {.name = "branch.test", .size_max = 1000000};
    assert_int_equal(atrn_srv_init(&s, &o), 0);
    struct buf out = {0}, ev = {0};
    size_t off = 0, piece = 4096, pauses = 0;
    for (int guard = 0; guard < 100000 && s.state != ATRN_SRV_ST_DONE; guard++) {
        glue_run(&s, &out, &ev, false);
        if (atrn_srv_paused(&s) || (off == in.len && s.state == ATRN_SRV_ST_WAIT)) {
            pauses += atrn_srv_paused(&s);
            glue_answer(&s, &ev);
            continue;
        }
        assert_true(off < in.len);
        size_t n = in.len - off < piece ? in.len - off : piece;
        assert_int_equal(atrn_srv_feed(&s, in.p + off, n), 0);
        assert_true(s.hold_len <= ATRN_SRV_HOLD_MAX + piece);
        off += n;
    }
    glue_run(&s, &out, &ev, true);
    assert_int_equal(s.state, ATRN_SRV_ST_DONE);
    assert_true(pauses >= 1);
    assert_int_equal(s.nmsgs_taken, 1);
    char want[64];
    snprintf(want, sizeof(want), "MSG n=1 len=%d [", 2 * HALF);
    assert_non_null(strstr(ev.p, want));
    assert_non_null(strstr(out.p, "250 2.0.0 local: queued as X1\r\n221 2.0.0"));
    free(in.p);
    free(out.p);
    free(ev.p);
    atrn_srv_close(&s);
}

static void test_long_command_line(void **state)
{
    (void)state;
    /* A command line past the longest the grammar allows is answered once, at its LF. */
    size_t n = SMTP_CMD_LINE_LONGEST + 10;
    char *in = malloc(n + 64);
    assert_non_null(in);
    memcpy(in, "NOOP ", 5);
    memset(in + 5, 'x', n - 5);
    memcpy(in + n, "\r\nNOOP\r\n", 9);
    struct buf out = {0}, ev = {0};
    dialogue(in, strlen(in), strlen(in), true, 1000, &out, &ev);
    assert_string_equal(out.p, GREETING "500 5.5.2 line too long\r\n250 2.0.0 ok\r\n");
    free(out.p);
    free(ev.p);
    free(in);
}

static void test_hold_limit_and_answer_without_event(void **state)
{
    (void)state;
    struct atrn_srv s;
    struct atrn_srv_opts o = {.name = "branch.test", .size_max = 1000};
    assert_int_equal(atrn_srv_init(&s, &o), 0);
    assert_int_equal(atrn_srv_answer(&s, 250, NULL, "x"), -EBUSY);
    const char *cmds = "EHLO r\r\nMAIL FROM:<a@x.test>\r\n";
    assert_int_equal(atrn_srv_feed(&s, cmds, strlen(cmds)), 0);
    assert_int_equal(s.state, ATRN_SRV_ST_WAIT);
    assert_int_equal(s.event, ATRN_SRV_EV_MAIL);
    /* Input while the event is open is kept; from ATRN_SRV_HOLD_MAX on the glue is told to
     * stop reading, and beyond ATRN_SRV_HOLD_HARD (a glue that did not) the session ends. */
    char *junk = malloc(ATRN_SRV_HOLD_HARD + 1);
    assert_non_null(junk);
    memset(junk, 'n', ATRN_SRV_HOLD_HARD + 1);
    assert_int_equal(atrn_srv_feed(&s, junk, ATRN_SRV_HOLD_MAX - 1), 0);
    assert_false(atrn_srv_paused(&s));
    assert_int_equal(atrn_srv_feed(&s, junk, 1), 0);
    assert_true(atrn_srv_paused(&s));
    assert_int_equal(atrn_srv_feed(&s, junk, ATRN_SRV_HOLD_HARD - ATRN_SRV_HOLD_MAX), 0);
    assert_int_equal(atrn_srv_feed(&s, junk, 1), -ENOBUFS);
    unsigned act = atrn_srv_take_actions(&s);
    assert_true(act & ATRN_SRV_ACT_CLOSE);
    size_t len;
    char *out = atrn_srv_out_take(&s, &len);
    assert_non_null(strstr(out, "421 4.3.0 branch.test too much input while delivering"));
    free(out);
    free(junk);
    atrn_srv_close(&s);
    /* Bad options. */
    struct atrn_srv_opts bad[] = {{"", 10}, {"a b", 10}, {"ok", 0}, {NULL, 10}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(atrn_srv_init(&s, &bad[i]), -EINVAL);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(atrn_srv_state_name(ATRN_SRV_ST_WAIT), "wait");
    assert_string_equal(atrn_srv_state_name((enum atrn_srv_state)99), "?");
    assert_string_equal(atrn_srv_event_name(ATRN_SRV_EV_RCPT), "rcpt");
    assert_string_equal(atrn_srv_event_name((enum atrn_srv_event)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transaction_per_recipient),
        cmocka_unit_test(test_local_down_and_odd_answers),
        cmocka_unit_test(test_commands_in_every_state),
        cmocka_unit_test(test_message_refused_here),
        cmocka_unit_test(test_recipient_and_size_limits),
        cmocka_unit_test(test_bdat_chunks_are_content),
        cmocka_unit_test(test_bdat_sequence),
        cmocka_unit_test(test_bdat_content_and_size),
        cmocka_unit_test(test_bdat_cut_mid_chunk),
        cmocka_unit_test(test_bdat_whole_message_while_mail_waits),
        cmocka_unit_test(test_long_command_line),
        cmocka_unit_test(test_hold_limit_and_answer_without_event),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
