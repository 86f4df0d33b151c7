/* Unit tests for fetchd's ETRN reply interpretation (fetchd/etrn.c, pure part): which
 * reply codes are done, retried or fatal (RFC 1985 5); and that every domain gets its ETRN
 * even after another answered 251 (smtpc's ETRN mode driven by recorded replies, each
 * result then judged). The relay keys' tests are in test_fetchd_release_policy.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "fetchd_etrn.h"
#include "release.h"
#include "smtpc.h"

static void test_verdicts(void **state)
{
    (void)state;
    static const struct {
        int code;
        enum release_verdict v;
    } cases[] =
        {
            /* RFC 1985 5.1-5.3: started, nothing waiting, pending started, n pending started */
            {250, RELEASE_DONE},  {251, RELEASE_DONE},
            {252, RELEASE_DONE},  {253, RELEASE_DONE},
            {254, RELEASE_DONE},  /* an unknown 2xx is still success */
            {458, RELEASE_RETRY}, /* unable to queue messages now */
            {421, RELEASE_RETRY}, /* service closing */
            {450, RELEASE_RETRY}, {451, RELEASE_RETRY},
            {452, RELEASE_RETRY}, {454, RELEASE_RETRY},
            {459, RELEASE_FATAL}, /* node not allowed: asking again will not help */
            {500, RELEASE_FATAL}, /* ETRN unknown */
            {501, RELEASE_FATAL}, /* syntax */
            {502, RELEASE_FATAL}, /* the relay does not offer ETRN (command not implemented) */
            {504, RELEASE_FATAL}, {530, RELEASE_FATAL}, /* authentication required */
            {550, RELEASE_FATAL}, {554, RELEASE_FATAL},
            {0, RELEASE_RETRY},   /* no reply: unreachable, lost connection, timeout */
            {354, RELEASE_RETRY}, /* a 3xx where none belongs: protocol trouble, temporary */
            {199, RELEASE_RETRY}, {600, RELEASE_RETRY},
            {-1, RELEASE_RETRY},  {99999, RELEASE_RETRY},
        };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum release_verdict v = fetchd_etrn_verdict(cases[i].code);
        if (v != cases[i].v)
            fail_msg("code %d: %s, want %s", cases[i].code, release_verdict_name(v),
                     release_verdict_name(cases[i].v));
    }
}

/* Feeds a reply line to the machine and returns what it wrote (static buffer). */
static const char *feed(struct smtpc *c, const char *line)
{
    static char out[2048];
    out[0] = '\0';
    if (line)
        assert_int_equal(smtpc_on_line(c, line, strlen(line)), 0);
    unsigned act = smtpc_take_actions(c);
    if (act & SMTPC_ACT_WRITE) {
        size_t len = 0;
        char *p = smtpc_out_take(c, &len);
        assert_true(len < sizeof(out));
        memcpy(out, p, len);
        out[len] = '\0';
        free(p);
    }
    return out;
}

static void test_every_domain_after_251(void **state)
{
    (void)state;
    const char *doms[] = {"a.test", "b.test", "c.test", "d.test", "e.test"};
    struct smtpc c;
    struct smtpc_opts o = {.mode = SMTPC_MODE_ETRN,
                           .helo = "branch.example.test",
                           .tls = SMTPC_TLS_NEVER,
                           .etrn = doms,
                           .netrn = 5};
    assert_int_equal(smtpc_init(&c, &o), 0);
    assert_string_equal(feed(&c, "220 relay ESMTP"), "EHLO branch.example.test\r\n");
    feed(&c, "250-relay");
    assert_string_equal(feed(&c, "250 ETRN"), "ETRN a.test\r\n");
    /* 251 first: fetchmail would stop here; the rest must still be asked. */
    assert_string_equal(feed(&c, "251 2.0.0 OK, no messages waiting for node a.test"),
                        "ETRN b.test\r\n");
    assert_string_equal(feed(&c, "253 2.0.0 OK, 3 pending messages for node b.test started"),
                        "ETRN c.test\r\n");
    assert_string_equal(feed(&c, "459 4.7.1 Node c.test not allowed: not served"),
                        "ETRN d.test\r\n");
    assert_string_equal(feed(&c, "458 4.3.0 Unable to queue messages for node d.test"),
                        "ETRN e.test\r\n");
    assert_string_equal(feed(&c, "500 5.5.1 ETRN unknown"), "QUIT\r\n");
    feed(&c, "221 bye");
    assert_int_equal(c.state, SMTPC_ST_DONE);
    static const struct {
        int code;
        enum release_verdict v;
    } want[] = {{251, RELEASE_DONE},
                {253, RELEASE_DONE},
                {459, RELEASE_FATAL},
                {458, RELEASE_RETRY},
                {500, RELEASE_FATAL}};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(c.etrn_res[i].code, want[i].code);
        assert_int_equal(fetchd_etrn_verdict(c.etrn_res[i].code), want[i].v);
    }
    assert_non_null(strstr(c.etrn_res[1].text, "3 pending messages"));
    smtpc_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_every_domain_after_251),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
