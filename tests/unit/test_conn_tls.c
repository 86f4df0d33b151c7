/* Tests for conn.c's TLS: a real libuv loop on 127.0.0.1, a server conn and a client conn that
 * switch to TLS with STARTTLS (or start in TLS, RFC 8314) and exchange lines. Checks that
 * plaintext pipelined after STARTTLS never reaches the owner after the switch (RFC 3207 5),
 * that a failed handshake is reported once to both sides, and that close_notify ends the
 * session. The certificate comes from the openssl CLI into a mkdtemp() directory. */
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
#include <uv.h>

#include "conn.h"
#include "hf_err.h"
#include "tls.h"

static char dir[64], cert[128], key[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/hf-test-conn-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=mx.test -addext subjectAltName=DNS:mx.test -keyout %s -out %s "
             ">/dev/null 2>&1",
             key, cert);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    unlink(cert);
    unlink(key);
    rmdir(dir);
    return 0;
}

enum mode {
    MODE_STARTTLS,          /* plain greeting, STARTTLS, then EHLO over TLS */
    MODE_INJECT_SAME,       /* STARTTLS and a pipelined EHLO in one write */
    MODE_INJECT_LATE,       /* plaintext EHLO sent after the server switched to TLS */
    MODE_IMPLICIT,          /* TLS from the first octet */
    MODE_WRONG_HOST,        /* the client verifies another name: the handshake fails */
    MODE_PLAIN_TO_IMPLICIT, /* a plaintext client talks to the TLS listener */
};

#define NLINES 4000

struct side {
    struct conn *c;
    char buf[128 * 1024];
    size_t len;
    char log[8192]; /* every line received, "T:" before it when it came over TLS */
    int ready;      /* handshake status reported, 1 until reported */
    int nready;     /* how often on_ready ran */
    int eof;        /* status given to on_eof, 1 until then */
    long lines;     /* bulk lines counted (server) */
    bool closed;
};

static struct {
    uv_loop_t loop;
    uv_tcp_t listener;
    enum mode mode;
    struct tls_ctx *sctx, *cctx;
    struct side srv, cli;
    int accept_rc;
} T;

static void logline(struct side *s, const char *line)
{
    size_t l = strlen(s->log);
    snprintf(s->log + l, sizeof(s->log) - l, "%s%s|", conn_tls(s->c) ? "T:" : "", line);
}

static void say(struct conn *c, const char *text)
{
    assert_int_equal(conn_write(c, text, strlen(text)), 0);
}

/* Calls fn for each complete line of s->buf; stops early when fn returns false (the rest
 * of the buffer is then dropped, as an owner must at STARTTLS). */
