/* Glue between connections and the inbound dialogue: accepts connections within the limits,
 * feeds bytes to smtpd, sends its replies, hands complete messages to the writer thread and
 * answers the client when the commit is durable. */
#include "relayd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "cram.h"
#include "hf_err.h"
#include "smtpd_io_int.h"
#include "log.h"
#include "msghdr.h"
#include "snap.h"
#include "tls.h"

struct session {
    struct relayd *rd;
    struct relayd_snap *snap; /* the configuration the session started with (a reference) */
    struct conn *conn;
    uint64_t id;
    uint64_t ip_key;
    struct smtpd sm;
    char *pending; /* input received while the session waited */
    size_t pending_len;
    bool implicit_tls; /* accepted on a listen_tls or listen_odmr_tls port */
    bool odmr;         /* accepted on an ODMR listener (RFC 2645) */
};



/* Replies a client has not read yet, past which it is dropped: a client that pipelines
 * commands without ever reading the answers must not make us buffer without bound. */
#define SMTPD_IO_MAX_UNREAD (4u * 1024u * 1024u)

static void smtpd_io_flush_out(struct session *se)
{
    struct smtpd *s = &se->sm;
    if (s->out.len) {
        if (conn_write(se->conn, s->out.buf, s->out.len) < 0)
            s->out.act |= SMTPD_ACT_CLOSE;
    }
    if (conn_write_pending(se->conn) > SMTPD_IO_MAX_UNREAD && !conn_is_closing(se->conn)) {
        log_warn("c=%llu dropped client=[%s] reason=replies_not_read pending=%zu",
                 (unsigned long long)se->id, s->client_addr, conn_write_pending(se->conn));
        smtpd_out_reset(s);
        conn_close(se->conn, true);
        return;
    }
    unsigned act = s->out.act;
    smtpd_out_reset(s);
    if (act & SMTPD_ACT_CLOSE)
        conn_close(se->conn, false);
}

static void smtpd_io_arm_timer(struct session *se)
{
    const struct cfg *c = &se->snap->cfg;
    bool data = se->sm.st == SMTPD_ST_DATA || se->sm.st == SMTPD_ST_CHUNK;
    uint64_t secs = data ? c->timeout_data : c->timeout_command;
    if (se->sm.st == SMTPD_ST_COMMIT || se->sm.st == SMTPD_ST_WAIT)
        secs = 0; /* waiting on us, not on the client */
    conn_set_timeout(se->conn, secs * 1000);
}

/* Formats the Received: header (RFC 5321 4.4) for m into buf. */
static int smtpd_io_received(const struct session *se, const struct smtpd_msg *m, const char *qid,
                             char *buf, size_t sz)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    /* RFC 3848 / RFC 6531 protocol names: S for TLS, A for AUTH. */
    char proto[16];
    snprintf(proto, sizeof(proto), "%s%s%s",
             m->smtputf8    ? "UTF8SMTP"
             : se->sm.esmtp ? "ESMTP"
                            : "SMTP",
             se->sm.tls ? "S" : "", se->sm.user ? "A" : "");
    char tlsc[420] = "";
    size_t tl = 0;
    if (se->sm.tls && se->sm.tls_info[0])
        tl = (size_t)snprintf(tlsc, sizeof(tlsc), "\r\n\t(using %s)", se->sm.tls_info);
    if (se->sm.user && se->snap->cfg.received_auth_user && tl < sizeof(tlsc)) {
        char user[260];
        snprintf(user, sizeof(user), "%s", se->sm.user);
        for (char *p = user; *p; p++) /* client-chosen text: keep the header one header */
            if ((unsigned char)*p < 0x21 || *p == '(' || *p == ')' || *p == '\\')
                *p = '?';
        snprintf(tlsc + tl, sizeof(tlsc) - tl, "\r\n\t(authenticated as %s)", user);
    }
    char helo[300];
    /* The HELO name is client-supplied: keep it printable so it cannot break the header. */
    snprintf(helo, sizeof(helo), "%s", se->sm.helo ? se->sm.helo : "unknown");
    for (char *p = helo; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e || *p == '(' || *p == ')')
            *p = '?';
    int n;
    if (m->nrcpt == 1)
        n = snprintf(buf, sz,
                     "Received: from %s ([%s])%s\r\n\tby %s (holdfast) with %s id %s\r\n"
                     "\tfor <%s>; %s\r\n",
                     helo, se->sm.client_addr, tlsc, se->rd->prm.hostname, proto, qid,
                     m->rcpts[0].addr, date);
    else
        n = snprintf(buf, sz,
                     "Received: from %s ([%s])%s\r\n\tby %s (holdfast) with %s id %s;\r\n\t%s\r\n",
                     helo, se->sm.client_addr, tlsc, se->rd->prm.hostname, proto, qid, date);
    return (n < 0 || (size_t)n >= sz) ? -ENOSPC : n;
}

