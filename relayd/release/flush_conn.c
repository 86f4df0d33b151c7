/* One outbound SMTP connection of a queue run: connect to an exchanger (the next one when it
 * fails or refuses the session), STARTTLS with the domain's policy (none, may, encrypt,
 * verify, dane), hand the run's messages one after another to the SMTP client machine
 * (smtpc.h), stream bodies from the queue, and record every recipient's outcome.
 *
 * The run (flush.c) owns the shared state; this file reads the run's attempts and TLSA
 * answers and changes the run only through w->own (flush_conn.h), never by calling into
 * flush.c. Dialling (flush_conn_start, flush_on_connect's failure path, the next exchanger
 * in flush_on_close) is kept apart from the session on an open connection
 * (flush_conn_begin and everything after it), which does not care how it was opened. */
#include "flush_conn.h"
#include "flush_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hf_err.h"
#include "log.h"
#include "snap.h"
#include "tls.h"

static void flush_worker_next(struct flush_worker *w);
static void flush_worker_act(struct flush_worker *w);
static int flush_worker_starttls(struct flush_worker *w);
static void flush_conn_begin(struct flush_worker *w, struct conn *c);

/* ---- one SMTP connection ----------------------------------------------------------------- */

static void flush_worker_free(struct flush_worker *w)
{
    if (w->sc_live)
        smtpc_close(&w->sc);
    free(w->cur_rcpts);
    free(w->cur_notify);
    free(w);
}

static void flush_worker_end(struct flush_worker *w)
{
    struct flush_run *run = w->run;
    if (w->body_busy) { /* the pool still writes into w: end when the read is back */
        w->end_pending = true;
        return;
    }
    if (w->cur && !w->cur->done) {
        struct smtpc_result res;
        memset(&res, 0, sizeof(res));
        res.outcome = SMTPC_DEFER;
        snprintf(res.text, sizeof(res.text), "connection to %s lost", w->relay);
        w->own->record(run, w->cur, w->relay, NULL, NULL, &res);
    }
    w->cur = NULL;
    /* The run forgets w (and may end, freeing itself): run is not looked at afterwards. */
    w->own->worker_done(run, w);
    flush_worker_free(w);
}

/* Runs in libuv's thread pool: copies the stored message out of LMDB (a read transaction of
 * its own), so page faults on a cold queue never stall the loop. */
static int flush_body_collect(const char *data, size_t len, void *arg)
{
    struct flush_worker *w = arg;
    if (w->body_len + len > w->body_cap) {
        size_t cap = w->body_cap ? w->body_cap : 65536;
        while (cap < w->body_len + len)
            cap *= 2;
        char *nb = realloc(w->body_buf, cap);
        if (!nb)
            return -ENOMEM;
        w->body_buf = nb;
        w->body_cap = cap;
    }
    memcpy(w->body_buf + w->body_len, data, len);
    w->body_len += len;
    return 0;
}

static void flush_body_work(uv_work_t *req)
{
    struct flush_worker *w = req->data;
    w->body_rc = queue_read_body(w->run->fl->rd->q, w->body_id, flush_body_collect, w);
}

/* Hands the body to smtpc (dot-stuffed there) and then the end of data. */
static void flush_body_send(struct flush_worker *w, int rc)
{
    if (rc == 0 && w->body_len)
        rc = smtpc_body(&w->sc, w->body_buf, w->body_len, false);
    if (rc == 0)
        rc = smtpc_body(&w->sc, NULL, 0, true);
    if (rc < 0) {
        char qid[QUEUE_ID_STR];
        log_warn("%s cannot read the stored message err=%s; aborting the connection so the "
                 "server does not take a partial message",
                 queue_id_str(w->body_id, qid), hf_errname(rc));
        /* smtpc defers every recipient not yet final. */
        smtpc_on_closed(&w->sc, rc);
    }
}

static void flush_body_release(struct flush_worker *w)
{
    free(w->body_buf);
    w->body_buf = NULL;
    w->body_len = w->body_cap = 0;
}