static void lines(struct side *s, const char *data, size_t len, bool (*fn)(struct side *, char *))
{
    assert_true(s->len + len < sizeof(s->buf));
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    size_t start = 0;
    for (size_t i = 0; i + 1 < s->len; i++) {
        if (s->buf[i] != '\r' || s->buf[i + 1] != '\n')
            continue;
        s->buf[i] = '\0';
        bool go_on = fn(s, s->buf + start);
        start = i + 2;
        if (!go_on) {
            s->len = 0;
            return;
        }
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

/* ---- server ---- */

static void srv_ready(struct conn *c, int status)
{
    T.srv.ready = status;
    T.srv.nready++;
    if (status < 0)
        conn_close(c, true);
}

static bool srv_line(struct side *s, char *line)
{
    if (line[0] == 'L') { /* bulk data */
        s->lines++;
        return true;
    }
    logline(s, line);
    if (!conn_tls(s->c) && strcmp(line, "STARTTLS") == 0) {
        say(s->c, "220 go ahead\r\n");
        struct tls_conn *t;
        assert_int_equal(tls_conn_new(T.sctx, true, NULL, TLS_VERIFY_NONE, &t), 0);
        assert_int_equal(conn_start_tls(s->c, t, srv_ready), 0);
        return false; /* RFC 3207 5: whatever followed STARTTLS is discarded */
    }
    if (!conn_tls(s->c) && strncmp(line, "EHLO", 4) == 0) {
        say(s->c, "250 plain\r\n");
    } else if (strncmp(line, "EHLO ", 5) == 0) {
        char reply[300];
        snprintf(reply, sizeof(reply), "250 hello %s\r\n", line + 5);
        say(s->c, reply);
    } else if (strcmp(line, "COUNT") == 0) {
        char reply[64];
        snprintf(reply, sizeof(reply), "250 count %ld\r\n", s->lines);
        say(s->c, reply);
    } else if (strcmp(line, "QUIT") == 0) {
        say(s->c, "221 bye\r\n");
        conn_close(s->c, false); /* sends close_notify after the reply */
        return false;
    }
    return true;
}

static void srv_on_read(struct conn *c, const char *data, size_t len)
{
    (void)c;
    lines(&T.srv, data, len, srv_line);
}

static void srv_on_eof(struct conn *c, int status)
{
    T.srv.eof = status;
    conn_close(c, true);
}

static void srv_on_close(struct conn *c)
{
    (void)c;
    T.srv.closed = true;
}

static const struct conn_ops srv_ops = {
    .on_read = srv_on_read, .on_eof = srv_on_eof, .on_close = srv_on_close};

static void on_connection(uv_stream_t *server, int status)
{
    assert_int_equal(status, 0);
    if (T.mode == MODE_IMPLICIT || T.mode == MODE_PLAIN_TO_IMPLICIT) {
        struct tls_conn *t;
        assert_int_equal(tls_conn_new(T.sctx, true, NULL, TLS_VERIFY_NONE, &t), 0);
        T.accept_rc = conn_accept_tls(server, &srv_ops, NULL, t, srv_ready, &T.srv.c);
        assert_int_equal(T.accept_rc, 0);
        say(T.srv.c, "220 implicit\r\n"); /* held until the handshake is done */
    } else {
        T.accept_rc = conn_accept(server, &srv_ops, NULL, &T.srv.c);
        assert_int_equal(T.accept_rc, 0);
        say(T.srv.c, "220 hello\r\n");
    }
    assert_int_equal(conn_read_start(T.srv.c), 0);
}

/* ---- client ---- */

static void cli_ready(struct conn *c, int status)
{
    T.cli.ready = status;
    T.cli.nready++;
    if (status < 0) {
        conn_close(c, true);
        return;
    }
    assert_true(conn_tls(c) != NULL);
    assert_true(tls_peer_verified(conn_tls(c)));
    say(c, "EHLO client.test\r\n");
}

static void cli_start_tls(struct conn *c)
{
    struct tls_conn *t;
    const char *host = T.mode == MODE_WRONG_HOST ? "other.test" : "mx.test";
    assert_int_equal(tls_conn_new(T.cctx, false, host, TLS_VERIFY_CHAIN_AND_HOST, &t), 0);
    assert_int_equal(conn_start_tls(c, t, cli_ready), 0);
}

static bool cli_line(struct side *s, char *line)
{
    logline(s, line);
    if (strcmp(line, "220 hello") == 0) {
        if (T.mode == MODE_INJECT_SAME) {
            say(s->c, "STARTTLS\r\nEHLO injected\r\n");
        } else {
            say(s->c, "STARTTLS\r\n");
        }
    } else if (strcmp(line, "220 go ahead") == 0) {
        if (T.mode == MODE_INJECT_LATE) /* reaches the server after its switch */
            say(s->c, "EHLO injected\r\n");
        cli_start_tls(s->c);
        return false; /* nothing after the 220 may be taken as plaintext */
    } else if (strncmp(line, "250 hello", 9) == 0) {
        char bulk[128];
        memset(bulk, 'x', sizeof(bulk));
        bulk[0] = 'L';
        bulk[sizeof(bulk) - 2] = '\r';
        bulk[sizeof(bulk) - 1] = '\n';
        for (int i = 0; i < NLINES; i++)
            assert_int_equal(conn_write(s->c, bulk, sizeof(bulk)), 0);
        say(s->c, "COUNT\r\n");
    } else if (strncmp(line, "250 count", 9) == 0) {
        say(s->c, "QUIT\r\n");
    }
    return true;
}

static void cli_on_read(struct conn *c, const char *data, size_t len)
{
    (void)c;
    lines(&T.cli, data, len, cli_line);
}

static void cli_on_eof(struct conn *c, int status)
{
    T.cli.eof = status;
    conn_close(c, true);
}

static void cli_on_connect(struct conn *c, int status)
{
    assert_int_equal(status, 0);
    assert_int_equal(conn_read_start(c), 0);
    if (T.mode == MODE_IMPLICIT)
        cli_start_tls(c);
    else if (T.mode == MODE_PLAIN_TO_IMPLICIT)
        say(c, "EHLO plain.test\r\n");
}

static void cli_on_close(struct conn *c)
{
    (void)c;
    T.cli.closed = true;
}

static const struct conn_ops cli_ops = {.on_read = cli_on_read,
                                        .on_eof = cli_on_eof,
                                        .on_connect = cli_on_connect,
                                        .on_close = cli_on_close};

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

/* Runs one session in mode until both conns have closed (bounded by a deadline). */
static void run(enum mode mode)
{
    memset(&T, 0, sizeof(T));
    T.mode = mode;
    T.srv.ready = T.cli.ready = 1;
    T.srv.eof = T.cli.eof = 1;
    assert_int_equal(tls_ctx_server_new(cert, key, &T.sctx), 0);
    assert_int_equal(tls_ctx_client_new(cert, &T.cctx), 0);
    assert_int_equal(uv_loop_init(&T.loop), 0);
    assert_int_equal(uv_tcp_init(&T.loop, &T.listener), 0);
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", 0, &sin);
    assert_int_equal(uv_tcp_bind(&T.listener, (const struct sockaddr *)&sin, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&T.listener, 8, on_connection), 0);
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    assert_int_equal(uv_tcp_getsockname(&T.listener, (struct sockaddr *)&ss, &sl), 0);
    assert_int_equal(conn_connect(&T.loop, (struct sockaddr *)&ss, 5000, &cli_ops, NULL, &T.cli.c),
                     0);
    uint64_t deadline = uv_now(&T.loop) + 20000;
    while (!(T.srv.closed && T.cli.closed) && uv_now(&T.loop) < deadline)
        uv_run(&T.loop, UV_RUN_ONCE);
    assert_true(T.srv.closed);
    assert_true(T.cli.closed);
    uv_close((uv_handle_t *)&T.listener, on_listener_closed);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&T.loop), 0);
    tls_ctx_free(T.sctx);
    tls_ctx_free(T.cctx);
}

