/* Unit tests for tls.c: two engines handshake by shuttling ciphertext in memory. Certificates
 * are made at start in a mkdtemp() directory with OpenSSL's C API: a good one for mx.test, a
 * second one for reload, an expired one, and a key that matches neither. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hf_err.h"
#include "tls.h"

static char dir[64];
static char good_cert[128], good_key[128];
static char new_cert[128], new_key[128];
static char old_cert[128], old_key[128]; /* expired */
static char other_key[128];
static unsigned char good_spki_sha256[32];

static void path(char *out, const char *name)
{
    snprintf(out, 128, "%s/%s", dir, name);
}

static void write_key(EVP_PKEY *k, const char *file)
{
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

/* Makes a self-signed certificate for cn (also its DNS subjectAltName), valid from
 * not_before to not_after seconds relative to now. */
static void make_cert(const char *cn, long not_before, long not_after, const char *cert_file,
                      const char *key_file, unsigned char *spki_sha256)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(random() & 0x7fffffff));
    X509_gmtime_adj(X509_getm_notBefore(x), not_before);
    X509_gmtime_adj(X509_getm_notAfter(x), not_after);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, k);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    char san[160];
    snprintf(san, sizeof(san), "DNS:%s", cn);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    FILE *f = fopen(cert_file, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    write_key(k, key_file);
    if (spki_sha256) {
        unsigned char *der = NULL;
        int n = i2d_PUBKEY(k, &der);
        assert_true(n > 0);
        unsigned int mdlen = 0;
        assert_int_equal(EVP_Digest(der, (size_t)n, spki_sha256, &mdlen, EVP_sha256(), NULL), 1);
        OPENSSL_free(der);
    }
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/hf-test-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    path(good_cert, "good.pem");
    path(good_key, "good.key");
    path(new_cert, "new.pem");
    path(new_key, "new.key");
    path(old_cert, "old.pem");
    path(old_key, "old.key");
    path(other_key, "other.key");
    make_cert("mx.test", -3600, 86400, good_cert, good_key, good_spki_sha256);
    make_cert("new.test", -3600, 86400, new_cert, new_key, NULL);
    make_cert("mx.test", -2 * 86400, -86400, old_cert, old_key, NULL);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    write_key(k, other_key);
    EVP_PKEY_free(k);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const char *files[] = {good_cert, good_key, new_cert, new_key, old_cert, old_key, other_key};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(dir);
    return 0;
}

/* One side of an in-memory connection: its engine, the plaintext it received, the first
 * negative code tls_read_plain returned. */
struct side {
    struct tls_conn *t;
    char got[4096];
    size_t ngot;
    int rc;
};

/* Moves t's pending ciphertext into peer. Returns the number of octets moved. */
static size_t move(struct tls_conn *t, struct tls_conn *peer)
{
    size_t len;
    unsigned char *p = tls_take_cipher(t, &len);
    if (!p)
        return 0;
    if (peer)
        tls_feed_cipher(peer, p, len);
    free(p);
    return len;
}

static void drive(struct side *s)
{
    while (s->rc == 0) {
        int n = tls_read_plain(s->t, s->got + s->ngot, sizeof(s->got) - 1 - s->ngot);
        if (n < 0)
            s->rc = n;
        if (n <= 0)
            break;
        s->ngot += (size_t)n;
        s->got[s->ngot] = '\0';
    }
}

/* Shuttles ciphertext both ways until neither side has anything more to say. */
static void pump(struct side *c, struct side *s)
{
    for (int round = 0; round < 50; round++) {
        drive(c);
        size_t moved = move(c->t, s->t);
        drive(s);
        moved += move(s->t, c->t);
        if (moved == 0)
            return;
    }
    fail_msg("handshake did not settle");
}

struct pair {
    struct tls_ctx *sctx, *cctx;
    struct side c, s;
};

