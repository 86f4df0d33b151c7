/* Unit tests for fetchd/handoff_map.c: the local MTA's answers -> the relay's reply, for
 * one answer (MAIL, RCPT, SMTP's end of data) and for LMTP's one per recipient: taken,
 * refused for good, refused for now, no answer (local MTA down), a mixture, nonsense codes,
 * enhanced codes of the wrong class, control characters in the text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "handoff_map.h"

struct map_case {
    struct handoff_rcpt r[3];
    size_t n;
    int code;
    const char *enh;
    const char *text; /* a part of the reply text */
    size_t ntaken;
};

static const struct map_case cases[] = {
    /* one answer: passed on in its class */
    {{{250, "2.1.5", "ok"}}, 1, 250, "2.1.5", "local MTA: ok", 1},
    {{{251, "", "will forward"}}, 1, 251, "2.0.0", "will forward", 1},
    {{{550, "5.1.1", "no such user"}}, 1, 550, "5.1.1", "no such user", 0},
    {{{450, "4.2.1", "try later"}}, 1, 450, "4.2.1", "try later", 0},
    {{{452, NULL, "full"}}, 1, 452, "4.0.0", "full", 0},
    {{{554, "4.1.1", "wrong class"}}, 1, 554, "5.0.0", "wrong class", 0},
    {{{0, "", "connection refused"}}, 1, 451, "4.4.1", "not reachable: connection refused", 0},
    {{{999, "", "nonsense"}}, 1, 451, "4.4.1", "nonsense", 0},
    {{{199, "", "nonsense"}}, 1, 451, "4.4.1", "nonsense", 0},
    /* LMTP: several */
    {{{250, "2.0.0", "a"}, {250, "2.0.0", "b"}}, 2, 250, "2.0.0", "local MTA: a", 2},
    {{{550, "5.1.1", "a"}, {552, "5.2.2", "b"}}, 2, 550, "5.1.1", "a", 0},
    {{{550, "5.1.1", "a"}, {452, "4.2.2", "b"}}, 2, 452, "4.2.2", "b", 0},
    {{{550, "5.1.1", "a"}, {0, "", "lost"}}, 2, 451, "4.4.1", "lost", 0},
    {{{250, "2.0.0", "a"}, {550, "5.1.1", "b"}, {250, "", "c"}}, 3, 451, "4.3.0", "took 2 of 3", 2},
    {{{250, "2.0.0", "a\r\nInjected: x"}}, 1, 250, "2.0.0", "a  Injected: x", 1},
    /* the enhanced code is not repeated in the text */
    {{{550, "5.1.1", "5.1.1 no such user"}}, 1, 550, "5.1.1", "local MTA: no such user", 0},
};

static void test_map_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct map_case *c = &cases[i];
        struct handoff_reply rep;
        handoff_map(c->r, c->n, &rep);
        if (rep.code != c->code || strcmp(rep.enh, c->enh) != 0 || !strstr(rep.text, c->text) ||
            rep.ntaken != c->ntaken)
            fail_msg("case %zu: got %d %s \"%s\" taken=%zu", i, rep.code, rep.enh, rep.text,
                     rep.ntaken);
        for (const char *p = rep.text; *p; p++)
            assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
    }
}

static void test_nothing_to_map(void **state)
{
    (void)state;
    struct handoff_reply rep;
    handoff_map(NULL, 0, &rep);
    assert_int_equal(rep.code, 451);
    assert_string_equal(rep.enh, "4.3.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_table),
        cmocka_unit_test(test_nothing_to_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
