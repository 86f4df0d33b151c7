/* Unit tests for fetchd/release_policy.c: how a relay's TLS and AUTH keys are read
 * (release_tls_problem, release_tls_policy, release_tls_verify). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "release_policy.h"
#include "smtpc.h"

static void test_unsupported_relays(void **state)
{
    (void)state;
    struct cfg_relay r;
    memset(&r, 0, sizeof(r));
    r.name = "r";
    r.mode = "etrn";
    r.mode = "atrn";
    /* ATRN may authenticate without TLS (CRAM-MD5 only); ETRN may not. */
    r.tls = "no";
    r.auth_user = "u";
    r.auth_password_file = "f";
    assert_null(release_tls_problem(&r));
    r.mode = "etrn";
    assert_non_null(strstr(release_tls_problem(&r), "needs TLS"));
    /* tls unset: may for ETRN, require (and so a checked certificate) for ATRN. */
    r.tls = NULL;
    r.auth_user = NULL;
    r.auth_password_file = NULL;
    assert_int_equal(release_tls_policy(&r), SMTPC_TLS_OPPORTUNISTIC);
    assert_false(release_tls_verify(&r));
    r.mode = "atrn";
    assert_int_equal(release_tls_policy(&r), SMTPC_TLS_REQUIRED);
    assert_true(release_tls_verify(&r));
    /* port unset: 25 for ETRN, 366 (RFC 2645 3) for ATRN; set: as set. */
    assert_int_equal(release_port(&r), 366);
    r.mode = "etrn";
    assert_int_equal(release_port(&r), 25);
    r.port = 2525;
    assert_int_equal(release_port(&r), 2525);
}

struct tls_key_case {
    const char *tls, *verify, *user, *file;
    const char *problem; /* part of release_tls_problem's sentence, or NULL */
    enum smtpc_tls policy;
    bool verified;
};

static const struct tls_key_case tls_key_cases[] = {
    /* { tls, tls_verify, auth_user, auth_password_file, problem, policy, verify } */
    {"may", "auto", NULL, NULL, NULL, SMTPC_TLS_OPPORTUNISTIC, false}, /* RFC 7435 */
    {"may", "yes", NULL, NULL, NULL, SMTPC_TLS_OPPORTUNISTIC, true},
    {"may", "auto", "u", "/pw", NULL, SMTPC_TLS_OPPORTUNISTIC, true}, /* a password: check */
    {"may", "no", "u", "/pw", NULL, SMTPC_TLS_OPPORTUNISTIC, false},  /* explicit: obeyed */
    {"require", "auto", NULL, NULL, NULL, SMTPC_TLS_REQUIRED, true},
    {"require", "no", NULL, NULL, NULL, SMTPC_TLS_REQUIRED, false},
    {"require", NULL, "u", "/pw", NULL, SMTPC_TLS_REQUIRED, true}, /* unset: auto */
    {"no", "auto", NULL, NULL, NULL, SMTPC_TLS_NEVER, false},
    {"no", "auto", "u", "/pw", "needs TLS", SMTPC_TLS_NEVER, true},
    {"no", "yes", NULL, NULL, "tls_verify = yes needs", SMTPC_TLS_NEVER, true},
    {"require", "auto", "u", NULL, "needs auth_password_file", SMTPC_TLS_REQUIRED, true},
    {"require", "auto", "", "/pw", "auth_user is not", SMTPC_TLS_REQUIRED, true},
};

static void test_tls_keys(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(tls_key_cases) / sizeof(tls_key_cases[0]); i++) {
        const struct tls_key_case *k = &tls_key_cases[i];
        struct cfg_relay r;
        memset(&r, 0, sizeof(r));
        r.name = "r";
        r.mode = "etrn";
        r.tls = (char *)k->tls;
        r.tls_verify = (char *)k->verify;
        r.auth_user = (char *)k->user;
        r.auth_password_file = (char *)k->file;
        const char *p = release_tls_problem(&r);
        if (k->problem ? !p || !strstr(p, k->problem) : p != NULL)
            fail_msg("case %zu: problem \"%s\", want ~\"%s\"", i, p ? p : "(none)",
                     k->problem ? k->problem : "(none)");
        assert_int_equal(release_tls_policy(&r), k->policy);
        assert_int_equal(release_tls_verify(&r), k->verified);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unsupported_relays),
        cmocka_unit_test(test_tls_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
