/* SMTP client dialogue: delivery transactions (RFC 5321 with PIPELINING RFC 2920, SIZE
 * RFC 1870, 8BITMIME RFC 6152, SMTPUTF8 RFC 6531, DSN RFC 3461, CHUNKING RFC 3030) and
 * dot-stuffing.
 *
 * BDAT is used when the server offers CHUNKING and PIPELINING: MAIL, the RCPTs and the chunks
 * go out without waiting, where DATA has to wait a round trip for its 354
 * (scripts/bench_chunking.py measures it; README, Delivery). The body goes out as stored: the
 * inbound rules keep every stored line CRLF-terminated (DATA and BDAT alike), so nothing needs
 * rewriting, and a last line without CRLF (possible by BDAT) stays as it is.
 *
 * Without PIPELINING the pending-reply queue holds one command at a time and each handler
 * sends the next; with it a transaction's RSET, MAIL, RCPTs and DATA go out in one write
 * and their replies are matched in order (RFC 2920 3.1). Either way the handlers are the
 * same. A recipient is final when its RCPT is refused, when MAIL is refused, or with the
 * reply to DATA or to the end of data. */
#include "smtpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpc_int.h"

/* Ends a transaction normally: results final, ready for the next message. */
static int smtpc_msg_finish(struct smtpc *c)
{
    smtpc__msg_end(c);
    smtpc__enter(c, SMTPC_ST_IDLE);
    c->actions |= SMTPC_ACT_NEXT;
    return 0;
}

/* ---- transactions ---- */

static bool smtpc_pipelining(const struct smtpc *c)
{
    return (c->ext & SMTPC_EXT_PIPELINING) != 0;
}

/* Appends printf output to buf at *n; false when it does not fit. */
static bool smtpc_appendf(char *buf, size_t sz, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool smtpc_appendf(char *buf, size_t sz, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *n, sz - *n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sz - *n)
        return false;
    *n += (size_t)k;
    return true;
}

/* Builds MAIL FROM with the parameters the server offers. Returns the length or -EINVAL
 * when it does not fit SMTPC_CMD_MAX. */
static int smtpc_mail_line(const struct smtpc *c, const struct smtpc_msg *m, char *buf, size_t sz)
{
    size_t n = 0;
    bool ok = smtpc_appendf(buf, sz, &n, "MAIL FROM:<%s>", m->sender);
    if (ok && m->size && (c->ext & SMTPC_EXT_SIZE))
        ok = smtpc_appendf(buf, sz, &n, " SIZE=%" PRIu64, m->size);
    if (ok && m->body_8bit)
        ok = smtpc_appendf(buf, sz, &n, " BODY=8BITMIME");
    if (ok && m->smtputf8)
        ok = smtpc_appendf(buf, sz, &n, " SMTPUTF8");
    if (ok && m->ret && (c->ext & SMTPC_EXT_DSN))
        ok = smtpc_appendf(buf, sz, &n, " RET=%s", m->ret);
    if (ok && m->envid && (c->ext & SMTPC_EXT_DSN))
        ok = smtpc_appendf(buf, sz, &n, " ENVID=%s", m->envid);
    return ok ? (int)n : -EINVAL;
}

static int smtpc_rcpt_line(const struct smtpc *c, const struct smtpc_rcpt *rc, char *buf, size_t sz)
{
    size_t n = 0;
    bool ok = smtpc_appendf(buf, sz, &n, "RCPT TO:<%s>", rc->addr);
    if (ok && rc->notify && (c->ext & SMTPC_EXT_DSN))
        ok = smtpc_appendf(buf, sz, &n, " NOTIFY=%s", rc->notify);
    if (ok && rc->orcpt && (c->ext & SMTPC_EXT_DSN))
        ok = smtpc_appendf(buf, sz, &n, " ORCPT=%s", rc->orcpt);
    return ok ? (int)n : -EINVAL;
}

static int smtpc_send_mail(struct smtpc *c)
{
    char line[SMTPC_CMD_MAX];
    int n = smtpc_mail_line(c, c->msg, line, sizeof(line));
    return n < 0 ? n : smtpc__send_line(c, SMTPC_K_MAIL, 0, line, (size_t)n);
}

static int smtpc_send_rcpt(struct smtpc *c, size_t i)
{
    char line[SMTPC_CMD_MAX];
    int n = smtpc_rcpt_line(c, &c->msg->rcpts[i], line, sizeof(line));
    return n < 0 ? n : smtpc__send_line(c, SMTPC_K_RCPT, (uint32_t)i, line, (size_t)n);
}

