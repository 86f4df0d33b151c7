/* TCP connections on libuv: one read buffer per loop thread, copied writes, idle timer and a
 * two-handle close (stream and timer) that frees the conn when both are closed.
 *
 * TLS (conn_start_tls) sits between the stream and the owner: octets read go to the tls.c
 * engine and only its plaintext reaches ops->on_read; conn_write() encrypts. The engine knows
 * nothing of sockets; this file moves its ciphertext to and from the stream. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_err.h"
#include "tls.h"

enum { CONN_ST_CONNECTING, CONN_ST_OPEN, CONN_ST_CLOSING, CONN_ST_CLOSED };

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    const struct conn_ops *ops;
    void *data;
    uint64_t id;
    int state;
    int handles_open;
    int in_cb; /* nesting depth of our callbacks into the owner */
    bool close_after_write;
    bool reading;
    bool timer_is_connect; /* the timer is the connect timeout */
    size_t write_pending;
    uv_connect_t connect_req;
    struct sockaddr_storage peer;
    char peer_str[INET6_ADDRSTRLEN];
    char local_str[INET6_ADDRSTRLEN];
    int peer_port;
    struct tls_conn *tls;        /* owned; NULL until conn_start_tls */
    conn_tls_ready_cb tls_ready; /* the handshake result, reported once */
    bool tls_reported;
};

struct conn_wreq {
    uv_write_t req;
    size_t len;
    char buf[];
};

static uint64_t conn_next_id = 1;
/* The loop runs on one thread; reads are handed up synchronously, so one buffer serves all
 * connections and an idle session holds no read buffer at all. */
static char conn_rbuf[65536];
static bool conn_rbuf_busy;
/* Plaintext decrypted from one read, handed up in one on_read like a plain read. One read
 * (at most sizeof(conn_rbuf)) plus a record left incomplete by the previous read decrypts to
 * less than this, so a read is never split into two on_read calls. */
static char conn_tls_pbuf[96 * 1024];

static void conn_free_if_closed(struct conn *c);
static void conn_tls_input(struct conn *c, const char *data, size_t len);
static int conn_tls_flush(struct conn *c);
static void conn_tls_report(struct conn *c, int status);

int conn_sockaddr_str(const struct sockaddr *sa, char *buf, size_t sz)
{
    buf[0] = '\0';
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)sz);
        return ntohs(in->sin_port);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, (socklen_t)sz);
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)sz);
        return ntohs(in6->sin6_port);
    }
    return 0;
}

int conn_parse_hostport(const char *s, int default_port, struct sockaddr_storage *out)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *port = NULL;
    memset(out, 0, sizeof(*out));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || (size_t)(end - s - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return -EINVAL;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon)
            colon = NULL; /* a bare IPv6 address: no port (brackets are needed for one) */
        size_t hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl >= sizeof(host))
            return -EINVAL;
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (colon)
            port = colon + 1;
    }
    long p = default_port;
    if (port) {
        char *end;
        if (!*port)
            return -EINVAL;
        p = strtol(port, &end, 10);
        if (*end || p < 0 || p > 65535)
            return -EINVAL;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)out;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)p);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)p);
        return 0;
    }
    return -EINVAL;
}

static void conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->handles_open--;
    conn_free_if_closed(c);
}

static void conn_free_if_closed(struct conn *c)
{
    if (c->handles_open > 0 || c->in_cb > 0)
        return;
    c->state = CONN_ST_CLOSED;
    if (c->ops->on_close)
        c->ops->on_close(c);
    tls_conn_free(c->tls);
    free(c);
}

