/* The turned-around ATRN connection (see atrn.h): atrn_srv's events go to lmta, lmta's
 * answers come back through handoff_map into atrn_srv_answer(). One local transaction
 * (lmta) per relay transaction; RESET (RSET, EHLO, a message refused here) and the end of
 * the session end it. While an event is with the local MTA the relay's idle timer is off
 * (the relay waits for us; the local MTA's own timeout bounds the wait). */
#include "atrn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atrn_srv.h"
#include "conn.h"
#include "handoff_map.h"
#include "hf_err.h"
#include "lmta.h"
#include "log.h"

struct atrn_sess {
    struct atrn_sess_params p;
    char *label, *relay, *helo, *local_mta;
    struct atrn_srv srv;
    struct lmta *l;
    size_t nmsgs;
    size_t nrefusals_logged;
};

static void atrn_act(struct atrn_sess *s);

enum release_verdict atrn_reply_verdict(int code)
{
    if (code == 453)
        return RELEASE_DONE;
    if (code >= 400 && code <= 499 && code != 450)
        return RELEASE_RETRY;
    if (code == 450 || (code >= 500 && code <= 599))
        return RELEASE_FATAL;
    return code >= 200 && code <= 299 ? RELEASE_DONE : RELEASE_RETRY;
}

/* Copies a reply text for a log field: no control characters, '"' as '\''. */
static void atrn_log_text(const char *in, char *out, size_t sz)
{
    size_t o = 0;
    for (; in && *in && o + 1 < sz; in++) {
        unsigned char ch = (unsigned char)*in;
        out[o++] = ch < 0x20 || ch == 0x7f ? ' ' : ch == '"' ? '\'' : (char)ch;
    }
    out[o] = '\0';
}

/* The relay's queue id from the message's first header when it is our Received: line
 * ("... id QUEUEID;"), else "msgN". */
static void atrn_msg_id(const struct atrn_srv_msg *m, char *out, size_t sz)
{
    snprintf(out, sz, "msg%llu", (unsigned long long)m->seq);
    size_t lim = m->len < 2048 ? m->len : 2048;
    if (lim < 10 || strncmp(m->body, "Received:", 9) != 0)
        return;
    /* The header with its folded lines: up to a CRLF not followed by white space. */
    size_t end = 0;
    while (end + 2 < lim && !(m->body[end] == '\r' && m->body[end + 1] == '\n' &&
                              m->body[end + 2] != ' ' && m->body[end + 2] != '\t'))
        end++;
    for (size_t i = 0; i + 4 < end; i++) {
        if ((m->body[i] == ' ' || m->body[i] == '\t') && strncmp(m->body + i + 1, "id ", 3) == 0) {
            size_t j = i + 4, k = 0;
            while (j < end && k + 1 < sz &&
                   (m->body[j] == '-' || m->body[j] == '.' ||
                    (m->body[j] >= '0' && m->body[j] <= '9') ||
                    (m->body[j] >= 'A' && m->body[j] <= 'Z') ||
                    (m->body[j] >= 'a' && m->body[j] <= 'z')))
                out[k++] = m->body[j++];
            if (k) {
                out[k] = '\0';
                return;
            }
            snprintf(out, sz, "msg%llu", (unsigned long long)m->seq);
        }
    }
}

/* Reading follows the machine: stopped while it keeps too much during an open event (with
 * BDAT the whole message may follow MAIL at once), started again when it can take more. */
static void atrn_flow(struct atrn_sess *s)
{
    if (!s->p.conn || conn_is_closing(s->p.conn))
        return;
    if (atrn_srv_paused(&s->srv))
        conn_read_stop(s->p.conn);
    else if (s->srv.state != ATRN_SRV_ST_DONE)
        conn_read_start(s->p.conn);
}

static void atrn_answer(struct atrn_sess *s, int code, const char *enh, const char *text)
{
    if (s->p.conn && !conn_is_closing(s->p.conn))
        conn_set_timeout(s->p.conn, s->p.timeout_ms);
    int rc = atrn_srv_answer(&s->srv, code, enh, text);
    if (rc < 0 && rc != -EBUSY)
        log_warn("%s atrn session err=%s", s->label, hf_errname(rc));
    atrn_act(s);
    atrn_flow(s);
}