static void smtpd_io_process(struct session *se, const char *data, size_t len);

static void smtpd_io_resume(struct session *se)
{
    if (conn_is_closing(se->conn))
        return;
    if (se->pending_len) {
        char *p = se->pending;
        size_t n = se->pending_len;
        se->pending = NULL;
        se->pending_len = 0;
        smtpd_io_process(se, p, n);
        free(p);
        if (se->pending_len || conn_is_closing(se->conn))
            return;
    }
    if (se->sm.st != SMTPD_ST_COMMIT && se->sm.st != SMTPD_ST_WAIT &&
        se->sm.st != SMTPD_ST_CLOSED) {
        conn_read_start(se->conn);
        smtpd_io_arm_timer(se);
    }
}

/* A commit's context: the message buffer stays counted in data_mem until the writer is done
 * with it. */
struct commit_ctx {
    struct relayd *rd;
    size_t mem;
    /* The message's log lines, in Postfix's words (README, Logging), logged once the commit
     * is durable: a message that never got its 250 was never received. */
    char client[512];
    char msgid[400];
    char from[512];
    char *rcpts; /* malloc'd "QID: accepted to=<a>" lines separated by NUL, or NULL */
    size_t rcpts_len;
};

static void smtpd_io_log_accepted(const struct commit_ctx *cc)
{
    log_svc(LOG_LVL_INFO, "smtpd", "%s", cc->client);
    log_svc(LOG_LVL_INFO, "cleanup", "%s", cc->msgid);
    log_svc(LOG_LVL_INFO, "qmgr", "%s", cc->from);
    for (size_t o = 0; cc->rcpts && o < cc->rcpts_len; o += strlen(cc->rcpts + o) + 1)
        log_svc(LOG_LVL_INFO, "qmgr", "%s", cc->rcpts + o);
}

static void smtpd_io_committed(int status, uint64_t token, uint64_t id, void *arg)
{
    struct commit_ctx *cc = arg;
    struct relayd *rd = cc->rd;
    rd->data_mem -= cc->mem;
    if (status == 0)
        smtpd_io_log_accepted(cc);
    free(cc->rcpts);
    free(cc);
    struct session *se = idmap_get(&rd->sessions, token);
    char qid[QUEUE_ID_STR];
    queue_id_str(id, qid);
    if (status < 0) {
        rd->stats.queue_errors++;
        log_err("c=%llu queue commit failed err=%s (%s)", (unsigned long long)token,
                hf_errname(status), hf_strerror(status));
    }
    if (!se) {
        if (status == 0)
            log_warn("%s client went away before the commit; the message is queued and may "
                     "be sent again by the client",
                     qid);
        return;
    }
    if (status == 0)
        rd->stats.accepted++;
    smtpd_committed(&se->sm, status, qid);
    smtpd_io_flush_out(se);
    smtpd_io_resume(se);
}

/* Formats the accepted message's lines (logged by smtpd_io_committed):
 *   QID: client=unknown[ADDR], c=N, helo=<NAME>[, sasl_username=USER][, tls=...]
 *   QID: message-id=<...>
 *   QID: from=<SENDER>, size=N, nrcpt=N (queue active)
 *   QID: accepted to=<RCPT>          (one per recipient; not Postfix's, ours) */