static void test_starttls(void **state)
{
    (void)state;
    run(MODE_STARTTLS);
    assert_int_equal(T.srv.ready, 0);
    assert_int_equal(T.cli.ready, 0);
    assert_int_equal(T.srv.nready, 1);
    assert_int_equal(T.cli.nready, 1);
    assert_int_equal(T.srv.lines, NLINES);
    assert_string_equal(T.srv.log, "STARTTLS|T:EHLO client.test|T:COUNT|T:QUIT|");
    char want[128];
    snprintf(want, sizeof(want),
             "220 hello|220 go ahead|T:250 hello client.test|T:250 count %d|"
             "T:221 bye|",
             NLINES);
    assert_string_equal(T.cli.log, want);
    assert_int_equal(T.cli.eof, UV_EOF); /* the server's close_notify, then TCP EOF */
}

/* RFC 3207 5: an EHLO pipelined with STARTTLS in one segment is not executed. */
static void test_injection_same_read(void **state)
{
    (void)state;
    run(MODE_INJECT_SAME);
    assert_null(strstr(T.srv.log, "injected"));
    assert_int_equal(T.srv.ready, 0);
    assert_string_equal(T.srv.log, "STARTTLS|T:EHLO client.test|T:COUNT|T:QUIT|");
}

/* Plaintext that arrives after the switch is fed to TLS, where it is garbage in place of a
 * ClientHello: the handshake fails. Never is it a command. */
static void test_injection_late(void **state)
{
    (void)state;
    run(MODE_INJECT_LATE);
    assert_null(strstr(T.srv.log, "injected"));
    assert_string_equal(T.srv.log, "STARTTLS|");
    assert_int_equal(T.srv.ready, HF_ETLS);
    assert_int_equal(T.srv.nready, 1);
    assert_int_equal(T.cli.ready, HF_ETLS);
}

static void test_implicit(void **state)
{
    (void)state;
    run(MODE_IMPLICIT);
    assert_int_equal(T.srv.ready, 0);
    assert_int_equal(T.cli.ready, 0);
    assert_int_equal(T.srv.lines, NLINES);
    assert_string_equal(T.srv.log, "T:EHLO client.test|T:COUNT|T:QUIT|");
    assert_non_null(strstr(T.cli.log, "T:220 implicit|"));
}

static void test_wrong_host(void **state)
{
    (void)state;
    run(MODE_WRONG_HOST);
    assert_int_equal(T.cli.ready, HF_ETLS);
    assert_int_equal(T.srv.ready, HF_ETLS);
    assert_int_equal(T.cli.nready, 1);
    assert_int_equal(T.srv.nready, 1);
    assert_string_equal(T.srv.log, "STARTTLS|");
}

static void test_plain_to_implicit(void **state)
{
    (void)state;
    run(MODE_PLAIN_TO_IMPLICIT);
    assert_int_equal(T.srv.ready, HF_ETLS);
    assert_int_equal(T.srv.nready, 1);
    assert_string_equal(T.srv.log, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starttls),       cmocka_unit_test(test_injection_same_read),
        cmocka_unit_test(test_injection_late), cmocka_unit_test(test_implicit),
        cmocka_unit_test(test_wrong_host),     cmocka_unit_test(test_plain_to_implicit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