static void pair_open(struct pair *p, const char *cert, const char *key, const char *ca,
                      const char *host, enum tls_verify v)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(tls_ctx_server_new(cert, key, &p->sctx), 0);
    assert_int_equal(tls_ctx_client_new(ca, &p->cctx), 0);
    assert_int_equal(tls_conn_new(p->sctx, true, NULL, TLS_VERIFY_NONE, &p->s.t), 0);
    assert_int_equal(tls_conn_new(p->cctx, false, host, v, &p->c.t), 0);
    tls_conn_set_log_id(p->s.t, "server");
    tls_conn_set_log_id(p->c.t, "client");
}

static void pair_close(struct pair *p)
{
    tls_conn_free(p->c.t);
    tls_conn_free(p->s.t);
    tls_ctx_free(p->cctx);
    tls_ctx_free(p->sctx);
}

static void test_handshake_and_data(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, good_cert, good_key, good_cert, "mx.test", TLS_VERIFY_CHAIN_AND_HOST);
    assert_false(tls_handshake_done(p.c.t));
    assert_string_equal(tls_version(p.c.t), "");
    /* Written before the handshake: kept and sent once it completes. */
    assert_int_equal(tls_write_plain(p.c.t, "EHLO a.test\r\n", 13), 0);
    pump(&p.c, &p.s);
    assert_int_equal(p.c.rc, 0);
    assert_int_equal(p.s.rc, 0);
    assert_true(tls_handshake_done(p.c.t));
    assert_true(tls_handshake_done(p.s.t));
    assert_string_equal(p.s.got, "EHLO a.test\r\n");
    const char *v = tls_version(p.c.t);
    assert_true(strcmp(v, "TLSv1.3") == 0 || strcmp(v, "TLSv1.2") == 0);
    assert_string_equal(tls_version(p.s.t), v);
    assert_true(tls_cipher(p.c.t)[0] != '\0');
    assert_true(tls_peer_verified(p.c.t));
    assert_string_equal(tls_verify_result_text(p.c.t), "ok");
    assert_false(tls_peer_verified(p.s.t));
    char subj[256];
    assert_int_equal(tls_peer_subject(p.c.t, subj, sizeof(subj)), 0);
    assert_string_equal(subj, "CN=mx.test");
    assert_int_equal(tls_peer_subject(p.s.t, subj, sizeof(subj)), -ENOENT);

    /* Both ways, several records. */
    assert_int_equal(tls_write_plain(p.s.t, "250 ok\r\n", 8), 0);
    assert_int_equal(tls_write_plain(p.s.t, "250 two\r\n", 9), 0);
    assert_int_equal(tls_write_plain(p.c.t, "QUIT\r\n", 6), 0);
    pump(&p.c, &p.s);
    assert_string_equal(p.c.got, "250 ok\r\n250 two\r\n");
    assert_string_equal(p.s.got, "EHLO a.test\r\nQUIT\r\n");

    /* close_notify: the server sees -EPIPE; writes after shutdown are refused. */
    assert_int_equal(tls_shutdown(p.c.t), 0);
    assert_int_equal(tls_write_plain(p.c.t, "x", 1), -EPIPE);
    pump(&p.c, &p.s);
    assert_int_equal(p.s.rc, -EPIPE);
    pair_close(&p);
}

static void test_large_transfer(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, good_cert, good_key, good_cert, "mx.test", TLS_VERIFY_CHAIN_AND_HOST);
    pump(&p.c, &p.s);
    assert_true(tls_handshake_done(p.s.t));
    /* 200 KiB in one write becomes many records; read back in small pieces. */
    size_t len = 200 * 1024;
    char *big = malloc(len);
    assert_non_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(tls_write_plain(p.c.t, big, len), 0);
    assert_true(move(p.c.t, p.s.t) > len);
    size_t got = 0;
    char buf[1000];
    int n;
    while ((n = tls_read_plain(p.s.t, buf, sizeof(buf))) > 0) {
        assert_memory_equal(buf, big + got, (size_t)n);
        got += (size_t)n;
    }
    assert_int_equal(n, 0);
    assert_int_equal(got, len);
    free(big);
    pair_close(&p);
}

