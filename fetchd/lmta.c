/* The local MTA transaction (see lmta.h): a small SMTP/LMTP client with one command in
 * flight at a time. Replies are cut into lines here and read with smtp_reply_feed(); the
 * body goes out dot-stuffed by smtpc_stuff(). Lifetime: a reference per pending DNS
 * lookup, per open connection and per callback in progress; lmta_end() drops the owner's,
 * and the last one frees. */
#include "lmta.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hf_err.h"
#include "log.h"
#include "mta.h"
#include "smtp_cmd.h"
#include "smtp_reply.h"
#include "smtpc.h"

#define LMTA_LINE_MAX 2048 /* a reply line; RFC 5321 4.5.3.1.5 says 512: be lenient */
#define LMTA_RCPT_MAX 1024

enum lmta_state {
    LMTA_ST_RESOLVE = 0, /* looking the host up, or connecting */
    LMTA_ST_GREET,       /* waiting for 220 */
    LMTA_ST_HELLO,       /* EHLO / LHLO sent */
    LMTA_ST_MAIL,        /* MAIL sent */
    LMTA_ST_IDLE,        /* in the transaction, nothing pending */
    LMTA_ST_RCPT,        /* RCPT sent */
    LMTA_ST_DATA,        /* DATA sent, waiting for 354 */
    LMTA_ST_DOT,         /* body sent, waiting for the final answer(s) */
    LMTA_ST_DONE,        /* over: answered or broken */
};

struct lmta {
    uv_loop_t *loop;
    struct dns *dns;
    char host[256];
    int port;
    bool lmtp;
    char *helo;
    char *log_id;
    uint64_t timeout_ms;
    lmta_cb cb;
    void *arg;
    unsigned refs;
    bool ended;     /* lmta_end(): no more callbacks */
    bool mail_ok;   /* MAIL answered 2xx */
    bool ext_8bit;  /* the local MTA offers 8BITMIME */
    bool body_8bit; /* the message asked for BODY=8BITMIME */
    char sender[SMTP_PATH_MAX + 1];
    enum lmta_state state;
    struct conn *conn;
    struct smtp_reply reply;
    char line[LMTA_LINE_MAX];
    size_t line_len;
    char *body; /* stuffed, sent after 354 */
    size_t body_len;
    size_t want; /* answers expected after the data (LMTP: recipients taken) */
    size_t nans;
    struct handoff_rcpt *ans;
    char (*ans_text)[HANDOFF_TEXT_MAX];
    char (*ans_enh)[16];
};

static void lmta_unref(struct lmta *l)
{
    if (--l->refs)
        return;
    free(l->helo);
    free(l->log_id);
    free(l->body);
    free(l->ans);
    free(l->ans_text);
    free(l->ans_enh);
    free(l);
}

static enum lmta_step lmta_step_of(enum lmta_state st)
{
    switch (st) {
    case LMTA_ST_RCPT:
        return LMTA_RCPT;
    case LMTA_ST_DATA:
    case LMTA_ST_DOT:
        return LMTA_DATA;
    default:
        return LMTA_MAIL;
    }
}

/* Hands the answers of the step in progress to the owner (unless it has ended). */
static void lmta_answer(struct lmta *l, enum lmta_step step, const struct handoff_rcpt *r, size_t n)
{
    if (l->ended)
        return;
    l->refs++;
    l->cb(step, r, n, l->arg);
    lmta_unref(l);
}

/* The connection cannot go on: the step in progress gets code 0 and why; later steps are
 * refused. The connection is cut (before "." the local MTA keeps nothing). */