static void flush_body_done(uv_work_t *req, int status)
{
    struct flush_worker *w = req->data;
    w->body_busy = false;
    int rc = status < 0 ? status : w->body_rc;
    bool live = !w->end_pending && w->sc_live && w->sc.state == SMTPC_ST_BODY && w->cur &&
                w->cur->id == w->body_id && w->conn && !conn_is_closing(w->conn);
    if (live)
        flush_body_send(w, rc);
    flush_body_release(w);
    if (w->end_pending) {
        flush_worker_end(w);
        return;
    }
    if (live)
        flush_worker_act(w);
}

/* Sends the current message's body from the queue: read off the loop, then dot-stuffed by
 * smtpc. */
static void flush_worker_body(struct flush_worker *w)
{
    if (w->body_busy)
        return;
    w->body_id = w->cur->id;
    w->body_len = 0;
    w->body_work.data = w;
    if (uv_queue_work(w->run->fl->rd->loop, &w->body_work, flush_body_work, flush_body_done) == 0) {
        w->body_busy = true;
        return;
    }
    /* No thread pool: read on the loop rather than not at all. */
    w->body_rc = queue_read_body(w->run->fl->rd->q, w->body_id, flush_body_collect, w);
    flush_body_send(w, w->body_rc);
    flush_body_release(w);
}

/* Hands the next waiting message of the run to the machine, or ends the session. */
static void flush_worker_next(struct flush_worker *w)
{
    struct flush_run *run = w->run;
    for (;;) {
        struct flush_item *it = w->own->take(run);
        if (!it) {
            smtpc_quit(&w->sc);
            return;
        }
        w->cur = it;
        free(w->cur_rcpts);
        free(w->cur_notify);
        w->cur_rcpts = calloc(it->nrcpt, sizeof(*w->cur_rcpts));
        w->cur_notify = calloc(it->nrcpt, 32);
        if (!w->cur_rcpts || !w->cur_notify) {
            smtpc_on_closed(&w->sc, -ENOMEM);
            return;
        }
        for (size_t i = 0; i < it->nrcpt; i++) {
            const struct queue_rcpt *r = &it->rcpts[i];
            char *nb = w->cur_notify + 32 * i;
            if (r->notify & SMTP_NOTIFY_NEVER) {
                snprintf(nb, 32, "NEVER");
            } else if (r->notify) {
                snprintf(nb, 32, "%s%s%s", (r->notify & SMTP_NOTIFY_SUCCESS) ? "SUCCESS," : "",
                         (r->notify & SMTP_NOTIFY_FAILURE) ? "FAILURE," : "",
                         (r->notify & SMTP_NOTIFY_DELAY) ? "DELAY," : "");
                size_t l = strlen(nb);
                if (l)
                    nb[l - 1] = '\0';
            }
            w->cur_rcpts[i].addr = r->addr;
            w->cur_rcpts[i].orcpt = r->orcpt[0] ? r->orcpt : NULL;
            w->cur_rcpts[i].notify = nb[0] ? nb : NULL;
        }
        memset(&w->msg, 0, sizeof(w->msg));
        w->msg.sender = it->env.sender;
        w->msg.size = it->env.size;
        w->msg.body_8bit = (it->env.flags & QUEUE_F_8BITMIME) != 0;
        w->msg.smtputf8 = (it->env.flags & QUEUE_F_SMTPUTF8) != 0;
        w->msg.ret = it->env.ret == SMTP_RET_FULL   ? "FULL"
                     : it->env.ret == SMTP_RET_HDRS ? "HDRS"
                                                    : NULL;
        w->msg.envid = it->env.envid[0] ? it->env.envid : NULL;
        w->msg.rcpts = w->cur_rcpts;
        w->msg.nrcpt = it->nrcpt;
        int rc = smtpc_msg_begin(&w->sc, &w->msg);
        if (rc == -ENOMEM) {
            smtpc_on_closed(&w->sc, rc);
            return;
        }
        if (rc < 0) { /* cannot happen for a well-formed item; keep it for later */
            struct smtpc_result res;
            memset(&res, 0, sizeof(res));
            res.outcome = SMTPC_DEFER;
            snprintf(res.text, sizeof(res.text), "internal error err=%s", hf_errname(rc));
            w->own->record(run, it, w->relay, NULL, NULL, &res);
            w->cur = NULL;
            continue;
        }
        return;
    }
}