static void smtpd_io_log_prepare(struct session *se, const struct smtpd_msg *m,
                                 const struct queue_new_msg *qm, const char *qid,
                                 struct commit_ctx *cc)
{
    char a[300], b[300];
    const struct smtpd *s = &se->sm;
    int n = snprintf(cc->client, sizeof(cc->client), "%s: client=unknown[%s], c=%llu, helo=<%s>",
                     qid, s->client_addr, (unsigned long long)se->id,
                     log_safe(s->helo ? s->helo : "", a, sizeof(a)));
    if (n > 0 && s->user && (size_t)n < sizeof(cc->client))
        n += snprintf(cc->client + n, sizeof(cc->client) - (size_t)n, ", sasl_username=%s",
                      log_safe(s->user, b, sizeof(b)));
    if (n > 0 && s->tls && (size_t)n < sizeof(cc->client))
        snprintf(cc->client + n, sizeof(cc->client) - (size_t)n, ", tls=%s",
                 log_safe(s->tls_info, b, sizeof(b)));
    char id[300];
    if (msghdr_find(qm->body, qm->body_len, "Message-ID", id, sizeof(id)) < 0)
        id[0] = '\0';
    snprintf(cc->msgid, sizeof(cc->msgid), "%s: message-id=%s", qid, log_safe(id, a, sizeof(a)));
    snprintf(cc->from, sizeof(cc->from), "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)", qid,
             log_safe(m->sender, a, sizeof(a)), qm->body_len, m->nrcpt);
    size_t cap = m->nrcpt * (QUEUE_ID_STR + 330);
    cc->rcpts = cap ? malloc(cap) : NULL;
    for (size_t i = 0; cc->rcpts && i < m->nrcpt; i++) {
        int l = snprintf(cc->rcpts + cc->rcpts_len, cap - cc->rcpts_len, "%s: accepted to=<%s>",
                         qid, log_safe(m->rcpts[i].addr, a, sizeof(a)));
        if (l > 0)
            cc->rcpts_len += (size_t)l + 1;
    }
}

static void smtpd_io_commit(struct session *se)
{
    struct relayd *rd = se->rd;
    struct smtpd_msg *m = smtpd_take_message(&se->sm);
    struct queue_new_msg *qm = calloc(1, sizeof(*qm));
    if (!m || !qm)
        goto fail;
    qm->env.id = queue_id_next(rd->q);
    char qid[QUEUE_ID_STR];
    queue_id_str(qm->env.id, qid);
    char hdr[SMTPD_BODY_HEADROOM];
    int hl = smtpd_io_received(se, m, qid, hdr, sizeof(hdr));
    if (hl < 0 || (size_t)hl > m->head)
        goto fail;
    /* Prepend the header in the headroom, then move the whole message to the start of the
     * allocation, which the queue frees as body. */
    memcpy(m->buf + m->head - (size_t)hl, hdr, (size_t)hl);
    memmove(m->buf, m->buf + m->head - (size_t)hl, (size_t)hl + m->len);
    qm->body = m->buf;
    qm->body_len = (size_t)hl + m->len;
    m->buf = NULL;
    qm->env.arrival = (int64_t)time(NULL);
    qm->env.size = qm->body_len;
    qm->env.flags = (m->eight_bit ? QUEUE_F_8BITMIME : 0) | (m->smtputf8 ? QUEUE_F_SMTPUTF8 : 0);
    qm->env.ret = m->ret;
    snprintf(qm->env.envid, sizeof(qm->env.envid), "%s", m->envid ? m->envid : "");
    snprintf(qm->env.sender, sizeof(qm->env.sender), "%s", m->sender);
    snprintf(qm->env.client_name, sizeof(qm->env.client_name), "%s",
             se->sm.helo ? se->sm.helo : "");
    snprintf(qm->env.client_addr, sizeof(qm->env.client_addr), "%s", se->sm.client_addr);
    qm->env.nrcpt = (uint32_t)m->nrcpt;
    qm->nrcpt = m->nrcpt;
    qm->rcpts = calloc(m->nrcpt, sizeof(*qm->rcpts));
    if (!qm->rcpts)
        goto fail;
    for (size_t i = 0; i < m->nrcpt; i++) {
        struct queue_rcpt *r = &qm->rcpts[i];
        r->id = qm->env.id;
        r->idx = (uint32_t)i;
        snprintf(r->addr, sizeof(r->addr), "%s", m->rcpts[i].addr);
        snprintf(r->domain, sizeof(r->domain), "%s", m->rcpts[i].domain);
        snprintf(r->orcpt, sizeof(r->orcpt), "%s", m->rcpts[i].orcpt ? m->rcpts[i].orcpt : "");
        r->notify = m->rcpts[i].notify;
        r->state = QUEUE_RS_PENDING;
    }
    rd->stats.accepted_bytes += qm->body_len;
    struct commit_ctx *cc = calloc(1, sizeof(*cc));
    if (cc)
        smtpd_io_log_prepare(se, m, qm, qid, cc);
    size_t mem = m->mem;
    smtpd_msg_free(m);
    m = NULL;
    if (!cc) {
        rd->data_mem -= mem;
        queue_new_msg_free(qm);
        smtpd_committed(&se->sm, -ENOMEM, "");
        smtpd_io_flush_out(se);
        return;
    }
    cc->rd = rd;
    cc->mem = mem;
    int rc = queue_wr_put(rd->wr, qm, smtpd_io_committed, se->id, cc);
    if (rc < 0) { /* the writer freed qm */
        rd->data_mem -= mem;
        free(cc->rcpts);
        free(cc);
        smtpd_committed(&se->sm, rc, "");
        smtpd_io_flush_out(se);
    }
    return;
fail:
    if (m)
        rd->data_mem -= m->mem;
    smtpd_msg_free(m);
    queue_new_msg_free(qm);
    smtpd_committed(&se->sm, -ENOMEM, "");
    smtpd_io_flush_out(se);
}

