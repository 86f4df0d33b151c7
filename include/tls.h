/* TLS over memory buffers: OpenSSL contexts and a per-connection engine that never touches a
 * socket, so it runs the same under a libuv stream (conn.c), a test harness or anything else.
 *
 * Data flow: ciphertext that arrived from the network goes in with tls_feed_cipher(); then
 * tls_read_plain() drives the handshake and returns plaintext; plaintext to send goes in with
 * tls_write_plain(); after any of these calls, tls_take_cipher() hands out the ciphertext the
 * engine produced (handshake messages, records, alerts), which the caller sends as is.
 *
 * Policy kept here: TLS 1.2 minimum, OpenSSL's default TLS 1.2 cipher list minus aNULL, eNULL,
 * RC4, 3DES and MD5, the default TLS 1.3 suites, no compression, no renegotiation (a
 * renegotiation request is refused), session tickets allowed. Certificate checks: chain and
 * host name (SSL_set1_host), or DANE (RFC 7672) with OpenSSL's TLSA matching.
 *
 * Errors: 0 or a negative code (include/hf_err.h). Every OpenSSL failure is logged here as one
 * line (the error queue drained into it) and returned as HF_ETLS; callers only log what they
 * were doing. Not thread-safe: one engine belongs to one thread (the loop's). */
#ifndef HF_TLS_H
#define HF_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_ctx;
struct tls_conn;

/* How a client checks the server's certificate. */
enum tls_verify {
    TLS_VERIFY_NONE = 0,       /* encrypt only; the result is still computed for the logs */
    TLS_VERIFY_CHAIN_AND_HOST, /* chain to a trusted CA and the host name (RFC 6125) */
    TLS_VERIFY_DANE,           /* TLSA records added with tls_dane_add (RFC 7672) */
};

/* ---- contexts ---- */

/* Creates a server context with the certificate chain (PEM, leaf first) and private key
 * (PEM) from the two files (borrowed paths). Returns 0 and *out (owned: tls_ctx_free), or
 * HF_ETLS when a file cannot be read or parsed or the key does not match the certificate
 * (logged with the file names), -ENOMEM. */
int tls_ctx_server_new(const char *cert_file, const char *key_file, struct tls_ctx **out);

/* Creates a client context trusting the CAs in ca_file (PEM, borrowed path), or the system's
 * default store when ca_file is NULL. DANE support is enabled on it. Returns 0 and *out
 * (owned: tls_ctx_free), HF_ETLS (unreadable CA file), -ENOMEM. */
int tls_ctx_client_new(const char *ca_file, struct tls_ctx **out);

/* Loads cert_file and key_file into a fresh context and, only if both load and match, swaps
 * it in: connections created afterwards use the new pair. Connections already running keep
 * the old OpenSSL context (each holds its own reference), which is freed with the last of
 * them. Meant for SIGHUP. Returns 0; HF_ETLS (the old pair stays in use), -ENOMEM, -EINVAL
 * (ctx is a client context). */
int tls_ctx_reload(struct tls_ctx *ctx, const char *cert_file, const char *key_file);

/* Frees ctx; NULL is ignored. Connections made from it stay valid (reference counted). */
void tls_ctx_free(struct tls_ctx *ctx);

/* ---- connections ---- */

/* Creates an engine for one connection from ctx (borrowed; need not outlive the engine).
 * server: this side accepts (the ctx must be a server context) or connects (client context).
 * host (borrowed, copied): for a client the name sent as SNI (unless it is an IP literal) and
 * the reference identifier checked against the certificate; required for
 * TLS_VERIFY_CHAIN_AND_HOST and TLS_VERIFY_DANE; ignored by a server. With TLS_VERIFY_NONE a
 * given host is still checked (without one, only the chain), but only for
 * tls_peer_verified() and the logs: a failure does not stop the handshake.
 * A server ignores verify (SMTP servers do not ask for client certificates).
 * Returns 0 and *out (owned: tls_conn_free), -EINVAL (missing host, wrong kind of ctx),
 * HF_ETLS, -ENOMEM. Call tls_read_plain() once to start: a client then has its ClientHello
 * ready in tls_take_cipher(). */