static void flush_tls_ready(struct conn *c, int status)
{
    struct flush_worker *w = conn_data(c);
    if (!w || !w->sc_live)
        return;
    struct tls_conn *t = conn_tls(c);
    const char *policy = w->own->tls_policy(w->run);
    if (status == 0 && t) {
        bool verified = tls_peer_verified(t);
        snprintf(w->tls_desc, sizeof(w->tls_desc), "%s,%s,%s", tls_version(t), tls_cipher(t),
                 verified ? "verified" : "unverified");
        log_info("flush domain=%s relay=%s tls established %s %s verify=%s policy=%s",
                 w->run->domain, w->relay, tls_version(t), tls_cipher(t), tls_verify_result_text(t),
                 policy);
        if ((strcmp(policy, "verify") == 0 || w->dane_required) && !verified) {
            snprintf(w->why, sizeof(w->why), "%s: certificate not verified (%s), policy %s",
                     w->relay, tls_verify_result_text(t), policy);
            smtpc_on_closed(&w->sc, HF_ETLS);
            flush_worker_act(w);
            conn_close(c, true);
            return;
        }
        smtpc_on_tls_ready(&w->sc);
    } else {
        const char *why = t ? tls_verify_result_text(t) : "";
        log_info("flush domain=%s relay=%s tls handshake failed policy=%s%s%s", w->run->domain,
                 w->relay, policy, why[0] ? " verify=" : "", why);
        snprintf(w->why, sizeof(w->why), "%s: TLS handshake failed%s%s (policy %s)", w->relay,
                 why[0] ? ": " : "", why, policy);
        smtpc_on_closed(&w->sc, HF_ETLS);
    }
    flush_worker_act(w);
}

/* smtpc saw "220" to STARTTLS: switch the connection to TLS with the domain's checks. */
static int flush_worker_starttls(struct flush_worker *w)
{
    struct flush_run *run = w->run;
    struct relayd *rd = run->fl->rd;
    const char *policy = w->own->tls_policy(run);
    const struct mx_attempt *a = &run->attempts[w->attempt];
    bool check = strcmp(policy, "verify") == 0 ||
                 (strcmp(policy, "dane") == 0 && run->tlsa[w->attempt].secure &&
                  run->tlsa[w->attempt].n > 0);
    /* The reference identity is the MX host name from DNS (RFC 7672 3.2.2 / RFC 6125); a
     * static next hop has none to check. */
    const char *host = run->static_hop ? NULL : a->host;
    if (check && !host) {
        log_warn("flush domain=%s tls=%s cannot be checked on a static next hop (no MX host "
                 "name to verify); delivery deferred",
                 run->domain, policy);
        snprintf(w->why, sizeof(w->why),
                 "%s: tls = %s needs an MX host name to verify; a static next_hop has none",
                 w->relay, policy);
        return HF_ETLS;
    }
    struct tls_conn *t = NULL;
    int rc;
    w->dane_required = false;
    const struct flush_tlsa *ta = &run->tlsa[w->attempt];
    if (strcmp(policy, "dane") == 0 && ta->secure && ta->n > 0) {
        /* RFC 7672 2.2: usable, DNSSEC-validated TLSA records authenticate the server;
         * without any usable one the session is encrypted but not authenticated. */
        rc = tls_conn_new(rd->tls_client, false, host, TLS_VERIFY_DANE, &t);
        if (rc < 0)
            return rc;
        size_t usable = 0;
        for (size_t i = 0; i < ta->n; i++)
            if (tls_dane_add(t, ta->rr[i].usage, ta->rr[i].selector, ta->rr[i].mtype,
                             ta->rr[i].data, ta->rr[i].len) == 0)
                usable++;
        if (usable == 0) {
            tls_conn_free(t);
            t = NULL;
            rc = tls_conn_new(rd->tls_client, false, host, TLS_VERIFY_NONE, &t);
            log_info("flush domain=%s relay=%s dane: no usable TLSA record, encrypting without "
                     "authentication (RFC 7672 2.2)",
                     run->domain, w->relay);
        } else {
            w->dane_required = true;
        }
    } else {
        bool chain = strcmp(policy, "verify") == 0;
        rc = tls_conn_new(rd->tls_client, false, host,
                          chain ? TLS_VERIFY_CHAIN_AND_HOST : TLS_VERIFY_NONE, &t);
    }
    if (rc < 0)
        return rc;
    tls_conn_set_log_id(t, run->domain);
    rc = conn_start_tls(w->conn, t, flush_tls_ready);
    if (rc == 0)
        w->tls_switch = true;
    return rc;
}