/* ---- TLS and AUTH ----------------------------------------------------------------------- */

static void smtpd_io_tls_ready(struct conn *c, int status)
{
    struct session *se = conn_data(c);
    struct tls_conn *t = conn_tls(c);
    char info[96] = "";
    if (status == 0 && t)
        snprintf(info, sizeof(info), "%s with cipher %s", tls_version(t), tls_cipher(t));
    if (status == 0)
        log_info("c=%llu tls established %s client=[%s]%s", (unsigned long long)se->id, info,
                 se->sm.client_addr, se->implicit_tls ? " implicit=yes" : "");
    else
        log_info("c=%llu tls handshake failed client=[%s] err=%s", (unsigned long long)se->id,
                 se->sm.client_addr, hf_errname(status));
    if (se->implicit_tls) {
        /* The session began in TLS: the greeting is already queued behind the handshake. */
        if (status < 0) {
            conn_close(c, true);
            return;
        }
        snprintf(se->sm.tls_info, sizeof(se->sm.tls_info), "%s", info);
        return;
    }
    smtpd_tls_ready(&se->sm, status, info);
    smtpd_io_flush_out(se);
    if (status < 0) {
        conn_close(c, true);
        return;
    }
    smtpd_io_resume(se);
}

static void smtpd_io_starttls(struct session *se)
{
    struct tls_conn *t = NULL;
    int rc = tls_conn_new(se->rd->tls_server, true, NULL, TLS_VERIFY_NONE, &t);
    if (rc == 0) {
        char id[32];
        snprintf(id, sizeof(id), "c=%llu", (unsigned long long)se->id);
        tls_conn_set_log_id(t, id);
        rc = conn_start_tls(se->conn, t, smtpd_io_tls_ready);
    }
    if (rc < 0) {
        log_warn("c=%llu cannot start TLS err=%s", (unsigned long long)se->id, hf_errname(rc));
        conn_close(se->conn, false);
        return;
    }
    /* Keep reading: the handshake's records arrive through the same stream. */
    conn_read_start(se->conn);
    conn_set_timeout(se->conn, se->snap->cfg.timeout_command * 1000);
}

struct auth_job {
    uv_work_t req;
    struct relayd *rd;
    struct relayd_snap *snap; /* the credentials checked against (a reference) */
    uint64_t session_id;
    char client[64];
    char *user;
    char *pass;
    int rc;
};

static void smtpd_io_auth_work(uv_work_t *req)
{
    struct auth_job *j = req->data;
    /* scrypt takes ~0.1 s and 32 MiB: off the loop, in libuv's thread pool. */
    j->rc = auth_verify(&j->snap->auth, j->user, j->pass, NULL);
    auth_wipe(j->pass, strlen(j->pass));
}

