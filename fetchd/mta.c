/* The local MTA wait (see mta.h). One attempt = resolve the host (literals and "localhost"
 * are answered without DNS) + one connect with a short timeout; between attempts a timer.
 * The struct lives until the callback has run and its timer, its DNS lookup and its
 * connection are all gone: each of those holds a reference. */
#include "mta.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hf_err.h"
#include "log.h"

#define MTA_PAUSE_FIRST_MS 100
#define MTA_PAUSE_MAX_MS   2000
#define MTA_CONNECT_MAX_MS 5000

struct mta_wait {
    uv_loop_t *loop;
    struct dns *dns;
    char host[256];
    int port;
    uint64_t deadline; /* uv_now() when the bound runs out */
    uint64_t pause_ms;
    int last_err;
    unsigned attempts;
    uv_timer_t timer;
    struct conn *conn; /* the connection attempt in flight, or NULL */
    int refs;          /* the timer handle, a pending lookup, a live connection */
    bool done;
    mta_wait_cb cb;
    void *arg;
};

int mta_parse(const char *s, char *host, size_t hostsz, int *port)
{
    const char *h = s, *p = NULL;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return -EINVAL;
        h = s + 1;
        hl = (size_t)(end - h);
        if (end[1] == ':')
            p = end + 2;
        else if (end[1] != '\0')
            return -EINVAL;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon)
            return -EINVAL; /* a bare IPv6 address needs brackets */
        hl = colon ? (size_t)(colon - s) : strlen(s);
        p = colon ? colon + 1 : NULL;
    }
    if (hl == 0 || hl >= hostsz)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (strpbrk(host, " \t"))
        return -EINVAL;
    *port = 25;
    if (p) {
        char *end;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        long v = strtol(p, &end, 10);
        if (*end || v < 1 || v > 65535)
            return -EINVAL;
        *port = (int)v;
    }
    return 0;
}

static void mta_unref(struct mta_wait *w)
{
    if (--w->refs == 0)
        free(w);
}

static void mta_timer_closed(uv_handle_t *h)
{
    mta_unref(h->data);
}

static void mta_finish(struct mta_wait *w, int status)
{
    if (w->done)
        return;
    w->done = true;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, mta_timer_closed);
    if (w->conn)
        conn_close(w->conn, true); /* its close callback drops its reference */
    w->cb(status, w->arg);
}

static void mta_attempt(struct mta_wait *w);

static void mta_on_timer(uv_timer_t *t)
{
    mta_attempt(t->data);
}

/* The attempt failed with err: pause and try again, or give up at the bound. */
static void mta_again(struct mta_wait *w, int err)
{
    if (w->done)
        return;
    w->last_err = err;
    uint64_t now = uv_now(w->loop);
    if (now + w->pause_ms >= w->deadline) {
        log_warn("local_mta=%s:%d not accepting connections after %u attempts err=%s (%s)", w->host,
                 w->port, w->attempts, hf_errname(err), hf_strerror(err));
        mta_finish(w, -ETIMEDOUT);
        return;
    }
    if (w->attempts == 1)
        log_info("local_mta=%s:%d not accepting connections yet err=%s; waiting", w->host, w->port,
                 hf_errname(err));
    uv_timer_start(&w->timer, mta_on_timer, w->pause_ms, 0);
    w->pause_ms = w->pause_ms * 2 > MTA_PAUSE_MAX_MS ? MTA_PAUSE_MAX_MS : w->pause_ms * 2;
}

static void mta_on_connect(struct conn *c, int status)
{
    struct mta_wait *w = conn_data(c);
    if (w->done)
        return;
    if (status == 0) {
        log_debug("local_mta=%s:%d accepts connections", w->host, w->port);
        conn_close(c, true);
        mta_finish(w, 0);
        return;
    }
    w->last_err = status;
}

static void mta_on_eof(struct conn *c, int status)
{
    (void)status;
    conn_close(c, true);
}

static void mta_on_close(struct conn *c)
{
    struct mta_wait *w = conn_data(c);
    w->conn = NULL;
    if (!w->done)
        mta_again(w, w->last_err ? w->last_err : -ECONNREFUSED);
    mta_unref(w);
}

static const struct conn_ops mta_conn_ops = {
    .on_eof = mta_on_eof,
    .on_connect = mta_on_connect,
    .on_close = mta_on_close,
};

static void mta_on_addr(const struct dns_addr_result *res, void *arg)
{
    struct mta_wait *w = arg;
    if (w->done || res->status < 0) {
        if (!w->done)
            mta_again(w, res->status);
        mta_unref(w);
        return;
    }
    struct sockaddr_storage sa = res->addrs[0];
    if (sa.ss_family == AF_INET)
        ((struct sockaddr_in *)(void *)&sa)->sin_port = htons((uint16_t)w->port);
    else
        ((struct sockaddr_in6 *)(void *)&sa)->sin6_port = htons((uint16_t)w->port);
    uint64_t now = uv_now(w->loop);
    uint64_t left = w->deadline > now ? w->deadline - now : 1;
    struct conn *c;
    w->last_err = 0;
    int rc =
        conn_connect(w->loop, (const struct sockaddr *)&sa,
                     left < MTA_CONNECT_MAX_MS ? left : MTA_CONNECT_MAX_MS, &mta_conn_ops, w, &c);
    if (rc == 0) {
        w->conn = c;
        w->refs++; /* the connection's reference, dropped in mta_on_close */
    } else
        mta_again(w, rc);
    mta_unref(w); /* the lookup's */
}

static void mta_attempt(struct mta_wait *w)
{
    w->attempts++;
    w->refs++;
    int rc = dns_addr_resolve(w->dns, w->host, mta_on_addr, w);
    if (rc < 0) {
        w->refs--;
        mta_again(w, rc);
    }
}

int mta_wait_start(uv_loop_t *loop, struct dns *dns, const char *hostport, uint64_t bound_ms,
                   mta_wait_cb cb, void *arg, struct mta_wait **out)
{
    struct mta_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    if (mta_parse(hostport, w->host, sizeof(w->host), &w->port) < 0) {
        free(w);
        return -EINVAL;
    }
    w->loop = loop;
    w->dns = dns;
    w->cb = cb;
    w->arg = arg;
    w->pause_ms = MTA_PAUSE_FIRST_MS;
    w->deadline = uv_now(loop) + bound_ms;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    w->refs = 1; /* the timer handle's, dropped in its close callback */
    /* The first attempt goes from the loop too, so cb never runs inside this call. */
    uv_timer_start(&w->timer, mta_on_timer, 0, 0);
    *out = w;
    return 0;
}

void mta_wait_cancel(struct mta_wait *w)
{
    mta_finish(w, -ECANCELED);
}