/* Acts on the machine's actions until none is left. */
static void flush_worker_act(struct flush_worker *w)
{
    for (int guard = 0; guard < 100000; guard++) {
        unsigned act = smtpc_take_actions(&w->sc);
        if (!act)
            return;
        if (act & SMTPC_ACT_WRITE) {
            size_t len = 0;
            char *out = smtpc_out_take(&w->sc, &len);
            int rc = 0;
            if (out && len && w->conn && !conn_is_closing(w->conn))
                rc = conn_write(w->conn, out, len);
            free(out);
            if (rc < 0) {
                smtpc_on_closed(&w->sc, rc);
                continue;
            }
        }
        if (act & SMTPC_ACT_STARTTLS) {
            int rc = flush_worker_starttls(w);
            if (rc < 0) {
                smtpc_on_closed(&w->sc, rc);
                continue;
            }
        }
        if ((act & SMTPC_ACT_BODY) && w->cur)
            flush_worker_body(w);
        if ((act & SMTPC_ACT_MSG_DONE) && w->cur) {
            w->cur->hop_dsn = (w->sc.ext & SMTPC_EXT_DSN) != 0;
            w->own->record(w->run, w->cur, w->relay, w->tls_desc, w->sc.rcpt_res, NULL);
            w->cur = NULL;
        }
        if (act & SMTPC_ACT_NEXT)
            flush_worker_next(w);
        if (act & SMTPC_ACT_CLOSE) {
            if (w->conn && !conn_is_closing(w->conn))
                conn_close(w->conn, false);
        }
    }
}

static void flush_on_read(struct conn *c, const char *data, size_t len)
{
    struct flush_worker *w = conn_data(c);
    if (!w || !w->sc_live)
        return;
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (ch == '\n') {
            size_t l = w->line_len;
            if (l && w->line[l - 1] == '\r')
                l--;
            w->line_len = 0;
            smtpc_on_line(&w->sc, w->line, l);
            flush_worker_act(w);
            if (w->sc.state == SMTPC_ST_DONE || !conn_data(c))
                return;
            if (w->tls_switch) {
                /* RFC 3207 5: nothing the server sent after its 220 counts; the TLS layer
                 * takes over the stream from the next read. */
                w->tls_switch = false;
                w->line_len = 0;
                return;
            }
            continue;
        }
        if (w->line_len >= sizeof(w->line) - 1) {
            /* A reply line this long is not SMTP (RFC 5321 4.5.3.1.5: 512 octets). */
            w->line_len = 0;
            smtpc_on_closed(&w->sc, HF_EPROTO);
            flush_worker_act(w);
            conn_close(c, true);
            return;
        }
        w->line[w->line_len++] = ch;
    }
    /* RFC 5321 4.5.3.2: 5 minutes per reply, 10 for the final dot; ATRN its own. */
    if (w->adopted)
        conn_set_timeout(c, w->reply_timeout_ms);
    else
        conn_set_timeout(c, w->sc.state == SMTPC_ST_DOT ? 600000 : 300000);
}