static void smtpd_io_auth_finish(struct auth_job *j, int rc);

static void smtpd_io_auth_done(uv_work_t *req, int status)
{
    struct auth_job *j = req->data;
    smtpd_io_auth_finish(j, status < 0 ? status : j->rc);
}

/* CRAM-MD5 (RFC 2195): one HMAC-MD5, cheap enough for the loop. An unknown user costs the
 * same HMAC against a dummy secret and gets the same answer as a wrong digest. */
static int smtpd_io_cram_check(const struct session *se, const char *user, const char *hex)
{
    const struct cram_store *cs = &se->snap->cram;
    const struct cram_entry *e = cram_store_find(cs, user, strlen(user));
    static const char dummy[] = "holdfast-no-such-user";
    const char *chal = se->sm.cram_chal;
    bool ok = cram_md5_check(hex, e ? e->secret : dummy, e ? e->len : sizeof(dummy) - 1, chal,
                             strlen(chal));
    return ok && e ? 0 : -EACCES;
}

static void smtpd_io_auth_finish(struct auth_job *j, int rc)
{
    struct relayd *rd = j->rd;
    char u[300];
    log_safe(j->user, u, sizeof(u));
    if (rc == 0)
        log_info("c=%llu auth ok user=%s client=[%s]", (unsigned long long)j->session_id, u,
                 j->client);
    /* A failure is logged once, by the 535/454 reply (smtpd_note adds who and why). */
    if (rc == -EACCES) /* count failures only; a success does not refill the bucket */
        rate_take(&rd->auth_fail, rate_key(j->client), (int64_t)time(NULL),
                  (uint32_t)rd->cfg->auth_fail_limit);
    struct session *se = idmap_get(&rd->sessions, j->session_id);
    if (se && rc != 0)
        smtpd_note(&se->sm, "reason=auth_failed sasl_username=%s err=%s", u, hf_errname(rc));
    else if (rc != 0)
        log_warn("c=%llu auth failed user=%s client=[%s] err=%s (session gone)",
                 (unsigned long long)j->session_id, u, j->client, hf_errname(rc));
    if (se) {
        smtpd_auth_done(&se->sm, rc == 0, rc != 0 && rc != -EACCES, j->user);
        smtpd_io_flush_out(se);
        smtpd_io_resume(se);
    }
    relayd_snap_unref(j->snap);
    free(j->user);
    free(j->pass);
    free(j);
}

static void smtpd_io_auth(struct session *se)
{
    struct relayd *rd = se->rd;
    char *user = se->sm.out.auth_user, *pass = se->sm.out.auth_pass;
    se->sm.out.auth_user = se->sm.out.auth_pass = NULL;
    if (rate_exceeded(&rd->auth_fail, rate_key(se->sm.client_addr), (int64_t)time(NULL),
                      (uint32_t)rd->cfg->auth_fail_limit)) {
        smtpd_note(&se->sm, "reason=too_many_failures limit=%llu/min",
                   (unsigned long long)rd->cfg->auth_fail_limit);
        if (pass)
            auth_wipe(pass, strlen(pass));
        free(user);
        free(pass);
        smtpd_auth_done(&se->sm, false, true, NULL);
        smtpd_io_flush_out(se);
        return;
    }
    struct auth_job *j = calloc(1, sizeof(*j));
    if (!j || !user || !pass) {
        free(j);
        free(user);
        free(pass);
        smtpd_auth_done(&se->sm, false, true, NULL);
        smtpd_io_flush_out(se);
        return;
    }
    j->req.data = j;
    j->rd = rd;
    j->snap = relayd_snap_ref(se->snap);
    j->session_id = se->id;
    snprintf(j->client, sizeof(j->client), "%s", se->sm.client_addr);
    j->user = user;
    j->pass = pass;
    if (se->sm.out.auth_cram) {
        se->sm.out.auth_cram = false;
        smtpd_io_auth_finish(j, smtpd_io_cram_check(se, user, pass));
        return;
    }
    int rc = uv_queue_work(rd->loop, &j->req, smtpd_io_auth_work, smtpd_io_auth_done);
    if (rc < 0) {
        auth_wipe(pass, strlen(pass));
        relayd_snap_unref(j->snap);
        free(user);
        free(pass);
        free(j);
        smtpd_auth_done(&se->sm, false, true, NULL);
        smtpd_io_flush_out(se);
    }
}