/* Checks that every line of m can be built, before anything is sent. */
static int smtpc_msg_check(const struct smtpc *c, const struct smtpc_msg *m)
{
    char line[SMTPC_CMD_MAX];
    if (!m->sender || !m->rcpts || m->nrcpt == 0 || m->nrcpt > UINT32_MAX)
        return -EINVAL;
    if (!smtpc__is_clean(m->sender, false) || (m->ret && !smtpc__is_clean(m->ret, true)) ||
        (m->envid && !smtpc__is_clean(m->envid, true)))
        return -EINVAL;
    if (smtpc_mail_line(c, m, line, sizeof(line)) < 0)
        return -EINVAL;
    for (size_t i = 0; i < m->nrcpt; i++) {
        const struct smtpc_rcpt *r = &m->rcpts[i];
        if (!r->addr || !smtpc__is_clean(r->addr, false) ||
            (r->notify && !smtpc__is_clean(r->notify, true)) ||
            (r->orcpt && !smtpc__is_clean(r->orcpt, true)) ||
            smtpc_rcpt_line(c, r, line, sizeof(line)) < 0)
            return -EINVAL;
    }
    return 0;
}

static int smtpc_rcpt_arrays(struct smtpc *c, size_t n)
{
    if (n <= c->rcpt_cap)
        return 0;
    struct smtpc_result *res = realloc(c->rcpt_res, n * sizeof(*res));
    if (!res)
        return -ENOMEM;
    c->rcpt_res = res;
    bool *ok = realloc(c->rcpt_ok, n * sizeof(*ok));
    if (!ok)
        return -ENOMEM;
    c->rcpt_ok = ok;
    c->rcpt_cap = n;
    return 0;
}

/* The server cannot take m: every recipient gets why, nothing is sent. */
static void smtpc_msg_refuse(struct smtpc *c, const struct smtpc_result *why)
{
    for (size_t i = 0; i < c->msg->nrcpt; i++)
        c->rcpt_res[i] = *why;
    c->msg_res = *why;
    smtpc__msg_end(c);
    c->actions |= SMTPC_ACT_NEXT;
}

int smtpc_msg_begin(struct smtpc *c, const struct smtpc_msg *m)
{
    struct smtpc_result why;
    if (c->state != SMTPC_ST_IDLE || c->msg)
        return -EBUSY;
    if (!m || smtpc_msg_check(c, m) < 0)
        return -EINVAL;
    if (smtpc_rcpt_arrays(c, m->nrcpt) < 0) {
        smtpc__abort_local(c, "4.3.0", "out of memory");
        return -ENOMEM;
    }
    c->msg = m;
    memset(c->rcpt_res, 0, m->nrcpt * sizeof(*c->rcpt_res));
    memset(c->rcpt_ok, 0, m->nrcpt * sizeof(*c->rcpt_ok));
    memset(&c->msg_res, 0, sizeof(c->msg_res));
    c->naccepted = 0;
    c->mail_failed = false;
    c->bdat = (c->ext & SMTPC_EXT_CHUNKING) && smtpc_pipelining(c);
    c->bdat_failed = false;

    /* What the server cannot take is not sent (RFC 6152 3, RFC 6531 3.4, RFC 1870 6.1). */
    if (m->body_8bit && !(c->ext & SMTPC_EXT_8BITMIME)) {
        smtpc__result_local(&why, SMTPC_DEFER, "4.6.3", "8-bit message but server lacks 8BITMIME");
        smtpc_msg_refuse(c, &why);
        return 0;
    }
    if (m->smtputf8 && !(c->ext & SMTPC_EXT_SMTPUTF8)) {
        smtpc__result_local(&why, SMTPC_DEFER, "4.6.7",
                            "message needs SMTPUTF8 but server lacks it");
        smtpc_msg_refuse(c, &why);
        return 0;
    }
    if ((c->ext & SMTPC_EXT_SIZE) && c->size_max && m->size > c->size_max) {
        smtpc__result_local(&why, SMTPC_FAIL, "5.3.4",
                            "message size %" PRIu64 " exceeds the server's limit %" PRIu64, m->size,
                            c->size_max);
        smtpc_msg_refuse(c, &why);
        return 0;
    }

    smtpc__enter(c, SMTPC_ST_TXN);
    int rc = 0;
    if (c->need_rset) {
        /* The last transaction was left open (no recipient, DATA refused). */
        rc = smtpc__send(c, SMTPC_K_RSET, 0, "RSET");
        if (rc < 0 || !smtpc_pipelining(c))
            goto out;
    }
    rc = smtpc_send_mail(c);
    if (rc < 0 || !smtpc_pipelining(c))
        goto out;
    /* RFC 2920 3.1: MAIL and every RCPT, DATA last in the group. */
    for (size_t i = 0; rc == 0 && i < m->nrcpt; i++)
        rc = smtpc_send_rcpt(c, i);
    if (rc == 0 && c->bdat) {
        /* RFC 3030 4.2: the chunks follow in the same group; their replies come after
         * those to MAIL and RCPT and are matched in order. */
        smtpc__enter(c, SMTPC_ST_BODY);
        c->actions |= SMTPC_ACT_BODY;
    } else if (rc == 0) {
        rc = smtpc__send(c, SMTPC_K_DATA, 0, "DATA");
    }
out:
    if (rc < 0)
        smtpc__abort_local(c, "4.3.0", "out of memory");
    return rc;
}