static void conn_do_close(struct conn *c)
{
    if (c->state == CONN_ST_CLOSED || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->state = CONN_ST_CLOSING;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

/* Calls into the owner with the conn pinned, so conn_close() inside cannot free it. */
#define CONN_CALL(c, fn, ...)                                                                      \
    do {                                                                                           \
        (c)->in_cb++;                                                                              \
        (c)->ops->fn((c), ##__VA_ARGS__);                                                          \
        (c)->in_cb--;                                                                              \
    } while (0)

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    if (conn_rbuf_busy) { /* cannot happen on one thread; refuse rather than share */
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    conn_rbuf_busy = true;
    buf->base = conn_rbuf;
    buf->len = sizeof(conn_rbuf);
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (buf->base == conn_rbuf)
        conn_rbuf_busy = false;
    if (nread == 0)
        return;
    if (c->state != CONN_ST_OPEN)
        return;
    if (nread < 0) {
        uv_read_stop(s);
        c->reading = false;
        if (c->tls && !c->tls_reported) {
            /* The handshake's result is what the owner waits for: report it there. */
            conn_tls_report(c, HF_ETLS);
            conn_free_if_closed(c);
            return;
        }
        if (c->ops->on_eof)
            CONN_CALL(c, on_eof, (int)nread);
        else
            conn_do_close(c);
        conn_free_if_closed(c);
        return;
    }
    if (c->timer_is_connect == false && uv_is_active((uv_handle_t *)&c->timer))
        uv_timer_again(&c->timer);
    if (c->tls) {
        conn_tls_input(c, buf->base, (size_t)nread);
        conn_free_if_closed(c);
        return;
    }
    /* Copy out of the shared buffer is not needed: on_read consumes synchronously. */
    CONN_CALL(c, on_read, buf->base, (size_t)nread);
    conn_free_if_closed(c);
}

static void conn_on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state == CONN_ST_CLOSING || c->state == CONN_ST_CLOSED)
        return;
    if (c->timer_is_connect) {
        c->timer_is_connect = false;
        uv_timer_stop(&c->timer);
        /* Closing the handle cancels the connect request with UV_ECANCELED; report a
         * timeout instead, once. */
        c->state = CONN_ST_CLOSING;
        if (c->ops->on_connect)
            CONN_CALL(c, on_connect, UV_ETIMEDOUT);
        conn_do_close(c);
        conn_free_if_closed(c);
        return;
    }
    if (c->ops->on_timeout)
        CONN_CALL(c, on_timeout);
    else
        conn_do_close(c);
    conn_free_if_closed(c);
}

static struct conn *conn_alloc_conn(uv_loop_t *loop, const struct conn_ops *ops, void *data)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ops = ops;
    c->data = data;
    c->id = conn_next_id++;
    if (uv_tcp_init(loop, &c->tcp) < 0) {
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    return c;
}

static void conn_fill_names(struct conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        c->peer = ss;
        c->peer_port = conn_sockaddr_str((struct sockaddr *)&ss, c->peer_str, sizeof(c->peer_str));
    }
    len = sizeof(ss);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        conn_sockaddr_str((struct sockaddr *)&ss, c->local_str, sizeof(c->local_str));
}

int conn_accept(uv_stream_t *server, const struct conn_ops *ops, void *data, struct conn **out)
{
    struct conn *c = conn_alloc_conn(server->loop, ops, data);
    if (!c)
        return UV_ENOMEM;
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        /* Handles are initialised: close them; no owner callback runs (ops cleared). */
        static const struct conn_ops none = {0};
        c->ops = &none;
        conn_do_close(c);
        return rc;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = CONN_ST_OPEN;
    conn_fill_names(c);
    *out = c;
    return 0;
}

static void conn_on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state != CONN_ST_CONNECTING) {
        conn_free_if_closed(c);
        return;
    }
    uv_timer_stop(&c->timer);
    c->timer_is_connect = false;
    if (status == 0) {
        c->state = CONN_ST_OPEN;
        uv_tcp_nodelay(&c->tcp, 1);
        conn_fill_names(c);
    }
    CONN_CALL(c, on_connect, status);
    if (status < 0)
        conn_do_close(c);
    conn_free_if_closed(c);
}

int conn_connect(uv_loop_t *loop, const struct sockaddr *addr, uint64_t timeout_ms,
                 const struct conn_ops *ops, void *data, struct conn **out)
{
    struct conn *c = conn_alloc_conn(loop, ops, data);
    if (!c)
        return UV_ENOMEM;
    c->state = CONN_ST_CONNECTING;
    c->connect_req.data = c;
    if (addr->sa_family == AF_INET)
        memcpy(&c->peer, addr, sizeof(struct sockaddr_in));
    else
        memcpy(&c->peer, addr, sizeof(struct sockaddr_in6));
    c->peer_port = conn_sockaddr_str(addr, c->peer_str, sizeof(c->peer_str));
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, addr, conn_on_connect);
    if (rc < 0) {
        static const struct conn_ops none = {0};
        c->ops = &none;
        conn_do_close(c);
        return rc;
    }
    if (timeout_ms) {
        c->timer_is_connect = true;
        uv_timer_start(&c->timer, conn_on_timer, timeout_ms, 0);
    }
    *out = c;
    return 0;
}