static void lmta_fail(struct lmta *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lmta_fail(struct lmta *l, const char *fmt, ...)
{
    if (l->state == LMTA_ST_DONE)
        return;
    char why[HANDOFF_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    bool pending = l->state != LMTA_ST_IDLE;
    enum lmta_step step = lmta_step_of(l->state);
    l->state = LMTA_ST_DONE;
    log_warn("%s local_mta=%s:%d %s", l->log_id, l->host, l->port, why);
    if (l->conn)
        conn_close(l->conn, true);
    if (pending) {
        struct handoff_rcpt r = {.code = 0, .enh = "", .text = why};
        lmta_answer(l, step, &r, 1);
    }
}

static int lmta_send(struct lmta *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lmta_send(struct lmta *l, const char *fmt, ...)
{
    char buf[SMTP_CMD_LINE_LONGEST + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf) - 2)
        return -EINVAL;
    memcpy(buf + n, "\r\n", 2);
    conn_set_timeout(l->conn, l->timeout_ms);
    return conn_write(l->conn, buf, (size_t)n + 2);
}

static void lmta_send_mail(struct lmta *l)
{
    if (l->body_8bit && !l->ext_8bit) {
        /* RFC 6152 3: no 8-bit data to a server that did not offer 8BITMIME. */
        l->state = LMTA_ST_IDLE;
        struct handoff_rcpt r = {554, "5.6.3", "the local MTA does not offer 8BITMIME"};
        lmta_answer(l, LMTA_MAIL, &r, 1);
        return;
    }
    l->state = LMTA_ST_MAIL;
    if (lmta_send(l, "MAIL FROM:<%s>%s", l->sender, l->body_8bit ? " BODY=8BITMIME" : "") < 0)
        lmta_fail(l, "cannot send MAIL");
}

/* A complete reply in the current state. */
static void lmta_on_reply(struct lmta *l, const struct smtp_reply *r)
{
    int cls = smtp_reply_class(r->code);
    struct handoff_rcpt a = {r->code, r->enh, r->text};
    switch (l->state) {
    case LMTA_ST_GREET:
        if (r->code != 220) {
            lmta_fail(l, "greeting refused: %d %s", r->code, r->text);
            return;
        }
        l->state = LMTA_ST_HELLO;
        if (lmta_send(l, "%s %s", l->lmtp ? "LHLO" : "EHLO", l->helo) < 0)
            lmta_fail(l, "cannot send %s", l->lmtp ? "LHLO" : "EHLO");
        return;
    case LMTA_ST_HELLO:
        if (cls != 2) {
            lmta_fail(l, "%s refused: %d %s", l->lmtp ? "LHLO" : "EHLO", r->code, r->text);
            return;
        }
        l->ext_8bit = smtp_reply_has_ext(r, "8BITMIME", NULL);
        lmta_send_mail(l);
        return;
    case LMTA_ST_MAIL:
        l->state = LMTA_ST_IDLE;
        l->mail_ok = cls == 2;
        conn_set_timeout(l->conn, 0);
        lmta_answer(l, LMTA_MAIL, &a, 1);
        return;
    case LMTA_ST_RCPT:
        l->state = LMTA_ST_IDLE;
        conn_set_timeout(l->conn, 0);
        lmta_answer(l, LMTA_RCPT, &a, 1);
        return;
    case LMTA_ST_DATA:
        if (r->code != 354) {
            /* Every recipient gets the refusal of DATA. */
            l->state = LMTA_ST_IDLE;
            conn_set_timeout(l->conn, 0);
            lmta_answer(l, LMTA_DATA, &a, 1);
            return;
        }
        l->state = LMTA_ST_DOT;
        conn_set_timeout(l->conn, l->timeout_ms);
        if (conn_write(l->conn, l->body, l->body_len) < 0)
            lmta_fail(l, "cannot send the message");
        free(l->body);
        l->body = NULL;
        return;
    case LMTA_ST_DOT: {
        size_t i = l->nans++;
        snprintf(l->ans_text[i], HANDOFF_TEXT_MAX, "%s", r->text);
        snprintf(l->ans_enh[i], 16, "%s", r->enh);
        l->ans[i] = (struct handoff_rcpt){r->code, l->ans_enh[i], l->ans_text[i]};
        if (l->nans < l->want)
            return;
        l->state = LMTA_ST_IDLE;
        l->mail_ok = false; /* the transaction is over */
        conn_set_timeout(l->conn, 0);
        lmta_answer(l, LMTA_DATA, l->ans, l->nans);
        return;
    }
    default:
        lmta_fail(l, "unexpected reply %d", r->code);
        return;
    }
}

static void lmta_on_read(struct conn *c, const char *data, size_t len)
{
    struct lmta *l = conn_data(c);
    l->refs++;
    for (size_t i = 0; i < len && l->state != LMTA_ST_DONE; i++) {
        if (data[i] != '\n') {
            if (l->line_len >= sizeof(l->line) - 1) {
                lmta_fail(l, "reply line too long");
                break;
            }
            l->line[l->line_len++] = data[i];
            continue;
        }
        size_t n = l->line_len;
        if (n && l->line[n - 1] == '\r')
            n--;
        l->line_len = 0;
        if (l->state == LMTA_ST_IDLE || l->state == LMTA_ST_RESOLVE) {
            lmta_fail(l, "reply nothing was waiting for");
            break;
        }
        int rc = smtp_reply_feed(&l->reply, l->line, n);
        if (rc < 0) {
            lmta_fail(l, "malformed reply");
            break;
        }
        if (rc == 1)
            lmta_on_reply(l, &l->reply);
    }
    lmta_unref(l);
}

static void lmta_on_eof(struct conn *c, int status)
{
    struct lmta *l = conn_data(c);
    l->refs++;
    lmta_fail(l, "connection lost: %s", status == UV_EOF ? "closed" : hf_strerror(status));
    conn_close(c, true);
    lmta_unref(l);
}

static void lmta_on_timeout(struct conn *c)
{
    struct lmta *l = conn_data(c);
    l->refs++;
    lmta_fail(l, "no answer within %llu ms", (unsigned long long)l->timeout_ms);
    conn_close(c, true);
    lmta_unref(l);
}

static void lmta_on_connect(struct conn *c, int status)
{
    struct lmta *l = conn_data(c);
    if (status < 0) {
        l->refs++;
        lmta_fail(l, "not reachable: %s", hf_strerror(status));
        lmta_unref(l);
        return;
    }
    if (l->state != LMTA_ST_RESOLVE) /* ended meanwhile */
        return;
    l->state = LMTA_ST_GREET;
    smtp_reply_init(&l->reply);
    conn_set_timeout(c, l->timeout_ms);
    conn_read_start(c);
}

static void lmta_on_close(struct conn *c)
{
    struct lmta *l = conn_data(c);
    l->conn = NULL;
    if (l->state != LMTA_ST_DONE) {
        l->refs++;
        lmta_fail(l, "connection closed");
        lmta_unref(l);
    }
    lmta_unref(l); /* the connection's */
}

static const struct conn_ops lmta_conn_ops = {
    .on_read = lmta_on_read,
    .on_eof = lmta_on_eof,
    .on_timeout = lmta_on_timeout,
    .on_connect = lmta_on_connect,
    .on_close = lmta_on_close,
};

static void lmta_on_addr(const struct dns_addr_result *res, void *arg)
{
    struct lmta *l = arg;
    if (l->state == LMTA_ST_DONE || l->ended) {
        l->state = LMTA_ST_DONE;
        lmta_unref(l);
        return;
    }
    if (res->status < 0) {
        lmta_fail(l, "lookup failed: %s", hf_strerror(res->status));
        lmta_unref(l);
        return;
    }
    struct sockaddr_storage sa = res->addrs[0];
    if (sa.ss_family == AF_INET)
        ((struct sockaddr_in *)(void *)&sa)->sin_port = htons((uint16_t)l->port);
    else
        ((struct sockaddr_in6 *)(void *)&sa)->sin6_port = htons((uint16_t)l->port);
    struct conn *c;
    int rc =
        conn_connect(l->loop, (const struct sockaddr *)&sa, l->timeout_ms, &lmta_conn_ops, l, &c);
    if (rc == 0) {
        l->conn = c;
        l->refs++; /* the connection's, dropped in lmta_on_close */
    } else {
        lmta_fail(l, "not reachable: %s", hf_strerror(rc));
    }
    lmta_unref(l); /* the lookup's */
}

int lmta_start(const struct lmta_params *p, const char *sender, bool body_8bit, lmta_cb cb,
               void *arg, struct lmta **out)
{
    if (strlen(sender) > SMTP_PATH_MAX)
        return -EINVAL;
    struct lmta *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    if (mta_parse(p->local_mta, l->host, sizeof(l->host), &l->port) < 0) {
        free(l);
        return -EINVAL;
    }
    l->loop = p->loop;
    l->dns = p->dns;
    l->lmtp = p->lmtp;
    l->timeout_ms = p->timeout_ms;
    l->cb = cb;
    l->arg = arg;
    l->body_8bit = body_8bit;
    snprintf(l->sender, sizeof(l->sender), "%s", sender);
    l->helo = strdup(p->helo);
    l->log_id = strdup(p->log_id ? p->log_id : "atrn");
    l->refs = 1; /* the owner's */
    if (!l->helo || !l->log_id) {
        lmta_unref(l);
        return -ENOMEM;
    }
    l->refs++; /* the lookup's */
    int rc = dns_addr_resolve(l->dns, l->host, lmta_on_addr, l);
    if (rc < 0) {
        l->refs = 1;
        lmta_unref(l);
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    *out = l;
    return 0;
}

int lmta_rcpt(struct lmta *l, const char *addr)
{
    if (l->state == LMTA_ST_DONE || !l->conn)
        return -ENOTCONN;
    if (l->state != LMTA_ST_IDLE || !l->mail_ok)
        return -EBUSY;
    if (strlen(addr) > SMTP_PATH_MAX)
        return -EINVAL;
    l->state = LMTA_ST_RCPT;
    if (lmta_send(l, "RCPT TO:<%s>", addr) < 0) {
        l->state = LMTA_ST_IDLE;
        return -ENOTCONN;
    }
    return 0;
}

int lmta_data(struct lmta *l, const char *body, size_t len, size_t ntaken)
{
    if (l->state == LMTA_ST_DONE || !l->conn)
        return -ENOTCONN;
    if (l->state != LMTA_ST_IDLE || !l->mail_ok || ntaken == 0 || ntaken > LMTA_RCPT_MAX)
        return -EBUSY;
    struct smtpc_stuff st;
    smtpc_stuff_init(&st);
    free(l->body);
    l->body = malloc(SMTPC_STUFF_MAX(len));
    l->want = l->lmtp ? ntaken : 1;
    l->nans = 0;
    free(l->ans);
    free(l->ans_text);
    free(l->ans_enh);
    l->ans = calloc(l->want, sizeof(*l->ans));
    l->ans_text = calloc(l->want, sizeof(*l->ans_text));
    l->ans_enh = calloc(l->want, sizeof(*l->ans_enh));
    if (!l->body || !l->ans || !l->ans_text || !l->ans_enh)
        return -ENOMEM;
    l->body_len = smtpc_stuff(&st, body, len, true, l->body);
    l->state = LMTA_ST_DATA;
    if (lmta_send(l, "DATA") < 0) {
        l->state = LMTA_ST_IDLE;
        return -ENOTCONN;
    }
    return 0;
}

void lmta_end(struct lmta *l)
{
    if (!l || l->ended)
        return;
    l->ended = true;
    if (l->conn && !conn_is_closing(l->conn)) {
        if (l->state == LMTA_ST_IDLE) {
            lmta_send(l, "QUIT");
            conn_close(l->conn, false);
        } else {
            conn_close(l->conn, true);
        }
    }
    l->state = LMTA_ST_DONE;
    lmta_unref(l);
}
