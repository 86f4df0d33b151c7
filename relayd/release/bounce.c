/* Reports to senders (see bounce.h): collecting the recipients of one message that are owed
 * a DSN, building the DSNs on the writer thread from the stored message, and storing them
 * in the transaction that records the recipients' fate. */
#include "bounce.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "clock.h"
#include "dsn.h"
#include "hf_err.h"
#include "log.h"
#include "relayd.h"
#include "smtpc.h"

#define BOUNCE_KINDS      3
#define BOUNCE_READ_FLOOR 65536 /* read at least this much: the headers of a large message */

struct bounce_ent {
    enum retry_dsn kind;
    char addr[SMTP_PATH_MAX + 1];
    char orcpt[SMTP_XTEXT_MAX + 1];
    char status[16];
    char remote[256];
    char diag[SMTPC_TEXT_MAX + 128];
    bool diag_smtp;
    int64_t last_attempt, retry_until;
    char tls[160];
    bool has_tls;
};

struct bounce_set {
    struct queue_env env;
    struct bounce_ent *v;
    size_t n;
    char to[SMTP_PATH_MAX + 1]; /* who gets the reports: the sender or double_bounce_to */
    /* Filled on the loop by bounce_commit, read by the writer thread. */
    struct relayd *rd;
    char host[256];
    size_t full_max;
    int64_t now;
    /* Filled by the writer thread, read on the loop after the commit. */
    uint64_t dsn_id[BOUNCE_KINDS];
    size_t dsn_size[BOUNCE_KINDS];
    /* The caller's callback. */
    queue_wr_update_cb cb;
    uint64_t token;
    void *arg;
};

struct bounce_set *bounce_set_new(const struct queue_env *env)
{
    struct bounce_set *s = calloc(1, sizeof(*s));
    if (s)
        s->env = *env;
    return s;
}

void bounce_set_free(struct bounce_set *s)
{
    if (!s)
        return;
    free(s->v);
    free(s);
}

bool bounce_set_owes(const struct bounce_set *s)
{
    return s && s->n > 0;
}

/* The domain part of a mailbox, when it is one a DSN can be delivered to by DNS. */
static bool bounce_target_ok(const char *addr, char *domain, size_t dsz)
{
    const char *at = strrchr(addr, '@');
    if (!at || at == addr)
        return false;
    snprintf(domain, dsz, "%s", at + 1);
    addr_lower(domain);
    return addr_domain_is_valid(domain, strlen(domain), true);
}

bool bounce_set_add(struct relayd *rd, struct bounce_set *s, const struct queue_rcpt *r,
                    const struct bounce_fact *f)
{
    char qid[QUEUE_ID_STR], to[300];
    queue_id_str(s->env.id, qid);
    bool null_sender = s->env.sender[0] == '\0';
    const char *target = s->env.sender;
    if (null_sender && f->kind == RETRY_DSN_FAILURE) {
        /* A DSN (or other null-sender mail) that cannot be delivered: RFC 5321 4.5.5 says
         * never to answer it with another to <>. The postmaster may get it instead. */
        const char *dbl = rd->cfg->double_bounce_to;
        if (!dbl || !*dbl || strcasecmp(dbl, r->addr) == 0) {
            log_info("%s to=<%s> double bounce dropped: the message has the null sender%s", qid,
                     log_safe(r->addr, to, sizeof(to)),
                     dbl && *dbl ? " and went to double_bounce_to" : ", double_bounce_to not set");
            return false;
        }
        target = dbl;
    } else if (!retry_dsn_wanted(r->notify, null_sender, f->kind)) {
        if (f->kind == RETRY_DSN_FAILURE)
            log_info("%s to=<%s> no non-delivery notification: NOTIFY=%s", qid,
                     log_safe(r->addr, to, sizeof(to)),
                     (r->notify & SMTP_NOTIFY_NEVER) ? "NEVER" : "without FAILURE");
        return false;
    }
    char dom[256];
    if (!bounce_target_ok(target, dom, sizeof(dom))) {
        log_warn("%s to=<%s> no notification: its recipient <%s> is not deliverable by DNS", qid,
                 log_safe(r->addr, to, sizeof(to)), target);
        return false;
    }
    struct bounce_ent *v = realloc(s->v, (s->n + 1) * sizeof(*v));
    if (!v) {
        log_err("%s to=<%s> out of memory: its notification is lost", qid,
                log_safe(r->addr, to, sizeof(to)));
        return false;
    }
    s->v = v;
    struct bounce_ent *e = &v[s->n++];
    memset(e, 0, sizeof(*e));
    snprintf(s->to, sizeof(s->to), "%s", target);
    e->kind = f->kind;
    snprintf(e->addr, sizeof(e->addr), "%s", r->addr);
    snprintf(e->orcpt, sizeof(e->orcpt), "%s", r->orcpt);
    snprintf(e->status, sizeof(e->status), "%s", f->status);
    snprintf(e->remote, sizeof(e->remote), "%s", f->remote_mta ? f->remote_mta : "");
    snprintf(e->diag, sizeof(e->diag), "%s", f->diag ? f->diag : "");
    e->diag_smtp = f->diag_smtp;
    e->last_attempt = f->last_attempt;
    e->retry_until = f->retry_until;
    e->has_tls = f->tls != NULL;
    snprintf(e->tls, sizeof(e->tls), "%s", f->tls ? f->tls : "");
    return true;
}