static void conn_on_write(uv_write_t *req, int status)
{
    struct conn_wreq *w = (struct conn_wreq *)req;
    struct conn *c = req->data;
    c->write_pending -= w->len;
    free(w);
    if (status < 0 && c->state == CONN_ST_OPEN) {
        if (c->ops->on_eof)
            CONN_CALL(c, on_eof, status);
        else
            conn_do_close(c);
    } else if (c->close_after_write && c->write_pending == 0) {
        conn_do_close(c);
    }
    conn_free_if_closed(c);
}

/* Queues len octets on the stream as they are (plaintext, or ciphertext from tls.c). */
static int conn_write_raw(struct conn *c, const void *buf, size_t len)
{
    if (c->state != CONN_ST_OPEN || c->close_after_write)
        return -ENOTCONN;
    if (len == 0)
        return 0;
    struct conn_wreq *w = malloc(sizeof(*w) + len);
    if (!w)
        return -ENOMEM;
    memcpy(w->buf, buf, len);
    w->len = len;
    w->req.data = c;
    uv_buf_t b = uv_buf_init(w->buf, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write);
    if (rc < 0) {
        free(w);
        return rc;
    }
    c->write_pending += len;
    return 0;
}

int conn_write(struct conn *c, const void *buf, size_t len)
{
    if (c->state != CONN_ST_OPEN || c->close_after_write)
        return -ENOTCONN;
    if (c->tls) {
        int rc = tls_write_plain(c->tls, buf, len);
        if (rc < 0)
            return rc;
        return conn_tls_flush(c);
    }
    return conn_write_raw(c, buf, len);
}

size_t conn_write_pending(const struct conn *c)
{
    return c->write_pending;
}

void conn_read_stop(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

int conn_read_start(struct conn *c)
{
    if (c->state != CONN_ST_OPEN)
        return -ENOTCONN;
    if (c->reading)
        return 0;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read);
    if (rc == 0)
        c->reading = true;
    return rc;
}

void conn_set_timeout(struct conn *c, uint64_t ms)
{
    if (c->state != CONN_ST_OPEN)
        return;
    c->timer_is_connect = false;
    if (ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, conn_on_timer, ms, ms);
}

void conn_close(struct conn *c, bool abort)
{
    if (c->state == CONN_ST_CLOSING || c->state == CONN_ST_CLOSED)
        return;
    conn_read_stop(c);
    /* Best effort close_notify; a graceful close then waits for it to be written. */
    if (!abort && c->tls && c->state == CONN_ST_OPEN && !c->close_after_write &&
        tls_handshake_done(c->tls) && tls_shutdown(c->tls) == 0)
        conn_tls_flush(c);
    if (!abort && c->state == CONN_ST_OPEN && c->write_pending > 0) {
        c->close_after_write = true;
        uv_timer_stop(&c->timer);
        return;
    }
    conn_do_close(c);
    conn_free_if_closed(c);
}

bool conn_is_closing(const struct conn *c)
{
    return c->state == CONN_ST_CLOSING || c->state == CONN_ST_CLOSED || c->close_after_write;
}

void *conn_data(const struct conn *c)
{
    return c->data;
}

void conn_set_data(struct conn *c, void *data)
{
    c->data = data;
}

void conn_set_owner(struct conn *c, const struct conn_ops *ops, void *data)
{
    c->ops = ops;
    c->data = data;
}

uint64_t conn_id(const struct conn *c)
{
    return c->id;
}

const char *conn_peer_addr(const struct conn *c)
{
    return c->peer_str;
}

int conn_peer_port(const struct conn *c)
{
    return c->peer_port;
}

const struct sockaddr_storage *conn_peer_sockaddr(const struct conn *c)
{
    return &c->peer;
}

const char *conn_local_addr(const struct conn *c)
{
    return c->local_str;
}

/* ---- TLS ---- */