int tls_conn_new(struct tls_ctx *ctx, bool server, const char *host, enum tls_verify verify,
                 struct tls_conn **out);

/* Frees t without sending anything; NULL is ignored. */
void tls_conn_free(struct tls_conn *t);

/* Sets the label (copied, cut to 31 characters) that starts this engine's log lines,
 * normally the connection id "c=17". Default "c=-". */
void tls_conn_set_log_id(struct tls_conn *t, const char *id);

/* Adds one TLSA record (RFC 6698: usage 0-3, selector 0-1, matching type 0-2, data borrowed)
 * to a TLS_VERIFY_DANE client before the handshake. Returns 0 when the record is usable,
 * -ENOTSUP when it is not (PKIX-TA(0) and PKIX-EE(1), which RFC 7672 3.1.3 tells SMTP clients
 * not to use; unknown selector or matching type; data of the wrong length for its digest:
 * RFC 7672 2.2 says to ignore such records), -EINVAL (not a DANE client, or the handshake has
 * started). With no usable record OpenSSL falls back to the CA store: the caller counts the
 * usable records and decides (RFC 7672 2.2) what to do when there are none. */
int tls_dane_add(struct tls_conn *t, uint8_t usage, uint8_t selector, uint8_t mtype,
                 const unsigned char *data, size_t len);

/* Queues len ciphertext octets that arrived from the network (copied). Returns 0, -ENOMEM,
 * HF_ETLS after a fatal TLS error. Call tls_read_plain() afterwards. */
int tls_feed_cipher(struct tls_conn *t, const void *in, size_t len);

/* Drives the handshake, then decrypts into buf (cap octets). Returns n > 0 plaintext octets,
 * 0 when nothing more can be done until more ciphertext arrives, -EPIPE when the peer sent
 * close_notify (no more plaintext will come), HF_ETLS when the handshake or a record failed
 * (logged once; every later call returns HF_ETLS). Call it until it returns 0, and after it
 * call tls_take_cipher(): a failure usually leaves an alert to send. */
int tls_read_plain(struct tls_conn *t, void *buf, size_t cap);

/* Encrypts len plaintext octets (copied). Before the handshake is done the octets are kept
 * and encrypted as soon as it completes. Returns 0, -EPIPE after tls_shutdown(), HF_ETLS after
 * a fatal error, -ENOMEM. Then call tls_take_cipher(). */
int tls_write_plain(struct tls_conn *t, const void *data, size_t len);

/* Returns owned (free()) ciphertext to send and sets *len, or NULL when there is nothing to
 * send (or memory ran out; the octets then stay queued for the next call). */
unsigned char *tls_take_cipher(struct tls_conn *t, size_t *len);

/* True once the handshake has completed successfully. */
bool tls_handshake_done(const struct tls_conn *t);

/* True after a fatal TLS error (the handshake or a record failed). */
bool tls_failed(const struct tls_conn *t);

/* Queues a close_notify alert (then call tls_take_cipher()). Later writes get -EPIPE.
 * Returns 0, -EINVAL before the handshake is done, HF_ETLS. */
int tls_shutdown(struct tls_conn *t);

/* ---- information for logs and Received: headers (static or valid while t lives) ---- */

/* Protocol version ("TLSv1.3") or "" before the handshake. */
const char *tls_version(const struct tls_conn *t);

/* Cipher suite name ("TLS_AES_256_GCM_SHA384") or "" before the handshake. */
const char *tls_cipher(const struct tls_conn *t);

/* Client: true when the server's certificate was verified (chain and host, or DANE) —
 * also in TLS_VERIFY_NONE mode, where a failure does not stop the handshake. False on a
 * server and before the handshake. */
bool tls_peer_verified(const struct tls_conn *t);

/* Client: "ok", "dane" (verified by a TLSA record), or OpenSSL's reason the certificate
 * was not verified ("certificate has expired", "hostname mismatch"); "" on a server. */
const char *tls_verify_result_text(const struct tls_conn *t);

/* Writes the peer certificate's subject in RFC 2253 form ("CN=mx.branch.test") into buf
 * (NUL-terminated, cut to sz). Returns 0, -ENOENT when the peer sent no certificate. */
int tls_peer_subject(const struct tls_conn *t, char *buf, size_t sz);

#endif
