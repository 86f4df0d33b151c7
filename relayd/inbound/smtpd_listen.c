/* The listeners: SMTP (listen), implicit-TLS SMTP (listen_tls, RFC 8314) and ODMR
 * (listen_odmr and listen_odmr_tls, RFC 2645), each handing its connections to
 * smtpd_io_accept with what it serves. */
#include "relayd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hf_err.h"
#include "log.h"
#include "smtpd_io_int.h"

static void smtpd_io_on_connection(uv_stream_t *server, int status)
{
    smtpd_io_accept(server, status, false, false);
}

static void smtpd_io_on_tls_connection(uv_stream_t *server, int status)
{
    smtpd_io_accept(server, status, true, false);
}

static void smtpd_io_on_odmr_connection(uv_stream_t *server, int status)
{
    smtpd_io_accept(server, status, false, true);
}

static void smtpd_io_on_odmr_tls_connection(uv_stream_t *server, int status)
{
    smtpd_io_accept(server, status, true, true);
}

static size_t smtpd_io_count_words(const char *s)
{
    size_t n = 0;
    for (const char *p = s; p && *p; p++)
        if (*p != ' ' && (p == s || p[-1] == ' '))
            n++;
    return n;
}

int smtpd_io_listen(struct relayd *rd)
{
    const struct cfg *cf = rd->cfg;
    static const char *const names[] = {"listen", "listen_tls", "listen_odmr",
                                        "listen_odmr_tls"};
    static const uv_connection_cb cbs[] = {smtpd_io_on_connection, smtpd_io_on_tls_connection,
                                           smtpd_io_on_odmr_connection,
                                           smtpd_io_on_odmr_tls_connection};
    static const char *const what[] = {"", " (implicit TLS)", " (ODMR, RFC 2645)",
                                       " (ODMR, implicit TLS)"};
    const char *lists[] = {cf->listen ? cf->listen : "", cf->listen_tls ? cf->listen_tls : "",
                           cf->listen_odmr ? cf->listen_odmr : "",
                           cf->listen_odmr_tls ? cf->listen_odmr_tls : ""};
    for (int k = SMTPD_IO_SMTP_TLS; k <= SMTPD_IO_ODMR_TLS; k += 2) {
        if (*lists[k] && !rd->tls_server) {
            log_err("%s needs tls_cert and tls_key", names[k]);
            return HF_ECONFIG;
        }
    }
    if (smtpd_io_count_words(lists[SMTPD_IO_SMTP]) == 0) {
        log_err("no listen address configured");
        return HF_ECONFIG;
    }
    size_t n = 0;
    for (int k = 0; k < 4; k++)
        n += smtpd_io_count_words(lists[k]);
    rd->listeners = calloc(n, sizeof(*rd->listeners));
    rd->listener_kind = calloc(n, 1);
    if (!rd->listeners || !rd->listener_kind)
        return -ENOMEM;
    for (int k = 0; k < 4; k++) {
        char buf[2048];
        snprintf(buf, sizeof(buf), "%s", lists[k]);
        char *save = NULL;
        for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            struct sockaddr_storage ss;
            if (conn_parse_hostport(w, k >= SMTPD_IO_ODMR ? 366 : 25, &ss) < 0) {
                log_err("%s: '%s' is not an address:port", names[k], w);
                return HF_ECONFIG;
            }
            uv_tcp_t *t = &rd->listeners[rd->nlisteners];
            rd->listener_kind[rd->nlisteners] = (unsigned char)k;
            uv_tcp_init(rd->loop, t);
            t->data = rd;
            rd->nlisteners++;
            int rc = uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
            if (rc == 0)
                rc = uv_listen((uv_stream_t *)t, 511, cbs[k]);
            if (rc < 0) {
                log_err("%s on %s failed err=%s (%s)", names[k], w, hf_errname(rc),
                        uv_strerror(rc));
                return rc;
            }
            log_info("listening on %s%s", w, what[k]);
        }
    }
    return 0;
}

