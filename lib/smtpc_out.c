/* SMTP client dialogue, the bottom layer: what the machine sends and how its results are
 * kept. Every command goes into the output buffer and onto the queue of pending replies
 * (kind + index) that smtpc_on_line() matches replies against; results are recorded here,
 * and a broken dialogue is ended here (smtpc__abort: every recipient not yet final is
 * deferred, never lost). The files above (smtpc.c, smtpc_deliver.c, smtpc_etrn.c) call
 * into this one, never the other way. */
#include "smtpc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtpc_int.h"

static const char *const smtpc_state_names[SMTPC_ST_COUNT_] = {
    "GREET", "EHLO", "HELO", "STARTTLS", "TLS",  "AUTH", "IDLE",
    "TXN",   "BODY", "DOT",  "ETRN",     "QUIT", "DONE",
};

const char *smtpc_state_name(enum smtpc_state st)
{
    return (unsigned)st < SMTPC_ST_COUNT_ ? smtpc_state_names[st] : "?";
}

const char *smtpc_outcome_name(enum smtpc_outcome o)
{
    switch (o) {
    case SMTPC_PENDING:
        return "pending";
    case SMTPC_OK:
        return "ok";
    case SMTPC_DEFER:
        return "defer";
    case SMTPC_FAIL:
        return "fail";
    }
    return "?";
}

const char *smtpc__id(const struct smtpc *c)
{
    return c->o.log_id ? c->o.log_id : "c=?";
}

/* The one door for state changes. */
void smtpc__enter(struct smtpc *c, enum smtpc_state next)
{
    log_debug("%s smtpc state %s -> %s", smtpc__id(c), smtpc_state_name(c->state),
              smtpc_state_name(next));
    c->state = next;
}

/* ---- results ---- */

