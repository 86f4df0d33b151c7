/* TLS engine: OpenSSL contexts (server, client, reload on SIGHUP) and one SSL object per
 * connection between two memory BIOs, so that no socket is involved. The caller moves
 * ciphertext in and out; this file only translates OpenSSL's conventions: its error queue is
 * drained into one log line and the caller gets HF_ETLS. Sockets, timers and the SMTP side of
 * STARTTLS belong to conn.c and the protocol glue. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hf_err.h"
#include "log.h"

/* OpenSSL's default TLS 1.2 list minus what must never be negotiated; TLS 1.3 suites are
 * configured separately by OpenSSL and left at their (all strong) default. */
#define TLS_CIPHERS "DEFAULT:!aNULL:!eNULL:!RC4:!3DES:!MD5"

struct tls_ctx {
    SSL_CTX *ssl; /* our reference; each SSL made from it holds one more */
    bool server;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the network; owned by ssl */
    BIO *wbio; /* ciphertext to the network; owned by ssl */
    bool server;
    bool failed;
    bool shut;
    bool dane;
    char *pending; /* plaintext written before the handshake completed */
    size_t npending;
    char id[32];
};

/* Drains OpenSSL's error queue into buf as "reason,reason" (spaces become '_' so the whole
 * list is one key=value field). Always NUL-terminates. */
static void tls__drain_errors(char *buf, size_t sz)
{
    size_t used = 0;
    unsigned long e;
    const char *data;
    int flags;
    buf[0] = '\0';
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        char one[200];
        const char *reason = ERR_reason_error_string(e);
        if (ERR_SYSTEM_ERROR(e))
            snprintf(one, sizeof(one), "%s", strerror(ERR_GET_REASON(e)));
        else if (reason)
            snprintf(one, sizeof(one), "%s", reason);
        else
            snprintf(one, sizeof(one), "0x%lx", e);
        if ((flags & ERR_TXT_STRING) && data && *data) {
            size_t l = strlen(one);
            snprintf(one + l, sizeof(one) - l, "(%s)", data);
        }
        for (char *p = one; *p; p++)
            if (*p == ' ' || *p == '"' || (unsigned char)*p < 0x20)
                *p = '_';
        int n = snprintf(buf + used, sz - used, "%s%s", used ? "," : "", one);
        if (n < 0 || (size_t)n >= sz - used) {
            ERR_clear_error();
            break;
        }
        used += (size_t)n;
    }
    if (!buf[0])
        snprintf(buf, sz, "none");
}

/* Logs a failure of a context operation (what, on file) with the drained error queue. */
static int tls__ctx_fail(const char *what, const char *file)
{
    char errs[512];
    tls__drain_errors(errs, sizeof(errs));
    log_err("tls %s failed file=%s err=ETLS openssl=%s", what, file ? file : "-", errs);
    return HF_ETLS;
}

/* Logs a fatal failure of t during what and marks t failed: every later call returns
 * HF_ETLS. Peers cause these (scanners, old clients), hence info level. */
static int tls__conn_fail(struct tls_conn *t, const char *what, int sslerr)
{
    char errs[512];
    tls__drain_errors(errs, sizeof(errs));
    t->failed = true;
    if (!t->server && SSL_get_verify_result(t->ssl) != X509_V_OK)
        log_info("%s tls %s failed err=ETLS ssl_error=%d verify=\"%s\" openssl=%s", t->id, what,
                 sslerr, X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)), errs);
    else
        log_info("%s tls %s failed err=ETLS ssl_error=%d openssl=%s", t->id, what, sslerr, errs);
    return HF_ETLS;
}

/* Settings both sides share: protocol floor, ciphers, no compression, no renegotiation. */
static int tls__ctx_setup(SSL_CTX *ssl, bool server)
{
    if (SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION) != 1)
        return tls__ctx_fail("set minimum version", NULL);
    if (SSL_CTX_set_cipher_list(ssl, TLS_CIPHERS) != 1)
        return tls__ctx_fail("set cipher list", NULL);
    uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
    if (server)
        opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
    SSL_CTX_set_options(ssl, opts);
    return 0;
}

/* A fresh server SSL_CTX with the certificate chain and key loaded and checked. */
static int tls__server_ctx(const char *cert_file, const char *key_file, SSL_CTX **out)
{
    ERR_clear_error();
    SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());
    if (!ssl)
        return tls__ctx_fail("context creation", NULL);
    int rc = tls__ctx_setup(ssl, true);
    if (rc < 0)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(ssl, cert_file) != 1) {
        rc = tls__ctx_fail("certificate load", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        rc = tls__ctx_fail("private key load", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ssl) != 1) {
        rc = tls__ctx_fail("key and certificate match", key_file);
        goto fail;
    }
    *out = ssl;
    return 0;
fail:
    SSL_CTX_free(ssl);
    return rc;
}

int tls_ctx_server_new(const char *cert_file, const char *key_file, struct tls_ctx **out)
{
    struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return -ENOMEM;
    int rc = tls__server_ctx(cert_file, key_file, &ctx->ssl);
    if (rc < 0) {
        free(ctx);
        return rc;
    }
    ctx->server = true;
    *out = ctx;
    return 0;
}