static void smtpd_io_session_free(struct session *se);

static void smtpd_io_ignore(struct conn *c, const char *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
}

/* ATRN (RFC 2645 4.2): the release decides; on 250, once the reply is on its way, the
 * connection goes to the release (flush_atrn.c), which becomes the SMTP client on it, and
 * this session ends here without closing it. */
static void smtpd_io_atrn(struct session *se, const char *arg)
{
    struct relayd *rd = se->rd;
    struct atrn_reply rep = {.code = 451, .enh = "4.3.0"};
    snprintf(rep.text, sizeof(rep.text), "Unable to process ATRN request now");
    struct atrn_req req = {
        .session_id = se->id,
        .user = se->sm.user ? se->sm.user : "",
        .client_addr = se->sm.client_addr,
        .client_port = conn_peer_port(se->conn),
        .arg = arg,
        .tls = se->sm.tls ? (se->sm.tls_info[0] ? se->sm.tls_info : "yes") : "",
    };
    if (rd->atrn && rd->atrn_begin)
        rd->atrn(rd, &req, &rep);
    if (rep.code == 250 && !rep.release)
        rep.code = 451; /* cannot happen: a 250 always comes with its release */
    smtpd_atrn_done(&se->sm, rep.code, rep.enh, rep.text);
    smtpd_io_flush_out(se);
    struct conn *c = se->conn;
    if (rep.code != 250) {
        if (!conn_is_closing(c))
            smtpd_io_resume(se);
        return;
    }
    char *pre = se->pending;
    size_t prelen = se->pending_len;
    se->pending = NULL;
    se->pending_len = 0;
    char u[300];
    log_info("c=%llu atrn reversing the connection user=%s client=[%s]", (unsigned long long)se->id,
             log_safe(req.user, u, sizeof(u)), se->sm.client_addr);
    static const struct conn_ops gone = {.on_read = smtpd_io_ignore};
    conn_set_owner(c, &gone, NULL);
    smtpd_io_session_free(se);
    rd->atrn_begin(rd, rep.release, c, pre, prelen);
    free(pre);
}

/* Feeds data to the dialogue until it has to wait; keeps what it did not take. */
static void smtpd_io_process(struct session *se, const char *data, size_t len)
{
    size_t used = smtpd_input(&se->sm, data, len);
    if (se->sm.out.act & SMTPD_ACT_STARTTLS) {
        /* RFC 3207 5: everything after STARTTLS in this read is plaintext injection; it is
         * dropped, never kept for after the handshake. */
        if (used < len)
            log_info("c=%llu discarded %zu octets sent after STARTTLS client=[%s]",
                     (unsigned long long)se->id, len - used, se->sm.client_addr);
        used = len;
        free(se->pending);
        se->pending = NULL;
        se->pending_len = 0;
    }
    se->rd->stats.rejected_rcpt += se->sm.rej_rcpt;
    se->rd->stats.rejected_data += se->sm.rej_data;
    se->sm.rej_rcpt = se->sm.rej_data = 0;
    unsigned act = se->sm.out.act;
    char etrn_arg[sizeof(se->sm.out.etrn_arg)];
    if (act & (SMTPD_ACT_ETRN | SMTPD_ACT_ATRN))
        memcpy(etrn_arg, se->sm.out.etrn_arg, sizeof(etrn_arg));
    if (used < len && se->sm.st != SMTPD_ST_CLOSED) {
        char *p = malloc(len - used);
        if (!p) {
            smtpd_refuse(&se->sm, 421, "4.3.0", "Out of memory, closing connection");
        } else {
            memcpy(p, data + used, len - used);
            se->pending = p;
            se->pending_len = len - used;
            conn_read_stop(se->conn);
        }
    }
    smtpd_io_flush_out(se);
    if (conn_is_closing(se->conn))
        return;
    smtpd_io_arm_timer(se);
    if (act & SMTPD_ACT_STARTTLS)
        smtpd_io_starttls(se);
    if (act & SMTPD_ACT_AUTH)
        smtpd_io_auth(se);
    if (act & SMTPD_ACT_COMMIT)
        smtpd_io_commit(se);
    if (act & SMTPD_ACT_ETRN) {
        if (se->rd->etrn)
            se->rd->etrn(se->rd, se->id, se->sm.client_addr, se->sm.user, etrn_arg);
        else
            smtpd_io_etrn_done(se->rd, se->id, 458, NULL, "Unable to queue messages now");
    }
    if (act & SMTPD_ACT_ATRN)
        smtpd_io_atrn(se, etrn_arg); /* last: on 250 the session is gone after it */
}