/* ---- on the writer thread ---------------------------------------------------------------- */

struct bounce_body {
    char *p;
    size_t len, cap, limit;
};

static int bounce_body_cb(const char *data, size_t len, void *arg)
{
    struct bounce_body *b = arg;
    size_t take = len;
    if (b->len + take > b->limit)
        take = b->limit - b->len;
    if (b->len + take > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + take)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, take);
    b->len += take;
    return b->len >= b->limit ? 1 : 0; /* enough: stop reading */
}

static const enum dsn_action bounce_action[BOUNCE_KINDS] = {
    [RETRY_DSN_FAILURE] = DSN_ACT_FAILED,
    [RETRY_DSN_DELAY] = DSN_ACT_DELAYED,
    [RETRY_DSN_SUCCESS] = DSN_ACT_RELAYED,
};

/* Builds one DSN of kind from s into a new message (returns owned), or NULL when s holds
 * no recipient of that kind. *err gets -ENOMEM or dsn_build's error. */
static struct queue_new_msg *bounce_make(struct queue *q, struct bounce_set *s, int kind,
                                         const struct bounce_body *body, int *err)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += (int)s->v[i].kind == kind;
    if (n == 0)
        return NULL;
    struct dsn_rcpt *rc = calloc(n, sizeof(*rc));
    struct queue_new_msg *m = calloc(1, sizeof(*m));
    if (m)
        m->rcpts = calloc(1, sizeof(*m->rcpts));
    if (!rc || !m || !m->rcpts) {
        free(rc);
        queue_new_msg_free(m);
        *err = -ENOMEM;
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct bounce_ent *e = &s->v[i];
        if ((int)e->kind != kind)
            continue;
        rc[k].addr = e->addr;
        rc[k].orcpt = e->orcpt;
        rc[k].action = bounce_action[kind];
        rc[k].status = e->status;
        rc[k].remote_mta = e->remote;
        rc[k].diag = e->diag;
        rc[k].diag_smtp = e->diag_smtp;
        rc[k].last_attempt = e->last_attempt;
        rc[k].retry_until = e->retry_until;
        rc[k].tls = e->has_tls ? e->tls : NULL;
        k++;
    }
    m->env.id = queue_id_next(q);
    char qid[QUEUE_ID_STR], dsnid[QUEUE_ID_STR], msgid[320], boundary[320];
    queue_id_str(s->env.id, qid);
    queue_id_str(m->env.id, dsnid);
    snprintf(msgid, sizeof(msgid), "<%s.%s@%s>", dsnid, qid, s->host);
    snprintf(boundary, sizeof(boundary), "%s/%s.%s", dsnid, qid, s->host);
    struct dsn_report r = {
        .reporting_mta = s->host,
        .sender = s->to,
        .envid = s->env.envid,
        .queue_id = qid,
        .message_id = msgid,
        .boundary = boundary,
        .arrival = s->env.arrival,
        .date = s->now,
        .orig = body->p, /* NULL: the body is gone (nothing to return) */
        .orig_len = body->len,
        .ret = (enum smtp_ret)s->env.ret,
        .full_max = s->full_max,
        .utf8 = (s->env.flags & QUEUE_F_SMTPUTF8) != 0,
        .rcpts = rc,
        .nrcpt = n,
    };
    char *out = NULL;
    size_t len = 0;
    bool eight = false;
    int b = dsn_build(&r, &out, &len, &eight);
    free(rc);
    if (b < 0) {
        queue_new_msg_free(m);
        *err = b;
        return NULL;
    }
    m->body = out;
    m->body_len = len;
    m->env.arrival = s->now;
    m->env.size = len;
    m->env.flags = (eight ? QUEUE_F_8BITMIME : 0) | (s->env.flags & QUEUE_F_SMTPUTF8);
    m->env.ret = SMTP_RET_NONE;
    m->env.sender[0] = '\0'; /* RFC 3461 6.2: the null reverse-path, so it never loops */
    snprintf(m->env.client_name, sizeof(m->env.client_name), "%s", s->host);
    snprintf(m->env.client_addr, sizeof(m->env.client_addr), "127.0.0.1");
    m->env.nrcpt = 1;
    m->nrcpt = 1;
    struct queue_rcpt *dr = &m->rcpts[0];
    snprintf(dr->addr, sizeof(dr->addr), "%s", s->to);
    bounce_target_ok(s->to, dr->domain, sizeof(dr->domain));
    dr->state = QUEUE_RS_PENDING;
    s->dsn_id[kind] = m->env.id;
    s->dsn_size[kind] = len;
    return m;
}