int tls_ctx_client_new(const char *ca_file, struct tls_ctx **out)
{
    struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return -ENOMEM;
    int rc;
    ERR_clear_error();
    ctx->ssl = SSL_CTX_new(TLS_client_method());
    if (!ctx->ssl) {
        rc = tls__ctx_fail("context creation", NULL);
        goto fail;
    }
    rc = tls__ctx_setup(ctx->ssl, false);
    if (rc < 0)
        goto fail;
    if (ca_file ? SSL_CTX_load_verify_locations(ctx->ssl, ca_file, NULL) != 1
                : SSL_CTX_set_default_verify_paths(ctx->ssl) != 1) {
        rc = tls__ctx_fail("CA store load", ca_file ? ca_file : "(system)");
        goto fail;
    }
    if (SSL_CTX_dane_enable(ctx->ssl) <= 0) {
        rc = tls__ctx_fail("DANE setup", NULL);
        goto fail;
    }
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx->ssl);
    free(ctx);
    return rc;
}

int tls_ctx_reload(struct tls_ctx *ctx, const char *cert_file, const char *key_file)
{
    if (!ctx->server)
        return -EINVAL;
    SSL_CTX *fresh;
    int rc = tls__server_ctx(cert_file, key_file, &fresh);
    if (rc < 0)
        return rc;
    /* Running connections hold their own reference (SSL_new took one), so dropping ours
     * frees the old context only when the last of them is freed. */
    SSL_CTX_free(ctx->ssl);
    ctx->ssl = fresh;
    log_info("tls certificate reloaded cert=%s key=%s", cert_file, key_file);
    return 0;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

static bool tls__is_ip(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* Client side: SNI and the reference identifier, and how a failed check is treated. */
static int tls__client_setup(struct tls_conn *t, const char *host, enum tls_verify verify)
{
    if (host && !tls__is_ip(host) && SSL_set_tlsext_host_name(t->ssl, host) != 1)
        return tls__conn_fail(t, "SNI setup", 0);
    if (verify == TLS_VERIFY_DANE) {
        /* The base domain is also the first reference identifier (RFC 7672 3.2.2). */
        if (SSL_dane_enable(t->ssl, host) <= 0)
            return tls__conn_fail(t, "DANE setup", 0);
        /* RFC 7672 3.1.1: a DANE-EE(3) match authenticates the key; names do not matter. */
        SSL_dane_set_flags(t->ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
        t->dane = true;
    } else if (host) {
        int ok = tls__is_ip(host) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host)
                                  : SSL_set1_host(t->ssl, host);
        if (ok != 1)
            return tls__conn_fail(t, "host name setup", 0);
        SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    SSL_set_verify(t->ssl, verify == TLS_VERIFY_NONE ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    return 0;
}

int tls_conn_new(struct tls_ctx *ctx, bool server, const char *host, enum tls_verify verify,
                 struct tls_conn **out)
{
    if (server != ctx->server)
        return -EINVAL;
    if (!server && verify != TLS_VERIFY_NONE && (!host || !*host))
        return -EINVAL;
    struct tls_conn *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    int rc;
    t->server = server;
    snprintf(t->id, sizeof(t->id), "c=-");
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl);
    if (!t->ssl) {
        rc = tls__ctx_fail("connection setup", NULL);
        goto fail;
    }
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        rc = -ENOMEM;
        goto fail;
    }
    /* An empty read BIO means "wait for more", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* ssl owns both from here */
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        rc = tls__client_setup(t, host && *host ? host : NULL, verify);
        if (rc < 0)
            goto fail;
    }
    *out = t;
    return 0;
fail:
    SSL_free(t->ssl);
    free(t);
    return rc;
}

void tls_conn_free(struct tls_conn *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t->pending);
    free(t);
}

void tls_conn_set_log_id(struct tls_conn *t, const char *id)
{
    snprintf(t->id, sizeof(t->id), "%s", id);
}

int tls_dane_add(struct tls_conn *t, uint8_t usage, uint8_t selector, uint8_t mtype,
                 const unsigned char *data, size_t len)
{
    if (!t->dane || t->failed || SSL_in_before(t->ssl) != 1)
        return -EINVAL;
    /* RFC 7672 3.1.3: SMTP clients treat PKIX-TA(0) and PKIX-EE(1) as unusable. */
    if (usage < 2)
        return -ENOTSUP;
    ERR_clear_error();
    int r = SSL_dane_tlsa_add(t->ssl, usage, selector, mtype, data, len);
    if (r > 0)
        return 0;
    if (r == 0) {
        ERR_clear_error();
        return -ENOTSUP;
    }
    char errs[512];
    tls__drain_errors(errs, sizeof(errs));
    log_info("%s tls TLSA record refused usage=%u selector=%u mtype=%u err=ETLS openssl=%s", t->id,
             usage, selector, mtype, errs);
    /* SSL_dane_tlsa_add fails with -1 for malformed data too; a record we cannot use is
     * ignored, not a reason to give up on the connection (RFC 7672 2.2). */
    return -ENOTSUP;
}