/* Writes every ciphertext octet the engine has produced. Returns 0 or the first error. */
static int conn_tls_flush(struct conn *c)
{
    int rc = 0;
    size_t len;
    unsigned char *p;
    while ((p = tls_take_cipher(c->tls, &len)) != NULL) {
        int r = conn_write_raw(c, p, len);
        free(p);
        if (r < 0 && rc == 0)
            rc = r;
    }
    return rc;
}

/* Reports the handshake result once. Without an on_ready callback a failure closes. */
static void conn_tls_report(struct conn *c, int status)
{
    if (c->tls_reported)
        return;
    c->tls_reported = true;
    if (c->tls_ready) {
        c->in_cb++;
        c->tls_ready(c, status);
        c->in_cb--;
    } else if (status < 0) {
        conn_do_close(c);
    }
}

/* Ciphertext read from the stream: decrypt, report the handshake, hand plaintext up. */
static void conn_tls_input(struct conn *c, const char *data, size_t len)
{
    size_t n = 0;
    int r = tls_feed_cipher(c->tls, data, len);
    while (r >= 0) {
        r = tls_read_plain(c->tls, conn_tls_pbuf + n, sizeof(conn_tls_pbuf) - n);
        if (r > 0)
            n += (size_t)r;
        if (!c->tls_reported && tls_handshake_done(c->tls)) {
            conn_tls_flush(c); /* the last handshake flight, before anything the owner says */
            conn_tls_report(c, 0);
            if (conn_is_closing(c))
                return;
        }
        if (r > 0 && n < sizeof(conn_tls_pbuf))
            continue;
        if (n > 0) {
            CONN_CALL(c, on_read, conn_tls_pbuf, n);
            n = 0;
            if (conn_is_closing(c))
                return;
        }
        if (r == 0)
            break;
    }
    conn_tls_flush(c); /* handshake messages, session tickets, alerts */
    if (r == 0 || conn_is_closing(c))
        return;
    conn_read_stop(c);
    if (r == -EPIPE) { /* close_notify: the peer's orderly end, like EOF on a plain stream */
        if (c->ops->on_eof)
            CONN_CALL(c, on_eof, UV_EOF);
        else
            conn_do_close(c);
    } else if (!c->tls_reported) {
        conn_tls_report(c, HF_ETLS); /* -ENOMEM too: the handshake did not complete */
    } else if (c->ops->on_eof) {
        CONN_CALL(c, on_eof, r);
    } else {
        conn_do_close(c);
    }
}

int conn_start_tls(struct conn *c, struct tls_conn *t, conn_tls_ready_cb on_ready)
{
    if (c->tls) {
        tls_conn_free(t);
        return -EALREADY;
    }
    if (c->state != CONN_ST_OPEN || conn_is_closing(c)) {
        tls_conn_free(t);
        return -ENOTCONN;
    }
    char id[32];
    snprintf(id, sizeof(id), "c=%llu", (unsigned long long)c->id);
    tls_conn_set_log_id(t, id);
    /* Nothing read before this point is fed to the engine: this conn keeps no input of its
     * own (on_read hands every read up whole), so from here on only octets read after the
     * switch count (RFC 3207 5). */
    char first[16];
    int rc = tls_read_plain(t, first, sizeof(first)); /* a client's ClientHello */
    if (rc < 0) {
        tls_conn_free(t);
        return rc;
    }
    c->tls = t;
    c->tls_ready = on_ready;
    c->tls_reported = false;
    rc = conn_tls_flush(c);
    if (rc < 0) {
        c->tls = NULL;
        tls_conn_free(t);
        return rc;
    }
    return 0;
}

int conn_accept_tls(uv_stream_t *server, const struct conn_ops *ops, void *data, struct tls_conn *t,
                    conn_tls_ready_cb on_ready, struct conn **out)
{
    struct conn *c;
    int rc = conn_accept(server, ops, data, &c);
    if (rc < 0) {
        tls_conn_free(t);
        return rc;
    }
    rc = conn_start_tls(c, t, on_ready);
    if (rc < 0) {
        static const struct conn_ops none = {0};
        c->ops = &none;
        conn_do_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

struct tls_conn *conn_tls(const struct conn *c)
{
    return c->tls;
}