static int bounce_build(struct queue *q, const struct queue_update *ups, size_t n, void *arg,
                        struct queue_new_msg ***msgs, size_t *nmsgs)
{
    (void)ups;
    (void)n;
    struct bounce_set *s = arg;
    *msgs = NULL;
    *nmsgs = 0;
    if (!s || s->n == 0)
        return 0;
    struct bounce_body body = {NULL, 0, 0, s->full_max + 1};
    if (body.limit < BOUNCE_READ_FLOOR)
        body.limit = BOUNCE_READ_FLOOR;
    int rc = queue_read_body(q, s->env.id, bounce_body_cb, &body);
    if (rc < 0 && rc != -ENOENT) {
        free(body.p);
        return rc == -ENOMEM ? rc : -EIO;
    }
    struct queue_new_msg **v = calloc(BOUNCE_KINDS, sizeof(*v));
    if (!v) {
        free(body.p);
        return -ENOMEM;
    }
    int err = 0;
    size_t k = 0;
    for (int kind = 0; kind < BOUNCE_KINDS && err == 0; kind++) {
        struct queue_new_msg *m = bounce_make(q, s, kind, &body, &err);
        if (m)
            v[k++] = m;
    }
    free(body.p);
    if (err) {
        for (size_t i = 0; i < k; i++)
            queue_new_msg_free(v[i]);
        free(v);
        return err;
    }
    *msgs = v;
    *nmsgs = k;
    return 0;
}

/* ---- back on the loop -------------------------------------------------------------------- */

static void bounce_committed(int status, uint64_t token, struct queue_update *ups, size_t n,
                             void *arg)
{
    struct bounce_set *s = arg;
    (void)token;
    static const char *const what[BOUNCE_KINDS] = {
        [RETRY_DSN_FAILURE] = "non-delivery",
        [RETRY_DSN_DELAY] = "delay",
        [RETRY_DSN_SUCCESS] = "delivery status",
    };
    char qid[QUEUE_ID_STR], dsnid[QUEUE_ID_STR];
    queue_id_str(s->env.id, qid);
    if (status < 0) {
        log_err("%s notification not queued err=%s: the recipients stay queued and are decided "
                "again",
                qid, hf_errname(status));
    } else {
        for (int kind = 0; kind < BOUNCE_KINDS; kind++) {
            if (!s->dsn_id[kind])
                continue;
            /* Postfix's grammar for the same event: bounce, then cleanup and qmgr for the
             * new message (pflogsumm takes its size from the from= line). */
            log_svc(LOG_LVL_INFO, "bounce", "%s: sender %s notification: %s", qid, what[kind],
                    queue_id_str(s->dsn_id[kind], dsnid));
            log_svc(LOG_LVL_INFO, "cleanup", "%s: message-id=<%s.%s@%s>", dsnid, dsnid, qid,
                    s->host);
            log_svc(LOG_LVL_INFO, "qmgr", "%s: from=<>, size=%zu, nrcpt=1 (queue active)", dsnid,
                    s->dsn_size[kind]);
            char dom[256];
            if (bounce_target_ok(s->to, dom, sizeof(dom)) && s->rd->flush_due) {
                /* The timer's kind of run: a hold = yes domain keeps it for ETRN. */
                int rc = s->rd->flush_due(s->rd, dom);
                if (rc < 0 && rc != -EBUSY && rc != -ENOENT && rc != -EPERM && rc != -ESHUTDOWN)
                    log_warn("%s notification %s: queue run for %s not started err=%s", qid, dsnid,
                             dom, hf_errname(rc));
            }
        }
    }
    if (s->cb)
        s->cb(status, s->token, ups, n, s->arg);
    bounce_set_free(s);
}

int bounce_commit(struct relayd *rd, struct bounce_set *s, struct queue_update *ups, size_t n,
                  queue_wr_update_cb cb, uint64_t token, void *arg)
{
    if (!bounce_set_owes(s)) {
        bounce_set_free(s);
        if (cb)
            return queue_wr_update(rd->wr, ups, n, cb, token, arg);
        /* The writer wants a callback; a no-op one keeps the contract simple. */
        s = bounce_set_new(&(struct queue_env){0});
        if (!s) {
            free(ups);
            return -ENOMEM;
        }
    }
    s->rd = rd;
    snprintf(s->host, sizeof(s->host), "%s", rd->prm.hostname);
    s->full_max = (size_t)rd->cfg->bounce_size_limit;
    s->now = clock_now();
    s->cb = cb;
    s->token = token;
    s->arg = arg;
    int rc = queue_wr_commit_job(rd->wr, ups, n, bounce_build, bounce_committed, token, s);
    if (rc < 0)
        bounce_set_free(s);
    return rc;
}