int smtpc__on_rset(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    struct smtpc_result why;
    (void)idx;
    if (smtp_reply_class(r->code) != 2) {
        /* A server that cannot reset is out of step with us. */
        smtpc__result_reply(&why, SMTPC_DEFER, r);
        smtpc__abort(c, &why);
        return 0;
    }
    c->need_rset = false;
    return smtpc_pipelining(c) ? 0 : smtpc_send_mail(c);
}

int smtpc__on_mail(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (smtp_reply_class(r->code) == 2) {
        c->need_rset = true;
        return smtpc_pipelining(c) ? 0 : smtpc_send_rcpt(c, 0);
    }
    /* The sender is refused: so is every recipient, whatever their own replies say
     * (pipelined RCPTs after a refused MAIL get "503 bad sequence", which says nothing
     * about them). */
    c->mail_failed = true;
    smtpc__result_reply(&c->msg_res, smtpc__outcome_of(r->code), r);
    for (size_t i = 0; i < c->msg->nrcpt; i++)
        c->rcpt_res[i] = c->msg_res;
    return smtpc_pipelining(c) ? 0 : smtpc_msg_finish(c);
}

int smtpc__on_rcpt(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    const struct smtpc_msg *m = c->msg;
    if (!c->mail_failed) {
        if (smtp_reply_class(r->code) == 2) {
            c->rcpt_ok[idx] = true;
            c->naccepted++;
        } else {
            smtpc__result_reply(&c->rcpt_res[idx], smtpc__outcome_of(r->code), r);
        }
    }
    if (smtpc_pipelining(c))
        return 0;
    if (idx + 1 < m->nrcpt)
        return smtpc_send_rcpt(c, idx + 1);
    if (c->naccepted > 0)
        return smtpc__send(c, SMTPC_K_DATA, 0, "DATA");
    return smtpc_msg_finish(c); /* no recipient: the transaction stays open (need_rset) */
}

int smtpc__on_data(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (smtp_reply_class(r->code) == 3) {
        if (c->naccepted > 0 && !c->mail_failed) {
            smtpc__enter(c, SMTPC_ST_BODY);
            smtpc_stuff_init(&c->stuff);
            c->actions |= SMTPC_ACT_BODY;
            return 0;
        }
        /* RFC 2920 3.1: DATA accepted although no recipient was: send the end of data at
         * once; the reply to it decides nothing. */
        int rc = smtpc__reserve(c, 3);
        if (rc == 0)
            rc = smtpc__pend_push(c, SMTPC_K_DOT, 1);
        if (rc < 0)
            return rc;
        memcpy(c->out + c->out_len, ".\r\n", 3);
        c->out_len += 3;
        c->actions |= SMTPC_ACT_WRITE;
        smtpc__enter(c, SMTPC_ST_DOT);
        return 0;
    }
    if (!c->mail_failed && c->naccepted > 0) {
        /* DATA refused (or a bogus 2xx to it): the accepted recipients share its fate. */
        enum smtpc_outcome o = smtpc__outcome_of(r->code);
        smtpc__result_reply(&c->msg_res, o == SMTPC_OK ? SMTPC_DEFER : o, r);
        for (size_t i = 0; i < c->msg->nrcpt; i++)
            if (c->rcpt_ok[i])
                c->rcpt_res[i] = c->msg_res;
    }
    return smtpc_msg_finish(c);
}

int smtpc__on_dot(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    /* RFC 5321 4.1.1.4: the reply to the end of data ends the transaction, whatever it
     * says; no RSET is needed before the next one. */
    c->need_rset = false;
    if (idx == 0) {
        smtpc__result_reply(&c->msg_res, smtpc__outcome_of(r->code), r);
        for (size_t i = 0; i < c->msg->nrcpt; i++)
            if (c->rcpt_ok[i] && c->rcpt_res[i].outcome == SMTPC_PENDING)
                c->rcpt_res[i] = c->msg_res;
    }
    return smtpc_msg_finish(c);
}