static void smtpc_copy(char *dst, size_t sz, const char *src)
{
    size_t n = strlen(src);
    if (n >= sz)
        n = sz - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

enum smtpc_outcome smtpc__outcome_of(int code)
{
    switch (smtp_reply_class(code)) {
    case 2:
        return SMTPC_OK;
    case 5:
        return SMTPC_FAIL;
    default:
        return SMTPC_DEFER; /* 4xx, and a 3xx where none belongs: never a reason to bounce */
    }
}

void smtpc__result_reply(struct smtpc_result *res, enum smtpc_outcome o, const struct smtp_reply *r)
{
    res->outcome = o;
    res->code = r->code;
    smtpc_copy(res->enh, sizeof(res->enh), r->enh);
    smtpc_copy(res->text, sizeof(res->text), r->text);
}

void smtpc__result_local(struct smtpc_result *res, enum smtpc_outcome o, const char *enh,
                         const char *fmt, ...)
{
    va_list ap;
    res->outcome = o;
    res->code = 0;
    smtpc_copy(res->enh, sizeof(res->enh), enh);
    va_start(ap, fmt);
    vsnprintf(res->text, sizeof(res->text), fmt, ap);
    va_end(ap);
}

/* ---- output and the pending-reply queue ---- */

int smtpc__reserve(struct smtpc *c, size_t n)
{
    if (c->out_cap - c->out_len >= n)
        return 0;
    size_t cap = c->out_cap ? c->out_cap : 1024;
    while (cap - c->out_len < n) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    char *p = realloc(c->out, cap);
    if (!p)
        return -ENOMEM;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

int smtpc__pend_push(struct smtpc *c, enum smtpc_kind kind, uint32_t idx)
{
    if (c->pend_head + c->pend_len == c->pend_cap) {
        if (c->pend_head > 0) {
            memmove(c->pend, c->pend + c->pend_head, c->pend_len * sizeof(*c->pend));
            c->pend_head = 0;
        } else {
            size_t cap = c->pend_cap ? c->pend_cap * 2 : 16;
            struct smtpc_pend *p = realloc(c->pend, cap * sizeof(*p));
            if (!p)
                return -ENOMEM;
            c->pend = p;
            c->pend_cap = cap;
        }
    }
    c->pend[c->pend_head + c->pend_len++] = (struct smtpc_pend){(uint8_t)kind, idx};
    return 0;
}

struct smtpc_pend smtpc__pend_pop(struct smtpc *c)
{
    struct smtpc_pend p = c->pend[c->pend_head++];
    if (--c->pend_len == 0)
        c->pend_head = 0;
    return p;
}

/* Appends the command line (CRLF added) and expects its reply. */
int smtpc__send_line(struct smtpc *c, enum smtpc_kind kind, uint32_t idx, const char *line,
                     size_t len)
{
    int rc = smtpc__reserve(c, len + 2);
    if (rc == 0)
        rc = smtpc__pend_push(c, kind, idx);
    if (rc < 0)
        return rc;
    memcpy(c->out + c->out_len, line, len);
    memcpy(c->out + c->out_len + len, "\r\n", 2);
    c->out_len += len + 2;
    c->actions |= SMTPC_ACT_WRITE;
    return 0;
}

int smtpc__send(struct smtpc *c, enum smtpc_kind kind, uint32_t idx, const char *fmt, ...)
{
    char line[SMTPC_CMD_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -EINVAL; /* arguments are checked before; this is our own mistake */
    return smtpc__send_line(c, kind, idx, line, (size_t)n);
}

/* ---- ending a message or the session ---- */

/* The current message's results are final: MSG_DONE. */
void smtpc__msg_end(struct smtpc *c)
{
    const struct smtpc_msg *m = c->msg;
    size_t nok = 0, ndefer = 0, nfail = 0;
    for (size_t i = 0; i < m->nrcpt; i++) {
        struct smtpc_result *res = &c->rcpt_res[i];
        if (res->outcome == SMTPC_PENDING)
            smtpc__result_local(res, SMTPC_DEFER, "4.4.0", "no final reply for this recipient");
        nok += res->outcome == SMTPC_OK;
        ndefer += res->outcome == SMTPC_DEFER;
        nfail += res->outcome == SMTPC_FAIL;
    }
    if (c->msg_res.outcome == SMTPC_PENDING)
        smtpc__result_local(&c->msg_res, ndefer ? SMTPC_DEFER : SMTPC_FAIL,
                            ndefer ? "4.0.0" : "5.0.0", "no recipient accepted");
    log_debug("%s smtpc message done outcome=%s ok=%zu defer=%zu fail=%zu", smtpc__id(c),
              smtpc_outcome_name(c->msg_res.outcome), nok, ndefer, nfail);
    c->msg = NULL;
    c->nmsgs++;
    c->actions |= SMTPC_ACT_MSG_DONE;
}

/* The dialogue broke: every recipient not yet final is deferred with why, the
 * connection is to be closed at once (nothing more is written). */
void smtpc__abort(struct smtpc *c, const struct smtpc_result *why)
{
    if (c->state == SMTPC_ST_DONE)
        return;
    if (c->session.outcome == SMTPC_PENDING || c->session.outcome == SMTPC_OK) {
        c->session = *why;
        c->session.outcome = SMTPC_DEFER;
    }
    log_debug("%s smtpc abort in %s code=%d enh=%s", smtpc__id(c), smtpc_state_name(c->state),
              why->code, why->enh[0] ? why->enh : "-");
    if (c->msg) {
        for (size_t i = 0; i < c->msg->nrcpt; i++) {
            if (c->rcpt_res[i].outcome == SMTPC_PENDING) {
                c->rcpt_res[i] = *why;
                c->rcpt_res[i].outcome = SMTPC_DEFER;
            }
        }
        c->msg_res = *why;
        c->msg_res.outcome = SMTPC_DEFER;
        smtpc__msg_end(c);
    }
    c->pend_head = c->pend_len = 0;
    c->out_len = 0;
    c->reply_active = false;
    smtpc__enter(c, SMTPC_ST_DONE);
    c->actions &=
        ~(unsigned)(SMTPC_ACT_WRITE | SMTPC_ACT_BODY | SMTPC_ACT_NEXT | SMTPC_ACT_STARTTLS);
    c->actions |= SMTPC_ACT_CLOSE;
}

void smtpc__abort_local(struct smtpc *c, const char *enh, const char *what)
{
    struct smtpc_result why;
    smtpc__result_local(&why, SMTPC_DEFER, enh, "%s", what);
    smtpc__abort(c, &why);
}

/* The session cannot go on, but the server is in step: record why, QUIT politely. No
 * message is open in the states that get here. */
int smtpc__session_fail(struct smtpc *c, const struct smtpc_result *why)
{
    c->session = *why;
    log_debug("%s smtpc session failed code=%d enh=%s", smtpc__id(c), why->code,
              why->enh[0] ? why->enh : "-");
    smtpc__enter(c, SMTPC_ST_QUIT);
    int rc = smtpc__send(c, SMTPC_K_QUIT, 0, "QUIT");
    if (rc < 0)
        smtpc__abort_local(c, "4.3.0", "out of memory");
    return 0;
}

int smtpc__session_fail_reply(struct smtpc *c, const struct smtp_reply *r)
{
    struct smtpc_result why;
    smtpc__result_reply(&why, smtpc__outcome_of(r->code) == SMTPC_FAIL ? SMTPC_FAIL : SMTPC_DEFER,
                        r);
    return smtpc__session_fail(c, &why);
}

/* True if s can go into a command line: no CR or LF; for a parameter value also no space
 * or '=' and not empty (RFC 5321 4.1.2 esmtp-value). */
bool smtpc__is_clean(const char *s, bool param)
{
    if (param && !*s)
        return false;
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n')
            return false;
        if (param && (*s == ' ' || *s == '=' || (unsigned char)*s < 33 || *s == 127))
            return false;
    }
    return true;
}

/* ---- handing over to the glue ---- */

unsigned smtpc_take_actions(struct smtpc *c)
{
    unsigned a = c->actions;
    c->actions = 0;
    return a;
}

char *smtpc_out_take(struct smtpc *c, size_t *len)
{
    *len = 0;
    if (c->out_len == 0)
        return NULL;
    char *p = c->out;
    *len = c->out_len;
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    return p;
}