static void test_wrong_host(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, good_cert, good_key, good_cert, "other.test", TLS_VERIFY_CHAIN_AND_HOST);
    pump(&p.c, &p.s);
    assert_int_equal(p.c.rc, HF_ETLS);
    assert_int_equal(p.s.rc, HF_ETLS); /* the client's alert */
    assert_false(tls_handshake_done(p.c.t));
    assert_true(tls_failed(p.c.t));
    assert_false(tls_peer_verified(p.c.t));
    assert_string_equal(tls_verify_result_text(p.c.t), "hostname mismatch");
    /* Failed for good. */
    char buf[16];
    assert_int_equal(tls_read_plain(p.c.t, buf, sizeof(buf)), HF_ETLS);
    assert_int_equal(tls_write_plain(p.c.t, "x", 1), HF_ETLS);
    assert_int_equal(tls_feed_cipher(p.c.t, "x", 1), HF_ETLS);
    pair_close(&p);
}

static void test_untrusted_ca(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, good_cert, good_key, new_cert, "mx.test", TLS_VERIFY_CHAIN_AND_HOST);
    pump(&p.c, &p.s);
    assert_int_equal(p.c.rc, HF_ETLS);
    assert_string_equal(tls_verify_result_text(p.c.t), "self-signed certificate");
    pair_close(&p);
}

static void test_expired(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, old_cert, old_key, old_cert, "mx.test", TLS_VERIFY_CHAIN_AND_HOST);
    pump(&p.c, &p.s);
    assert_int_equal(p.c.rc, HF_ETLS);
    assert_false(tls_handshake_done(p.c.t));
    assert_string_equal(tls_verify_result_text(p.c.t), "certificate has expired");
    pair_close(&p);
}

/* Opportunistic TLS: the handshake completes, the logs can still say why it is unverified. */
static void test_verify_none(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, old_cert, old_key, good_cert, "other.test", TLS_VERIFY_NONE);
    pump(&p.c, &p.s);
    assert_int_equal(p.c.rc, 0);
    assert_true(tls_handshake_done(p.c.t));
    assert_false(tls_peer_verified(p.c.t));
    assert_string_not_equal(tls_verify_result_text(p.c.t), "ok");
    pair_close(&p);

    /* No host at all: allowed with TLS_VERIFY_NONE only. */
    struct tls_ctx *cctx;
    struct tls_conn *t;
    assert_int_equal(tls_ctx_client_new(good_cert, &cctx), 0);
    assert_int_equal(tls_conn_new(cctx, false, NULL, TLS_VERIFY_NONE, &t), 0);
    tls_conn_free(t);
    assert_int_equal(tls_conn_new(cctx, false, NULL, TLS_VERIFY_CHAIN_AND_HOST, &t), -EINVAL);
    assert_int_equal(tls_conn_new(cctx, false, "", TLS_VERIFY_DANE, &t), -EINVAL);
    assert_int_equal(tls_conn_new(cctx, true, NULL, TLS_VERIFY_NONE, &t), -EINVAL);
    assert_int_equal(tls_ctx_reload(cctx, good_cert, good_key), -EINVAL);
    tls_ctx_free(cctx);
}