/* The reply to a BDAT chunk (idx 0) or to BDAT LAST (idx 1). */
int smtpc__on_bdat(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    bool ok = smtp_reply_class(r->code) == 2;
    /* The first refused chunk decides the message (RFC 3030 2: the transaction failed); the
     * replies to chunks already in the pipeline after it decide nothing. A refusal with no
     * recipient accepted, or after MAIL was refused, says nothing about the recipients. */
    if (!ok && !c->bdat_failed && !c->mail_failed && c->naccepted > 0) {
        enum smtpc_outcome o = smtpc__outcome_of(r->code);
        smtpc__result_reply(&c->msg_res, o, r);
        for (size_t i = 0; i < c->msg->nrcpt; i++)
            if (c->rcpt_ok[i] && c->rcpt_res[i].outcome == SMTPC_PENDING)
                c->rcpt_res[i] = c->msg_res;
    }
    if (!ok)
        c->bdat_failed = true;
    if (idx == 0)
        return 0;
    if (!c->bdat_failed && !c->mail_failed && c->naccepted > 0) {
        smtpc__result_reply(&c->msg_res, smtpc__outcome_of(r->code), r);
        for (size_t i = 0; i < c->msg->nrcpt; i++)
            if (c->rcpt_ok[i] && c->rcpt_res[i].outcome == SMTPC_PENDING)
                c->rcpt_res[i] = c->msg_res;
    }
    /* A 250 to BDAT LAST ends the transaction; after a refusal RFC 3030 2 calls the state
     * indeterminate and asks for RSET, which the next message sends. */
    c->need_rset = !ok || c->bdat_failed || c->mail_failed || c->naccepted == 0;
    return smtpc_msg_finish(c);
}

/* BDAT: one chunk with the octets as they are, or "BDAT 0 LAST". */
static int smtpc_body_bdat(struct smtpc *c, const char *data, size_t len, bool last)
{
    char head[48];
    if (!last && len == 0)
        return 0;
    int h =
        snprintf(head, sizeof(head), "BDAT %zu%s\r\n", last ? (size_t)0 : len, last ? " LAST" : "");
    if (h < 0 || (size_t)h >= sizeof(head) || len > SIZE_MAX - sizeof(head) ||
        smtpc__reserve(c, (size_t)h + (last ? 0 : len)) < 0 ||
        smtpc__pend_push(c, SMTPC_K_BDAT, last ? 1 : 0) < 0) {
        smtpc__abort_local(c, "4.3.0", "out of memory");
        return -ENOMEM;
    }
    memcpy(c->out + c->out_len, head, (size_t)h);
    c->out_len += (size_t)h;
    if (!last) {
        memcpy(c->out + c->out_len, data, len);
        c->out_len += len;
    }
    c->actions |= SMTPC_ACT_WRITE;
    if (last)
        smtpc__enter(c, SMTPC_ST_DOT);
    return 0;
}

int smtpc_body(struct smtpc *c, const char *data, size_t len, bool last)
{
    if (c->state != SMTPC_ST_BODY)
        return -EBUSY;
    if (c->bdat)
        return smtpc_body_bdat(c, data, len, last);
    if (len > (SIZE_MAX - 5) / 3 || smtpc__reserve(c, SMTPC_STUFF_MAX(len)) < 0 ||
        (last && smtpc__pend_push(c, SMTPC_K_DOT, 0) < 0)) {
        smtpc__abort_local(c, "4.3.0", "out of memory");
        return -ENOMEM;
    }
    c->out_len += smtpc_stuff(&c->stuff, data, len, last, c->out + c->out_len);
    c->actions |= SMTPC_ACT_WRITE;
    if (last)
        smtpc__enter(c, SMTPC_ST_DOT);
    return 0;
}

/* ---- dot-stuffing ---- */

void smtpc_stuff_init(struct smtpc_stuff *st)
{
    st->bol = true;
    st->cr = false;
}

size_t smtpc_stuff(struct smtpc_stuff *st, const char *in, size_t len, bool last, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (st->cr) {
            st->cr = false;
            out[n++] = '\n'; /* CRLF, or a bare CR completed to CRLF */
            st->bol = true;
            if (ch == '\n')
                continue;
        }
        if (ch == '\r') {
            out[n++] = '\r';
            st->cr = true;
            st->bol = false;
            continue;
        }
        if (ch == '\n') {
            /* A bare LF: RFC 5321 2.3.8 allows only CRLF on the wire. */
            out[n++] = '\r';
            out[n++] = '\n';
            st->bol = true;
            continue;
        }
        if (ch == '.' && st->bol)
            out[n++] = '.'; /* RFC 5321 4.5.2 */
        out[n++] = ch;
        st->bol = false;
    }
    if (last) {
        if (st->cr) {
            out[n++] = '\n';
            st->cr = false;
            st->bol = true;
        }
        if (!st->bol) {
            out[n++] = '\r';
            out[n++] = '\n';
        }
        memcpy(out + n, ".\r\n", 3);
        n += 3;
        smtpc_stuff_init(st);
    }
    return n;
}