void smtpd_io_note(struct relayd *rd, uint64_t session_id, const char *note)
{
    struct session *se = idmap_get(&rd->sessions, session_id);
    if (se)
        smtpd_note(&se->sm, "%s", note);
}

void smtpd_io_etrn_done(struct relayd *rd, uint64_t session_id, int code, const char *enh,
                        const char *text)
{
    struct session *se = idmap_get(&rd->sessions, session_id);
    if (!se)
        return;
    smtpd_etrn_done(&se->sm, code, enh, text);
    smtpd_io_flush_out(se);
    smtpd_io_resume(se);
}

static void smtpd_io_on_read(struct conn *c, const char *data, size_t len)
{
    struct session *se = conn_data(c);
    if (se->pending_len) { /* should not happen: reading stops while input is pending */
        char *p = realloc(se->pending, se->pending_len + len);
        if (!p) {
            conn_close(c, true);
            return;
        }
        memcpy(p + se->pending_len, data, len);
        se->pending = p;
        se->pending_len += len;
        return;
    }
    smtpd_io_process(se, data, len);
}

static void smtpd_io_on_eof(struct conn *c, int status)
{
    struct session *se = conn_data(c);
    if (se->sm.st == SMTPD_ST_DATA || se->sm.st == SMTPD_ST_MAIL || se->sm.st == SMTPD_ST_RCPT ||
        se->sm.st == SMTPD_ST_CHUNK || se->sm.st == SMTPD_ST_BDAT)
        log_info("c=%llu lost connection in state %s client=[%s] err=%s",
                 (unsigned long long)se->id, smtpd_state_name(se->sm.st), se->sm.client_addr,
                 hf_errname(status == UV_EOF ? 0 : status));
    conn_close(c, true);
}

static void smtpd_io_on_timeout(struct conn *c)
{
    struct session *se = conn_data(c);
    smtpd_timeout(&se->sm);
    smtpd_io_flush_out(se);
}

/* Forgets the session: counters, maps, the dialogue and its snapshot. */
static void smtpd_io_session_free(struct session *se)
{
    struct relayd *rd = se->rd;
    idmap_del(&rd->sessions, se->id);
    if (se->ip_key) {
        uintptr_t n = (uintptr_t)idmap_get(&rd->per_ip, se->ip_key);
        if (n <= 1)
            idmap_del(&rd->per_ip, se->ip_key);
        else
            idmap_put(&rd->per_ip, se->ip_key, (void *)(n - 1));
    }
    rd->nsessions--;
    smtpd_close(&se->sm);
    relayd_snap_unref(se->snap);
    free(se->pending);
    free(se);
}

static void smtpd_io_on_close(struct conn *c)
{
    struct session *se = conn_data(c);
    if (!se)
        return;
    log_debug("c=%llu disconnect client=[%s]", (unsigned long long)se->id, se->sm.client_addr);
    smtpd_io_session_free(se);
}

static const struct conn_ops smtpd_io_ops = {
    .on_read = smtpd_io_on_read,
    .on_eof = smtpd_io_on_eof,
    .on_timeout = smtpd_io_on_timeout,
    .on_close = smtpd_io_on_close,
};

