/* A TCP connection on the libuv loop: reads, a write queue, an idle timer, orderly close.
 *
 * Used by relayd's inbound sessions and by the outbound SMTP clients (flush, fetchd).
 * Bytes are passed up raw; line framing belongs to the protocol glue. TLS slots in
 * underneath (conn_start_tls, below) so that the glue sees plaintext either way.
 *
 * Lifetime: a conn is freed by the library after its handles have closed, right after
 * ops->on_close returns. conn_close() from inside one of the conn's own callbacks is safe:
 * the conn is marked closing and released only after that callback returns. */
#ifndef HF_CONN_H
#define HF_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

struct conn;
struct tls_conn;

struct conn_ops {
    /* Plaintext bytes arrived; data is valid during the call only. */
    void (*on_read)(struct conn *c, const char *data, size_t len);
    /* The peer closed (status UV_EOF) or the connection failed (status < 0). The conn is not
     * closed yet: the owner usually calls conn_close(). */
    void (*on_eof)(struct conn *c, int status);
    /* The idle timer ran out (no bytes read for the set time). */
    void (*on_timeout)(struct conn *c);
    /* Outbound only: the connection attempt finished (0 or a negative code). */
    void (*on_connect)(struct conn *c, int status);
    /* All handles are closed; c is freed after this returns. */
    void (*on_close)(struct conn *c);
};

/* Accepts a pending connection on server. Returns 0 and *out, or a libuv error (then
 * nothing was allocated and no callback will run). */
int conn_accept(uv_stream_t *server, const struct conn_ops *ops, void *data, struct conn **out);

/* Starts an outbound connection to addr (copied), with a connect timeout in ms. Returns 0 and
 * *out, then ops->on_connect runs exactly once; or an error, and nothing will run. */
int conn_connect(uv_loop_t *loop, const struct sockaddr *addr, uint64_t timeout_ms,
                 const struct conn_ops *ops, void *data, struct conn **out);

/* Queues len bytes for writing (copied; the caller keeps buf). Returns 0, -ENOTCONN when the
 * conn is closing, -ENOMEM. Write errors are reported through on_eof. */
int conn_write(struct conn *c, const void *buf, size_t len);

/* Octets queued and not yet written (for backpressure). */
size_t conn_write_pending(const struct conn *c);

/* Stops and restarts reading (e.g. while a message is being committed). */
void conn_read_stop(struct conn *c);
int conn_read_start(struct conn *c);

/* (Re)arms the idle timer: ops->on_timeout runs after ms without incoming bytes. 0 disarms. */
void conn_set_timeout(struct conn *c, uint64_t ms);

/* Closes once queued writes are flushed (graceful) or at once (abort=true). Idempotent. */
void conn_close(struct conn *c, bool abort);
bool conn_is_closing(const struct conn *c);

void *conn_data(const struct conn *c);
void conn_set_data(struct conn *c, void *data);
/* Hands c to another owner: its callbacks become ops (borrowed, static) and its data data,
 * from the next event on. TLS, queued writes and the idle timer stay as they are. Used when
 * ATRN (RFC 2645) turns an inbound session into an outbound one on the same connection. */
void conn_set_owner(struct conn *c, const struct conn_ops *ops, void *data);
uint64_t conn_id(const struct conn *c);

/* Peer and local address as text ("127.0.0.1", "::1") and port. Valid while c lives. */
const char *conn_peer_addr(const struct conn *c);
int conn_peer_port(const struct conn *c);
const struct sockaddr_storage *conn_peer_sockaddr(const struct conn *c);
const char *conn_local_addr(const struct conn *c);

/* ---- TLS (tls.h) underneath the owner ----
 *
 * After conn_start_tls() octets read are decrypted and only plaintext reaches ops->on_read
 * (each network read still arrives as one on_read call); conn_write() encrypts (before the
 * handshake completes the plaintext is held and sent right after it); a graceful conn_close()
 * sends close_notify first, best effort. The peer's close_notify arrives as on_eof(UV_EOF),
 * a bad record after the handshake as on_eof(HF_ETLS).
 *
 * STARTTLS and plaintext injection (RFC 3207 5, CVE-2011-0411): the conn keeps no input of
 * its own, every read is handed to on_read whole, so nothing read before the switch is ever
 * decrypted or delivered after it. The OWNER must drop whatever it still buffers — the rest
 * of the on_read chunk that carried STARTTLS (or the 220 reply, on a client) and any pending
 * input — when it calls conn_start_tls(), and start over (EHLO) once on_ready reports 0. */

/* The handshake's result: status 0 (tls_version() etc. are now valid), or HF_ETLS (the
 * handshake failed, or the connection ended or failed before it completed). Called exactly
 * once unless the owner closes c first. After HF_ETLS reading has stopped: the owner closes. */
typedef void (*conn_tls_ready_cb)(struct conn *c, int status);

/* Switches c to TLS with engine t (takes it: freed with c, or at once on error). Call it right
 * after the plaintext 220 reply to STARTTLS is queued (a server; the reply still goes out in
 * plaintext, before the handshake) or on receiving it (a client, whose ClientHello is sent
 * now). Reading is left as it is: the owner (re)starts it. on_ready may be NULL: a failed
 * handshake then closes c. Returns 0 (on_ready will run), -EALREADY (TLS already started),
 * -ENOTCONN (c is closing), HF_ETLS, -ENOMEM; on error on_ready never runs, c is still in
 * plaintext and the owner should close it. */
int conn_start_tls(struct conn *c, struct tls_conn *t, conn_tls_ready_cb on_ready);

/* conn_accept() and conn_start_tls() in one, for an implicit-TLS listener (RFC 8314): the
 * conn speaks TLS from its first octet. Takes t. Returns 0 and *out, or an error (then
 * nothing was allocated, t is freed and no callback will run). */
int conn_accept_tls(uv_stream_t *server, const struct conn_ops *ops, void *data, struct tls_conn *t,
                    conn_tls_ready_cb on_ready, struct conn **out);

/* The TLS engine (borrowed, valid while c lives) for version, cipher and verification
 * results, or NULL on a plaintext connection. */
struct tls_conn *conn_tls(const struct conn *c);

/* Formats a sockaddr as "addr" and returns the port; buf is at least INET6_ADDRSTRLEN. */
int conn_sockaddr_str(const struct sockaddr *sa, char *buf, size_t sz);

/* Parses "v4:port", "[v6]:port", "v4", "[v6]" or a bare "v6" (no port possible) with
 * default_port into *out (numeric addresses only). Returns 0 or -EINVAL. */
int conn_parse_hostport(const char *s, int default_port, struct sockaddr_storage *out);

#endif