/* A client that offers at most TLS 1.1, built with OpenSSL directly, is refused. */
static void test_old_client_refused(void **state)
{
    (void)state;
    struct tls_ctx *sctx;
    struct tls_conn *s;
    assert_int_equal(tls_ctx_server_new(good_cert, good_key, &sctx), 0);
    assert_int_equal(tls_conn_new(sctx, true, NULL, TLS_VERIFY_NONE, &s), 0);

    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    SSL_CTX_set_security_level(cctx, 0);
    assert_int_equal(SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(cctx, TLS1_1_VERSION), 1);
    SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0");
    SSL *c = SSL_new(cctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(c, rb, wb);
    SSL_set_connect_state(c);
    SSL_do_handshake(c);
    char hello[4096];
    int n = BIO_read(wb, hello, sizeof(hello));
    assert_true(n > 0); /* the old ClientHello went out */
    assert_int_equal(tls_feed_cipher(s, hello, (size_t)n), 0);
    char buf[64];
    assert_int_equal(tls_read_plain(s, buf, sizeof(buf)), HF_ETLS);
    size_t alen;
    unsigned char *alert = tls_take_cipher(s, &alen); /* protocol_version alert */
    assert_non_null(alert);
    BIO_write(rb, alert, (int)alen);
    free(alert);
    assert_true(SSL_do_handshake(c) <= 0);
    SSL_free(c);
    SSL_CTX_free(cctx);
    tls_conn_free(s);
    tls_ctx_free(sctx);
}

static void test_garbage(void **state)
{
    (void)state;
    struct tls_ctx *sctx;
    struct tls_conn *s;
    assert_int_equal(tls_ctx_server_new(good_cert, good_key, &sctx), 0);
    assert_int_equal(tls_conn_new(sctx, true, NULL, TLS_VERIFY_NONE, &s), 0);
    /* Plaintext SMTP where a ClientHello belongs. */
    const char *junk = "EHLO evil.test\r\nMAIL FROM:<a@b>\r\n";
    assert_int_equal(tls_feed_cipher(s, junk, strlen(junk)), 0);
    char buf[64];
    assert_int_equal(tls_read_plain(s, buf, sizeof(buf)), HF_ETLS);
    assert_int_equal(tls_read_plain(s, buf, sizeof(buf)), HF_ETLS);
    assert_int_equal(tls_shutdown(s), HF_ETLS);
    size_t len;
    free(tls_take_cipher(s, &len));
    tls_conn_free(s);
    tls_ctx_free(sctx);

    /* Random octets after a good handshake: a bad record, not a crash. */
    struct pair p;
    pair_open(&p, good_cert, good_key, good_cert, "mx.test", TLS_VERIFY_CHAIN_AND_HOST);
    pump(&p.c, &p.s);
    assert_true(tls_handshake_done(p.s.t));
    unsigned char rnd[300];
    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (unsigned char)(i * 37 + 11);
    rnd[0] = 23; /* application_data */
    rnd[1] = 3;
    rnd[2] = 3;
    rnd[3] = 1;
    rnd[4] = 0x20;
    assert_int_equal(tls_feed_cipher(p.s.t, rnd, sizeof(rnd)), 0);
    assert_int_equal(tls_read_plain(p.s.t, buf, sizeof(buf)), HF_ETLS);
    assert_true(tls_failed(p.s.t));
    pair_close(&p);
}

static void test_reload(void **state)
{
    (void)state;
    struct pair p;
    char subj[256];
    pair_open(&p, good_cert, good_key, good_cert, "mx.test", TLS_VERIFY_NONE);
    /* A connection created before the reload keeps the old certificate. */
    struct side s_old = {0}, c_old = {0};
    assert_int_equal(tls_conn_new(p.sctx, true, NULL, TLS_VERIFY_NONE, &s_old.t), 0);
    assert_int_equal(tls_conn_new(p.cctx, false, NULL, TLS_VERIFY_NONE, &c_old.t), 0);

    /* Failed reloads keep the pair in use. */
    assert_int_equal(tls_ctx_reload(p.sctx, new_cert, other_key), HF_ETLS);
    assert_int_equal(tls_ctx_reload(p.sctx, dir, new_key), HF_ETLS);
    assert_int_equal(tls_ctx_reload(p.sctx, "/nonexistent/cert.pem", new_key), HF_ETLS);
    pump(&p.c, &p.s);
    assert_int_equal(tls_peer_subject(p.c.t, subj, sizeof(subj)), 0);
    assert_string_equal(subj, "CN=mx.test");

    assert_int_equal(tls_ctx_reload(p.sctx, new_cert, new_key), 0);
    struct side s2 = {0}, c2 = {0};
    assert_int_equal(tls_conn_new(p.sctx, true, NULL, TLS_VERIFY_NONE, &s2.t), 0);
    assert_int_equal(tls_conn_new(p.cctx, false, NULL, TLS_VERIFY_NONE, &c2.t), 0);
    pump(&c2, &s2);
    assert_true(tls_handshake_done(c2.t));
    assert_int_equal(tls_peer_subject(c2.t, subj, sizeof(subj)), 0);
    assert_string_equal(subj, "CN=new.test");

    pump(&c_old, &s_old);
    assert_true(tls_handshake_done(c_old.t));
    assert_int_equal(tls_peer_subject(c_old.t, subj, sizeof(subj)), 0);
    assert_string_equal(subj, "CN=mx.test");
    /* The context outlives its last use (reference counted). */
    tls_ctx_free(p.sctx);
    p.sctx = NULL;
    assert_int_equal(tls_write_plain(s_old.t, "hi", 2), 0);
    pump(&c_old, &s_old);
    assert_string_equal(c_old.got, "hi");

    tls_conn_free(s_old.t);
    tls_conn_free(c_old.t);
    tls_conn_free(s2.t);
    tls_conn_free(c2.t);
    pair_close(&p);
}

static void test_bad_server_files(void **state)
{
    (void)state;
    struct tls_ctx *ctx = NULL;
    assert_int_equal(tls_ctx_server_new("/nonexistent.pem", good_key, &ctx), HF_ETLS);
    assert_int_equal(tls_ctx_server_new(good_cert, "/nonexistent.key", &ctx), HF_ETLS);
    assert_int_equal(tls_ctx_server_new(good_cert, other_key, &ctx), HF_ETLS);
    assert_int_equal(tls_ctx_server_new(good_key, good_cert, &ctx), HF_ETLS);
    assert_int_equal(tls_ctx_client_new("/nonexistent-ca.pem", &ctx), HF_ETLS);
    assert_null(ctx);
}

static void test_dane(void **state)
{
    (void)state;
    /* DANE-EE(3) SPKI(1) SHA-256(1) of the server key: verified without any CA. */
    struct pair p;
    pair_open(&p, good_cert, good_key, new_cert, "mx.test", TLS_VERIFY_DANE);
    assert_int_equal(tls_dane_add(p.c.t, 0, 1, 1, good_spki_sha256, 32), -ENOTSUP);
    assert_int_equal(tls_dane_add(p.c.t, 3, 1, 1, good_spki_sha256, 31), -ENOTSUP);
    assert_int_equal(tls_dane_add(p.c.t, 3, 1, 1, good_spki_sha256, 32), 0);
    pump(&p.c, &p.s);
    assert_int_equal(p.c.rc, 0);
    assert_true(tls_peer_verified(p.c.t));
    assert_string_equal(tls_verify_result_text(p.c.t), "dane");
    assert_int_equal(tls_dane_add(p.c.t, 3, 1, 1, good_spki_sha256, 32), -EINVAL);
    pair_close(&p);

    /* DANE-EE(3) ignores names (RFC 7672 3.1.1): another MX name still matches the key. */
    pair_open(&p, good_cert, good_key, new_cert, "mx2.other.test", TLS_VERIFY_DANE);
    assert_int_equal(tls_dane_add(p.c.t, 3, 1, 1, good_spki_sha256, 32), 0);
    pump(&p.c, &p.s);
    assert_int_equal(p.c.rc, 0);
    assert_true(tls_peer_verified(p.c.t));
    pair_close(&p);

    /* A digest that does not match fails the handshake. */
    unsigned char wrong[32];
    memcpy(wrong, good_spki_sha256, 32);
    wrong[0] ^= 1;
    pair_open(&p, good_cert, good_key, new_cert, "mx.test", TLS_VERIFY_DANE);
    assert_int_equal(tls_dane_add(p.c.t, 3, 1, 1, wrong, 32), 0);
    pump(&p.c, &p.s);
    assert_int_equal(p.c.rc, HF_ETLS);
    assert_false(tls_peer_verified(p.c.t));
    pair_close(&p);

    /* tls_dane_add on a client that is not in DANE mode. */
    pair_open(&p, good_cert, good_key, good_cert, "mx.test", TLS_VERIFY_CHAIN_AND_HOST);
    assert_int_equal(tls_dane_add(p.c.t, 3, 1, 1, good_spki_sha256, 32), -EINVAL);
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_large_transfer),
        cmocka_unit_test(test_wrong_host),
        cmocka_unit_test(test_untrusted_ca),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_verify_none),
        cmocka_unit_test(test_old_client_refused),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_bad_server_files),
        cmocka_unit_test(test_dane),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