void smtpd_io_accept(uv_stream_t *server, int status, bool implicit_tls, bool odmr)
{
    struct relayd *rd = server->data;
    if (status < 0) {
        log_warn("accept failed err=%s", hf_errname(status));
        return;
    }
    struct session *se = calloc(1, sizeof(*se));
    if (!se) {
        /* Accept and drop so the kernel queue does not fill; nothing else we can do. */
        uv_tcp_t t;
        uv_tcp_init(server->loop, &t);
        if (uv_accept(server, (uv_stream_t *)&t) == 0)
            uv_close((uv_handle_t *)&t, NULL);
        return;
    }
    se->rd = rd;
    struct conn *c;
    int rc;
    if (implicit_tls) {
        struct tls_conn *t = NULL;
        rc = tls_conn_new(rd->tls_server, true, NULL, TLS_VERIFY_NONE, &t);
        if (rc == 0)
            rc = conn_accept_tls(server, &smtpd_io_ops, se, t, smtpd_io_tls_ready, &c);
        se->implicit_tls = true;
    } else {
        rc = conn_accept(server, &smtpd_io_ops, se, &c);
    }
    if (rc < 0) {
        log_warn("accept failed err=%s", hf_errname(rc));
        free(se);
        return;
    }
    se->conn = c;
    se->id = conn_id(c);
    rd->stats.connections++;
    rd->nsessions++;
    idmap_put(&rd->sessions, se->id, se);
    se->snap = relayd_snap_ref(rd->snap);
    se->odmr = odmr;
    smtpd_init(&se->sm, odmr ? &se->snap->prm_odmr : &se->snap->prm, se->snap->policy, se->id,
               conn_peer_addr(c));
    se->sm.tls = implicit_tls; /* RFC 8314: TLS from the first octet */
    if (odmr) { /* the CRAM-MD5 challenge's unique part (RFC 2195 2) */
        unsigned char rnd[12];
        if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) == 0)
            for (size_t i = 0; i < sizeof(rnd); i++)
                snprintf(se->sm.nonce + 2 * i, 3, "%02x", rnd[i]);
    }
    log_debug("c=%llu connect client=[%s]:%d", (unsigned long long)se->id, conn_peer_addr(c),
              conn_peer_port(c));
    uint64_t key = rate_key(conn_peer_addr(c));
    uintptr_t per_ip = (uintptr_t)idmap_get(&rd->per_ip, key);
    if (rd->stopping) {
        smtpd_out_reset(&se->sm);
        smtpd_note(&se->sm, "reason=shutdown");
        smtpd_refuse(&se->sm, 421, "4.3.2", "Service shutting down");
    } else if (rd->nsessions > rd->cfg->max_connections) {
        rd->stats.refused_conn_limit++;
        smtpd_out_reset(&se->sm);
        smtpd_note(&se->sm, "reason=max_connections limit=%llu",
                   (unsigned long long)rd->cfg->max_connections);
        smtpd_refuse(&se->sm, 421, "4.7.0", "Too many connections, try again later");
    } else if (per_ip + 1 > rd->cfg->max_connections_per_ip) {
        rd->stats.refused_conn_limit++;
        smtpd_out_reset(&se->sm);
        smtpd_note(&se->sm, "reason=max_connections_per_ip limit=%llu",
                   (unsigned long long)rd->cfg->max_connections_per_ip);
        smtpd_refuse(&se->sm, 421, "4.7.0", "Too many connections from your address");
    } else {
        se->ip_key = key;
        idmap_put(&rd->per_ip, key, (void *)(per_ip + 1));
    }
    smtpd_io_flush_out(se);
    if (!conn_is_closing(c)) {
        conn_read_start(c);
        smtpd_io_arm_timer(se);
    }
}

static void smtpd_io_close_session(struct session *se)
{
    if (conn_is_closing(se->conn))
        return;
    if (se->sm.st == SMTPD_ST_COMMIT)
        return; /* let the commit answer first; the writer drains before exit */
    smtpd_note(&se->sm, "reason=shutdown");
    smtpd_refuse(&se->sm, 421, "4.3.2", "Service shutting down, try again later");
    smtpd_io_flush_out(se);
}

static void smtpd_io_close_each(uint64_t key, void *val, void *arg)
{
    (void)key;
    (void)arg;
    smtpd_io_close_session(val);
}

void smtpd_io_shutdown(struct relayd *rd)
{
    rd->stopping = true;
    for (size_t i = 0; i < rd->nlisteners; i++)
        if (!uv_is_closing((uv_handle_t *)&rd->listeners[i]))
            uv_close((uv_handle_t *)&rd->listeners[i], NULL);
    idmap_each(&rd->sessions, smtpd_io_close_each, NULL);
}