static void flush_on_eof(struct conn *c, int status)
{
    struct flush_worker *w = conn_data(c);
    if (w && w->sc_live && w->sc.state != SMTPC_ST_DONE) {
        smtpc_on_closed(&w->sc, status == UV_EOF ? -ECONNRESET : status);
        flush_worker_act(w);
    }
    conn_close(c, true);
}

static void flush_on_timeout(struct conn *c)
{
    struct flush_worker *w = conn_data(c);
    if (w && w->sc_live && w->sc.state != SMTPC_ST_DONE) {
        log_info("flush domain=%s relay=%s timeout in state %s", w->run->domain, w->relay,
                 smtpc_state_name(w->sc.state));
        smtpc_on_closed(&w->sc, -ETIMEDOUT);
        flush_worker_act(w);
    }
    conn_close(c, true);
}

/* The connection is closed: if the session failed before any message was tried, try the
 * next exchanger; otherwise this worker is done. */
static void flush_on_close(struct conn *c)
{
    struct flush_worker *w = conn_data(c);
    if (!w)
        return;
    w->conn = NULL;
    bool session_failed =
        w->sc_live && (w->sc.session.outcome == SMTPC_DEFER || w->sc.session.outcome == SMTPC_FAIL);
    if (w->sc_live && session_failed) {
        char text[SMTPC_TEXT_MAX + 32];
        if (w->why[0])
            snprintf(text, sizeof(text), "%s", w->why);
        else if (w->sc.session.code)
            snprintf(text, sizeof(text), "%s: %d %s", w->relay, w->sc.session.code,
                     w->sc.session.text);
        else
            snprintf(text, sizeof(text), "%s: %s", w->relay, w->sc.session.text);
        for (char *p = text; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        w->own->note(w->run, NULL, text);
    }
    if (w->cur && !w->cur->done) {
        struct smtpc_result res;
        memset(&res, 0, sizeof(res));
        res.outcome = SMTPC_DEFER;
        snprintf(res.text, sizeof(res.text), "connection to %s lost", w->relay);
        w->own->record(w->run, w->cur, w->relay, NULL, NULL, &res);
        w->cur = NULL;
    }
    if (w->sc_live) {
        smtpc_close(&w->sc);
        w->sc_live = false;
    }
    /* Messages remain and this host refused or failed the session: next exchanger. */
    bool left = w->run->next_item < w->run->nitems;
    /* (Not while a body read is in flight for the old session: it still owns the worker.) */
    if (session_failed && left && !w->run->fl->stopping && !w->body_busy &&
        w->attempt + 1 < w->run->nattempts) {
        w->attempt++;
        flush_conn_start(w);
        return;
    }
    flush_worker_end(w);
}

static void flush_on_connect(struct conn *c, int status)
{
    struct flush_worker *w = conn_data(c);
    struct flush_run *run = w->run;
    if (status < 0) {
        log_info("flush domain=%s relay=%s connect failed err=%s (%s)", run->domain, w->relay,
                 hf_errname(status), uv_strerror(status));
        char why[sizeof(run->sum.error)];
        snprintf(why, sizeof(why), "connect to %s failed: %s", w->relay, uv_strerror(status));
        w->own->note(run, NULL, why);
        conn_set_data(c, NULL);
        w->conn = NULL;
        if (!run->fl->stopping && w->attempt + 1 < run->nattempts) {
            w->attempt++;
            flush_conn_start(w);
        } else {
            flush_worker_end(w);
        }
        return;
    }
    flush_conn_begin(w, c);
}

/* Starts the SMTP session of w on c, an open connection whose callbacks are
 * flush_conn_ops: the client machine waits for the greeting. */
static void flush_conn_begin(struct flush_worker *w, struct conn *c)
{
    struct flush_run *run = w->run;
    const char *policy = w->own->tls_policy(run);
    struct smtpc_opts o = {
        .mode = SMTPC_MODE_DELIVER,
        .helo = run->fl->rd->prm.hostname,
        .log_id = run->domain,
        .tls = w->adopted                   ? SMTPC_TLS_NEVER
               : strcmp(policy, "none") == 0 ? SMTPC_TLS_NEVER
               : strcmp(policy, "may") == 0  ? SMTPC_TLS_OPPORTUNISTIC
                                             : SMTPC_TLS_REQUIRED,
    };
    /* dane: TLS is mandatory only where secure TLSA records exist (RFC 7672 2.2); an
     * exchanger without them is treated opportunistically. */
    if (!w->adopted && strcmp(policy, "dane") == 0 &&
        !(run->tlsa[w->attempt].secure && run->tlsa[w->attempt].n > 0))
        o.tls = SMTPC_TLS_OPPORTUNISTIC;
    snprintf(w->tls_desc, sizeof(w->tls_desc), "none");
    struct tls_conn *t = w->adopted ? conn_tls(c) : NULL;
    if (t) /* the client's own TLS session, from before ATRN */
        snprintf(w->tls_desc, sizeof(w->tls_desc), "%s,%s,client-session", tls_version(t),
                 tls_cipher(t));
    w->why[0] = '\0';
    w->tls_switch = false;
    if (smtpc_init(&w->sc, &o) < 0) {
        conn_close(c, true);
        return;
    }
    w->sc_live = true;
    w->line_len = 0;
    log_debug("flush domain=%s relay=%s connected", run->domain, w->relay);
    conn_read_start(c);
    conn_set_timeout(c, w->adopted ? w->reply_timeout_ms : 300000);
}

static const struct conn_ops flush_conn_ops = {
    .on_read = flush_on_read,
    .on_eof = flush_on_eof,
    .on_timeout = flush_on_timeout,
    .on_connect = flush_on_connect,
    .on_close = flush_on_close,
};

void flush_conn_start(struct flush_worker *w)
{
    struct flush_run *run = w->run;
    struct relayd *rd = run->fl->rd;
    for (; w->attempt < run->nattempts; w->attempt++) {
        const struct mx_attempt *a = &run->attempts[w->attempt];
        const struct flush_tlsa *ta = &run->tlsa[w->attempt];
        if (ta->looked_up && ta->status != 0 && ta->status != -ENOENT) {
            /* RFC 7672 2.1.1: a failed TLSA lookup is not "no TLSA": skip this host. */
            char why[sizeof(run->sum.error)];
            snprintf(why, sizeof(why),
                     "TLSA lookup for %s failed (%s): not delivering there without it", a->host,
                     hf_strerror(ta->status));
            w->own->note(run, NULL, why);
            log_info("flush domain=%s host=%s tlsa lookup failed err=%s: skipped", run->domain,
                     a->host, hf_errname(ta->status));
            continue;
        }
        char ip[INET6_ADDRSTRLEN];
        int port = conn_sockaddr_str((const struct sockaddr *)&a->addr, ip, sizeof(ip));
        snprintf(w->relay, sizeof(w->relay), "%s[%s]:%d", a->host, ip, port);
        w->own->note(run, w->relay, NULL);
        struct conn *c;
        int rc = conn_connect(rd->loop, (const struct sockaddr *)&a->addr,
                              run->snap->cfg.timeout_connect * 1000, &flush_conn_ops, w, &c);
        if (rc == 0) {
            w->conn = c;
            return;
        }
        log_info("flush domain=%s relay=%s connect failed err=%s", run->domain, w->relay,
                 hf_errname(rc));
    }
    flush_worker_end(w);
}

void flush_conn_adopt(struct flush_worker *w, struct conn *c, const char *relay, const char *pre,
                      size_t prelen, uint64_t timeout_ms)
{
    w->adopted = true;
    w->reply_timeout_ms = timeout_ms;
    w->attempt = 0;
    w->conn = c;
    snprintf(w->relay, sizeof(w->relay), "%s", relay);
    w->own->note(w->run, w->relay, NULL);
    conn_set_owner(c, &flush_conn_ops, w);
    flush_conn_begin(w, c);
    if (prelen && w->sc_live && conn_data(c) == w)
        flush_on_read(c, pre, prelen);
}