static void atrn_end_local(struct atrn_sess *s)
{
    if (s->l) {
        lmta_end(s->l);
        s->l = NULL;
    }
}

static void atrn_log_msg(struct atrn_sess *s, const struct handoff_rcpt *r, size_t n,
                         const struct handoff_reply *rep)
{
    const struct atrn_srv_msg *m = &s->srv.msg;
    char id[64], text[200];
    atrn_msg_id(m, id, sizeof(id));
    const char *at = m->nrcpt ? strrchr(m->rcpts[0], '@') : NULL;
    atrn_log_text(n ? r[0].text : "", text, sizeof(text));
    const char *via = m->chunked ? "BDAT" : "DATA";
    s->nmsgs++;
    if (n && r[0].code)
        log_info("relay=%s domain=%s id=%s local=%d rcpts=%zu size=%zu via=%s reply=%d "
                 "text=\"%s\"",
                 s->relay, at ? at + 1 : "-", id, r[0].code, m->nrcpt, m->len, via, rep->code,
                 text);
    else
        log_info("relay=%s domain=%s id=%s local=none rcpts=%zu size=%zu via=%s reply=%d "
                 "text=\"%s\"",
                 s->relay, at ? at + 1 : "-", id, m->nrcpt, m->len, via, rep->code, text);
}

static void atrn_on_local(enum lmta_step step, const struct handoff_rcpt *r, size_t n, void *arg)
{
    struct atrn_sess *s = arg;
    struct handoff_reply rep;
    handoff_map(r, n, &rep);
    switch (step) {
    case LMTA_MAIL:
        if (rep.code / 100 != 2) {
            char text[200];
            atrn_log_text(rep.text, text, sizeof(text));
            log_info("relay=%s from=<%s> local=%d reply=%d text=\"%s\"", s->relay,
                     s->srv.msg.sender, r[0].code, rep.code, text);
            atrn_end_local(s);
        }
        break;
    case LMTA_RCPT:
        if (rep.code / 100 != 2) {
            char text[200];
            atrn_log_text(rep.text, text, sizeof(text));
            log_info("relay=%s rcpt=<%s> local=%d reply=%d text=\"%s\"", s->relay,
                     s->srv.msg.rcpts[s->srv.msg.nrcpt], r[0].code, rep.code, text);
        }
        break;
    case LMTA_DATA:
        atrn_log_msg(s, r, n, &rep);
        atrn_end_local(s); /* QUIT: one transaction per connection */
        break;
    }
    atrn_answer(s, rep.code, rep.enh, rep.text);
}

/* The open event goes to the local MTA; when that cannot even start, the relay is answered
 * here: temporary, so it keeps the mail. */
static void atrn_event(struct atrn_sess *s)
{
    struct atrn_srv_msg *m = &s->srv.msg;
    int rc = 0;
    switch (s->srv.event) {
    case ATRN_SRV_EV_MAIL: {
        atrn_end_local(s);
        struct lmta_params lp = {
            .loop = s->p.loop,
            .dns = s->p.dns,
            .local_mta = s->local_mta,
            .lmtp = s->p.lmtp,
            .helo = s->helo,
            .log_id = s->label,
            .timeout_ms = s->p.timeout_ms,
        };
        rc = lmta_start(&lp, m->sender, m->body_8bit, atrn_on_local, s, &s->l);
        if (rc < 0)
            s->l = NULL;
        break;
    }
    case ATRN_SRV_EV_RCPT:
        rc = s->l ? lmta_rcpt(s->l, m->rcpts[m->nrcpt]) : -ENOTCONN;
        break;
    case ATRN_SRV_EV_MSG:
        rc = s->l ? lmta_data(s->l, m->body, m->len, m->nrcpt) : -ENOTCONN;
        if (rc < 0) {
            struct handoff_rcpt r = {0, "", "the local MTA connection was lost"};
            struct handoff_reply rep;
            handoff_map(&r, 1, &rep);
            atrn_log_msg(s, &r, 1, &rep);
        }
        break;
    case ATRN_SRV_EV_NONE:
        return;
    }
    if (rc == 0) {
        /* The relay now waits for our answer; the local MTA's timeout bounds it. */
        if (s->p.conn && !conn_is_closing(s->p.conn))
            conn_set_timeout(s->p.conn, 0);
        return;
    }
    log_warn("%s local MTA step %s not possible err=%s", s->label,
             atrn_srv_event_name(s->srv.event), hf_errname(rc));
    atrn_end_local(s);
    atrn_answer(s, 451, "4.4.1", "local MTA not reachable; try again later");
}