int tls_feed_cipher(struct tls_conn *t, const void *in, size_t len)
{
    if (t->failed)
        return HF_ETLS;
    const char *p = in;
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        int n = BIO_write(t->rbio, p, chunk);
        if (n <= 0) {
            ERR_clear_error();
            return -ENOMEM; /* a memory BIO fails only when it cannot grow */
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Encrypts len octets into the write BIO; a memory BIO takes everything at once. */
static int tls__write(struct tls_conn *t, const void *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        size_t n = 0;
        if (SSL_write_ex(t->ssl, (const char *)data + done, len - done, &n) != 1)
            return tls__conn_fail(t, "write", SSL_get_error(t->ssl, 0));
        done += n;
    }
    return 0;
}

int tls_read_plain(struct tls_conn *t, void *buf, size_t cap)
{
    if (t->failed)
        return HF_ETLS;
    ERR_clear_error();
    if (!SSL_is_init_finished(t->ssl)) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            return tls__conn_fail(t, "handshake", e);
        }
        log_debug("%s tls handshake done version=%s cipher=%s verify=\"%s\"", t->id, tls_version(t),
                  tls_cipher(t), tls_verify_result_text(t));
        if (t->npending) {
            int rc = tls__write(t, t->pending, t->npending);
            free(t->pending);
            t->pending = NULL;
            t->npending = 0;
            if (rc < 0)
                return rc;
        }
    }
    if (cap > INT_MAX)
        cap = INT_MAX;
    size_t n = 0;
    int r = SSL_read_ex(t->ssl, buf, cap, &n);
    if (r == 1)
        return (int)n;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return -EPIPE;
    return tls__conn_fail(t, "read", e);
}

int tls_write_plain(struct tls_conn *t, const void *data, size_t len)
{
    if (t->failed)
        return HF_ETLS;
    if (t->shut)
        return -EPIPE;
    if (len == 0)
        return 0;
    if (!SSL_is_init_finished(t->ssl)) {
        char *p = realloc(t->pending, t->npending + len);
        if (!p)
            return -ENOMEM;
        memcpy(p + t->npending, data, len);
        t->pending = p;
        t->npending += len;
        return 0;
    }
    ERR_clear_error();
    return tls__write(t, data, len);
}

unsigned char *tls_take_cipher(struct tls_conn *t, size_t *len)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    *len = 0;
    if (n == 0)
        return NULL;
    if (n > INT_MAX)
        n = INT_MAX;
    unsigned char *buf = malloc(n);
    if (!buf)
        return NULL;
    int got = BIO_read(t->wbio, buf, (int)n);
    if (got <= 0) {
        free(buf);
        return NULL;
    }
    *len = (size_t)got;
    return buf;
}

bool tls_handshake_done(const struct tls_conn *t)
{
    return !t->failed && SSL_is_init_finished(t->ssl);
}

bool tls_failed(const struct tls_conn *t)
{
    return t->failed;
}

int tls_shutdown(struct tls_conn *t)
{
    if (t->failed)
        return HF_ETLS;
    if (!SSL_is_init_finished(t->ssl))
        return -EINVAL;
    if (t->shut)
        return 0;
    t->shut = true;
    ERR_clear_error();
    /* 0: our close_notify is queued, the peer's not yet seen; 1: both done. */
    int r = SSL_shutdown(t->ssl);
    if (r < 0) {
        char errs[512];
        tls__drain_errors(errs, sizeof(errs));
        log_debug("%s tls shutdown failed err=ETLS openssl=%s", t->id, errs);
        return HF_ETLS;
    }
    return 0;
}

const char *tls_version(const struct tls_conn *t)
{
    if (!tls_handshake_done(t))
        return "";
    return SSL_get_version(t->ssl);
}

const char *tls_cipher(const struct tls_conn *t)
{
    if (!tls_handshake_done(t))
        return "";
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    return c ? SSL_CIPHER_get_name(c) : "";
}

bool tls_peer_verified(const struct tls_conn *t)
{
    if (t->server || !tls_handshake_done(t))
        return false;
    return SSL_get0_peer_certificate(t->ssl) != NULL && SSL_get_verify_result(t->ssl) == X509_V_OK;
}

const char *tls_verify_result_text(const struct tls_conn *t)
{
    if (t->server || (!tls_handshake_done(t) && !t->failed))
        return "";
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK)
        return X509_verify_cert_error_string(v);
    if (!SSL_get0_peer_certificate(t->ssl))
        return "no certificate";
    if (t->dane && SSL_get0_dane_authority(t->ssl, NULL, NULL) >= 0)
        return "dane";
    return "ok";
}

int tls_peer_subject(const struct tls_conn *t, char *buf, size_t sz)
{
    if (sz)
        buf[0] = '\0';
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    if (!cert)
        return -ENOENT;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return -ENOMEM;
    X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (sz) {
        size_t l = n > 0 ? (size_t)n : 0;
        if (l >= sz)
            l = sz - 1;
        memcpy(buf, p, l);
        buf[l] = '\0';
    }
    BIO_free(b);
    return 0;
}