static void atrn_act(struct atrn_sess *s)
{
    for (int guard = 0; guard < 10000; guard++) {
        unsigned act = atrn_srv_take_actions(&s->srv);
        if (!act)
            return;
        if (s->srv.nrefusals != s->nrefusals_logged) {
            /* Our own refusals (syntax, sequence, a message refused by the decoder). */
            char text[200];
            atrn_log_text(s->srv.refusal, text, sizeof(text));
            log_info("relay=%s refused count=%zu last=\"%s\"", s->relay,
                     s->srv.nrefusals - s->nrefusals_logged, text);
            s->nrefusals_logged = s->srv.nrefusals;
        }
        if (act & ATRN_SRV_ACT_WRITE) {
            size_t len = 0;
            char *out = atrn_srv_out_take(&s->srv, &len);
            if (out && len && s->p.conn && !conn_is_closing(s->p.conn))
                conn_write(s->p.conn, out, len);
            free(out);
        }
        if (act & ATRN_SRV_ACT_RESET)
            atrn_end_local(s);
        if (act & ATRN_SRV_ACT_CLOSE) {
            atrn_end_local(s);
            if (s->p.conn && !conn_is_closing(s->p.conn))
                conn_close(s->p.conn, false);
            return;
        }
        if (act & ATRN_SRV_ACT_EVENT) {
            atrn_event(s);
            return; /* atrn_answer() runs the loop again */
        }
    }
}

int atrn_sess_start(const struct atrn_sess_params *p, struct atrn_sess **out)
{
    if (!p->conn || !p->local_mta || !p->helo)
        return -EINVAL;
    struct atrn_sess *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->p = *p;
    s->label = strdup(p->label ? p->label : "atrn");
    s->relay = strdup(p->relay ? p->relay : "-");
    s->helo = strdup(p->helo);
    s->local_mta = strdup(p->local_mta);
    struct atrn_srv_opts o = {.name = p->helo, .size_max = p->size_max};
    int rc = -ENOMEM;
    if (!s->label || !s->relay || !s->helo || !s->local_mta ||
        (rc = atrn_srv_init(&s->srv, &o)) < 0) {
        free(s->label);
        free(s->relay);
        free(s->helo);
        free(s->local_mta);
        free(s);
        return rc;
    }
    log_info("%s atrn turned: acting as the SMTP server for the relay", s->label);
    conn_set_timeout(p->conn, p->timeout_ms);
    atrn_act(s); /* the 220 */
    *out = s;
    return 0;
}

void atrn_sess_on_read(struct atrn_sess *s, const char *data, size_t len)
{
    int rc = atrn_srv_feed(&s->srv, data, len);
    if (rc < 0)
        log_warn("%s atrn session ended err=%s", s->label, hf_errname(rc));
    atrn_act(s);
    atrn_flow(s);
}

bool atrn_sess_busy(const struct atrn_sess *s)
{
    return s->srv.state == ATRN_SRV_ST_WAIT;
}

enum release_verdict atrn_sess_finish(struct atrn_sess *s)
{
    bool open = s->srv.state == ATRN_SRV_ST_WAIT;
    atrn_srv_on_closed(&s->srv);
    atrn_end_local(s);
    bool quit = s->srv.quit;
    enum release_verdict v = quit && s->srv.ntemp == 0 && !open ? RELEASE_DONE : RELEASE_RETRY;
    log_info("%s atrn session ended messages=%zu taken=%zu refused=%zu temporary=%zu quit=%s "
             "verdict=%s",
             s->label, s->nmsgs, s->srv.nmsgs_taken, s->srv.nmsgs_refused, s->srv.ntemp,
             quit ? "yes" : "no", release_verdict_name(v));
    atrn_srv_close(&s->srv);
    free(s->label);
    free(s->relay);
    free(s->helo);
    free(s->local_mta);
    free(s);
    return v;
}
