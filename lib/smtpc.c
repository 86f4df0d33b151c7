/* SMTP client dialogue: delivery (with PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN) and
 * ETRN, as a state machine without I/O. The glue feeds reply lines and writes what the
 * machine leaves in its output buffer; see smtpc.h for the loop.
 *
 * Every command sent is pushed on a queue of pending replies (kind + index), and every
 * complete reply is matched to the queue's head and handed to that kind's handler in
 * smtpc_kinds[]. Without PIPELINING the queue holds one command at a time and each
 * handler sends the next; with it a transaction's RSET, MAIL, RCPTs and DATA go out in
 * one write and their replies are matched in order (RFC 2920 3.1). Either way the
 * handlers are the same.
 *
 * Results: a recipient is final when its RCPT is refused, when MAIL is refused, or with
 * the reply to DATA or to the end of data. When the dialogue breaks (a lost connection,
 * a malformed or unexpected reply, 421) every recipient that is not final is deferred:
 * a recipient is never lost, at worst it is delivered twice (RFC 5321 6.1).
 *
 * AUTH: only PLAIN with an initial response (RFC 4954 4, RFC 4616), only under TLS and only
 * when the EHLO answered under TLS lists it. The line carrying the credentials is built in
 * a local buffer that is wiped after use; the output buffer is wiped when freed here. */
#include "smtpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hf_err.h"
#include "log.h"

#define SMTPC_CMD_MAX 2048 /* longest command we build: 512 plus extension parameters */

enum smtpc_kind {
    SMTPC_K_GREET,
    SMTPC_K_EHLO,
    SMTPC_K_HELO,
    SMTPC_K_STARTTLS,
    SMTPC_K_AUTH,
    SMTPC_K_RSET,
    SMTPC_K_MAIL,
    SMTPC_K_RCPT,
    SMTPC_K_DATA,
    SMTPC_K_DOT,
    SMTPC_K_ETRN,
    SMTPC_K_QUIT,
    SMTPC_K_COUNT,
};

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

static const char *smtpc_id(const struct smtpc *c)
{
    return c->o.log_id ? c->o.log_id : "c=?";
}

/* The one door for state changes. */
static void smtpc_enter(struct smtpc *c, enum smtpc_state next)
{
    log_debug("%s smtpc state %s -> %s", smtpc_id(c), smtpc_state_name(c->state),
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

static enum smtpc_outcome smtpc_outcome_of(int code)
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

static void smtpc_result_reply(struct smtpc_result *res, enum smtpc_outcome o,
                               const struct smtp_reply *r)
{
    res->outcome = o;
    res->code = r->code;
    smtpc_copy(res->enh, sizeof(res->enh), r->enh);
    smtpc_copy(res->text, sizeof(res->text), r->text);
}

static void smtpc_result_local(struct smtpc_result *res, enum smtpc_outcome o, const char *enh,
                               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void smtpc_result_local(struct smtpc_result *res, enum smtpc_outcome o, const char *enh,
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

static int smtpc_reserve(struct smtpc *c, size_t n)
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

static int smtpc_pend_push(struct smtpc *c, enum smtpc_kind kind, uint32_t idx)
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

static struct smtpc_pend smtpc_pend_pop(struct smtpc *c)
{
    struct smtpc_pend p = c->pend[c->pend_head++];
    if (--c->pend_len == 0)
        c->pend_head = 0;
    return p;
}

/* Appends the command line (CRLF added) and expects its reply. */
static int smtpc_send_line(struct smtpc *c, enum smtpc_kind kind, uint32_t idx, const char *line,
                           size_t len)
{
    int rc = smtpc_reserve(c, len + 2);
    if (rc == 0)
        rc = smtpc_pend_push(c, kind, idx);
    if (rc < 0)
        return rc;
    memcpy(c->out + c->out_len, line, len);
    memcpy(c->out + c->out_len + len, "\r\n", 2);
    c->out_len += len + 2;
    c->actions |= SMTPC_ACT_WRITE;
    return 0;
}

static int smtpc_send(struct smtpc *c, enum smtpc_kind kind, uint32_t idx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int smtpc_send(struct smtpc *c, enum smtpc_kind kind, uint32_t idx, const char *fmt, ...)
{
    char line[SMTPC_CMD_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -EINVAL; /* arguments are checked before; this is our own mistake */
    return smtpc_send_line(c, kind, idx, line, (size_t)n);
}

/* ---- ending a message or the session ---- */

/* The current message's results are final: MSG_DONE. */
static void smtpc_msg_end(struct smtpc *c)
{
    const struct smtpc_msg *m = c->msg;
    size_t nok = 0, ndefer = 0, nfail = 0;
    for (size_t i = 0; i < m->nrcpt; i++) {
        struct smtpc_result *res = &c->rcpt_res[i];
        if (res->outcome == SMTPC_PENDING)
            smtpc_result_local(res, SMTPC_DEFER, "4.4.0", "no final reply for this recipient");
        nok += res->outcome == SMTPC_OK;
        ndefer += res->outcome == SMTPC_DEFER;
        nfail += res->outcome == SMTPC_FAIL;
    }
    if (c->msg_res.outcome == SMTPC_PENDING)
        smtpc_result_local(&c->msg_res, ndefer ? SMTPC_DEFER : SMTPC_FAIL,
                           ndefer ? "4.0.0" : "5.0.0", "no recipient accepted");
    log_debug("%s smtpc message done outcome=%s ok=%zu defer=%zu fail=%zu", smtpc_id(c),
              smtpc_outcome_name(c->msg_res.outcome), nok, ndefer, nfail);
    c->msg = NULL;
    c->nmsgs++;
    c->actions |= SMTPC_ACT_MSG_DONE;
}

/* Ends a transaction normally: results final, ready for the next message. */
static int smtpc_msg_finish(struct smtpc *c)
{
    smtpc_msg_end(c);
    smtpc_enter(c, SMTPC_ST_IDLE);
    c->actions |= SMTPC_ACT_NEXT;
    return 0;
}

/* The dialogue broke: every recipient not yet final is deferred with why, the
 * connection is to be closed at once (nothing more is written). */
static void smtpc_abort(struct smtpc *c, const struct smtpc_result *why)
{
    if (c->state == SMTPC_ST_DONE)
        return;
    if (c->session.outcome == SMTPC_PENDING || c->session.outcome == SMTPC_OK) {
        c->session = *why;
        c->session.outcome = SMTPC_DEFER;
    }
    log_debug("%s smtpc abort in %s code=%d enh=%s", smtpc_id(c), smtpc_state_name(c->state),
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
        smtpc_msg_end(c);
    }
    c->pend_head = c->pend_len = 0;
    c->out_len = 0;
    c->reply_active = false;
    smtpc_enter(c, SMTPC_ST_DONE);
    c->actions &=
        ~(unsigned)(SMTPC_ACT_WRITE | SMTPC_ACT_BODY | SMTPC_ACT_NEXT | SMTPC_ACT_STARTTLS);
    c->actions |= SMTPC_ACT_CLOSE;
}

static void smtpc_abort_local(struct smtpc *c, const char *enh, const char *what)
{
    struct smtpc_result why;
    smtpc_result_local(&why, SMTPC_DEFER, enh, "%s", what);
    smtpc_abort(c, &why);
}

/* The session cannot go on, but the server is in step: record why, QUIT politely. No
 * message is open in the states that get here. */
static int smtpc_session_fail(struct smtpc *c, const struct smtpc_result *why)
{
    c->session = *why;
    log_debug("%s smtpc session failed code=%d enh=%s", smtpc_id(c), why->code,
              why->enh[0] ? why->enh : "-");
    smtpc_enter(c, SMTPC_ST_QUIT);
    int rc = smtpc_send(c, SMTPC_K_QUIT, 0, "QUIT");
    if (rc < 0)
        smtpc_abort_local(c, "4.3.0", "out of memory");
    return 0;
}

static int smtpc_session_fail_reply(struct smtpc *c, const struct smtp_reply *r)
{
    struct smtpc_result why;
    smtpc_result_reply(&why, smtpc_outcome_of(r->code) == SMTPC_FAIL ? SMTPC_FAIL : SMTPC_DEFER, r);
    return smtpc_session_fail(c, &why);
}

/* ---- greeting, EHLO, STARTTLS ---- */

static int smtpc_ehlo(struct smtpc *c)
{
    smtpc_enter(c, SMTPC_ST_EHLO);
    return smtpc_send(c, SMTPC_K_EHLO, 0, "EHLO %s", c->o.helo);
}

static int smtpc_etrn_next(struct smtpc *c)
{
    if (c->next_etrn < c->o.netrn) {
        smtpc_enter(c, SMTPC_ST_ETRN);
        return smtpc_send(c, SMTPC_K_ETRN, (uint32_t)c->next_etrn, "ETRN %s",
                          c->o.etrn[c->next_etrn]);
    }
    smtpc_enter(c, SMTPC_ST_QUIT);
    return smtpc_send(c, SMTPC_K_QUIT, 0, "QUIT");
}

/* Greeted and (if wanted) under TLS: start the mode's work. */
static int smtpc_ready(struct smtpc *c)
{
    if (c->o.mode == SMTPC_MODE_ETRN)
        return smtpc_etrn_next(c);
    smtpc_enter(c, SMTPC_ST_IDLE);
    c->actions |= SMTPC_ACT_NEXT;
    return 0;
}

/* ---- AUTH PLAIN (RFC 4954, RFC 4616) ---- */

#define SMTPC_AUTH_FIELD_MAX 255 /* RFC 4616 2: at most 255 octets per field */

/* Standard base64 with padding (RFC 4648 4) of in[0..len) into out (NUL-terminated; out
 * holds at least 4 * ((len + 2) / 3) + 1 octets). Returns the length written. */
static size_t smtpc_b64(const unsigned char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

static int smtpc_auth_refuse(struct smtpc *c, const char *what)
{
    struct smtpc_result why;
    /* 5.7.11: "encryption required for requested authentication mechanism" (RFC 5248). */
    smtpc_result_local(&why, SMTPC_FAIL, c->tls_active ? "5.7.4" : "5.7.11", "%s", what);
    log_debug("%s smtpc auth not attempted: %s", smtpc_id(c), what);
    return smtpc_session_fail(c, &why);
}

/* After EHLO (under TLS): AUTH PLAIN with the initial response, or a refusal to send the
 * credentials at all. */
static int smtpc_auth(struct smtpc *c)
{
    if (!c->tls_active)
        return smtpc_auth_refuse(c, "refusing to send credentials without TLS");
    if (!(c->ext & SMTPC_EXT_AUTH))
        return smtpc_auth_refuse(c, "AUTH configured but the server does not offer AUTH");
    if (!(c->ext & SMTPC_EXT_AUTH_PLAIN))
        return smtpc_auth_refuse(c, "AUTH configured but the server does not offer AUTH PLAIN");
    /* authzid empty: we act for ourselves only. */
    unsigned char raw[2 * SMTPC_AUTH_FIELD_MAX + 2];
    char line[sizeof("AUTH PLAIN ") + 4 * ((sizeof(raw) + 2) / 3) + 1];
    size_t ul = strlen(c->o.auth_user), pl = strlen(c->o.auth_pass);
    raw[0] = '\0';
    memcpy(raw + 1, c->o.auth_user, ul);
    raw[1 + ul] = '\0';
    memcpy(raw + 2 + ul, c->o.auth_pass, pl);
    memcpy(line, "AUTH PLAIN ", 11);
    size_t n = 11 + smtpc_b64(raw, ul + pl + 2, line + 11);
    smtpc_enter(c, SMTPC_ST_AUTH);
    int rc = smtpc_send_line(c, SMTPC_K_AUTH, 0, line, n);
    explicit_bzero(raw, sizeof(raw));
    explicit_bzero(line, sizeof(line));
    return rc;
}

/* TLS settled (on, or off and allowed): authenticate when configured, then the work. */
static int smtpc_after_tls(struct smtpc *c)
{
    return c->o.auth_user ? smtpc_auth(c) : smtpc_ready(c);
}

static int smtpc_on_auth(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    if (idx == 1) {
        /* The reply to our "*": the exchange is over, without authentication. */
        struct smtpc_result why;
        smtpc_result_local(&why, SMTPC_FAIL, "5.7.0",
                           "AUTH PLAIN: the server asked for more than the initial response "
                           "(334); cancelled");
        return smtpc_session_fail(c, &why);
    }
    if (r->code == 334) {
        /* RFC 4954 4: a challenge after a complete initial response makes no sense for
         * PLAIN; "*" cancels the exchange (the server answers 501). */
        return smtpc_send(c, SMTPC_K_AUTH, 1, "*");
    }
    if (smtp_reply_class(r->code) == 2) {
        log_debug("%s smtpc authenticated code=%d", smtpc_id(c), r->code);
        return smtpc_ready(c);
    }
    /* 535 5.7.8 bad credentials, 534 mechanism too weak... : FAIL; 454 4.7.0 and other
     * temporary trouble: DEFER. */
    return smtpc_session_fail_reply(c, r);
}

static int smtpc_after_hello(struct smtpc *c)
{
    if (!c->tls_active && c->o.tls != SMTPC_TLS_NEVER) {
        if (c->ext & SMTPC_EXT_STARTTLS) {
            smtpc_enter(c, SMTPC_ST_STARTTLS);
            return smtpc_send(c, SMTPC_K_STARTTLS, 0, "STARTTLS");
        }
        if (c->o.tls == SMTPC_TLS_REQUIRED) {
            struct smtpc_result why;
            smtpc_result_local(&why, SMTPC_DEFER, "4.7.10",
                               "TLS required but the server does not offer STARTTLS");
            return smtpc_session_fail(c, &why);
        }
    }
    return smtpc_after_tls(c);
}

static int smtpc_on_greet(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (smtp_reply_class(r->code) == 2)
        return smtpc_ehlo(c);
    /* RFC 5321 3.1: a 554 greeting; the client sends QUIT and tries elsewhere. */
    return smtpc_session_fail_reply(c, r);
}

static void smtpc_parse_ext(struct smtpc *c, const struct smtp_reply *r)
{
    static const struct {
        const char *keyword;
        unsigned bit;
    } exts[] = {
        {"PIPELINING", SMTPC_EXT_PIPELINING},
        {"8BITMIME", SMTPC_EXT_8BITMIME},
        {"SMTPUTF8", SMTPC_EXT_SMTPUTF8},
        {"DSN", SMTPC_EXT_DSN},
        {"STARTTLS", SMTPC_EXT_STARTTLS},
        {"ETRN", SMTPC_EXT_ETRN},
        {"ATRN", SMTPC_EXT_ATRN},
        {"ENHANCEDSTATUSCODES", SMTPC_EXT_ENHANCED},
    };
    const char *param;
    c->ext = 0;
    c->size_max = 0;
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
        if (smtp_reply_has_ext(r, exts[i].keyword, NULL))
            c->ext |= exts[i].bit;
    if (smtp_reply_has_ext(r, "SIZE", &param)) {
        /* RFC 1870 4: "SIZE" alone or "SIZE 0" announce no fixed limit. */
        c->ext |= SMTPC_EXT_SIZE;
        c->size_max = strtoull(param, NULL, 10);
    }
    if (smtp_reply_has_ext(r, "AUTH", &param)) {
        /* RFC 4954 3: "AUTH" SP mechanism *(SP mechanism), each a word of its own. */
        c->ext |= SMTPC_EXT_AUTH;
        for (const char *p = param; *p && *p != '\n';) {
            size_t n = strcspn(p, " \n");
            if (n == 5 && strncasecmp(p, "PLAIN", 5) == 0)
                c->ext |= SMTPC_EXT_AUTH_PLAIN;
            p += n;
            while (*p == ' ')
                p++;
        }
    }
}

static int smtpc_on_ehlo(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    switch (smtp_reply_class(r->code)) {
    case 2:
        smtpc_parse_ext(c, r);
        return smtpc_after_hello(c);
    case 5:
        /* RFC 5321 3.2: a server that does not know EHLO; fall back to HELO. */
        smtpc_enter(c, SMTPC_ST_HELO);
        return smtpc_send(c, SMTPC_K_HELO, 0, "HELO %s", c->o.helo);
    default:
        return smtpc_session_fail_reply(c, r);
    }
}

static int smtpc_on_helo(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (smtp_reply_class(r->code) != 2)
        return smtpc_session_fail_reply(c, r);
    c->ext = 0; /* HELO: no service extensions */
    c->size_max = 0;
    return smtpc_after_hello(c);
}

static int smtpc_on_starttls(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (smtp_reply_class(r->code) == 2) {
        smtpc_enter(c, SMTPC_ST_TLS);
        c->actions |= SMTPC_ACT_STARTTLS;
        return 0;
    }
    if (c->o.tls == SMTPC_TLS_REQUIRED)
        return smtpc_session_fail_reply(c, r);
    log_info("%s smtpc starttls refused code=%d: going on without TLS", smtpc_id(c), r->code);
    return smtpc_after_tls(c);
}

void smtpc_on_tls_ready(struct smtpc *c)
{
    if (c->state != SMTPC_ST_TLS)
        return;
    /* RFC 3207 4.2: forget what was learnt in clear; ask again. */
    c->tls_active = true;
    c->ext = 0;
    c->size_max = 0;
    if (smtpc_ehlo(c) < 0)
        smtpc_abort_local(c, "4.3.0", "out of memory");
}

/* ---- transactions ---- */

static bool smtpc_pipelining(const struct smtpc *c)
{
    return (c->ext & SMTPC_EXT_PIPELINING) != 0;
}

/* True if s can go into a command line: no CR or LF; for a parameter value also no space
 * or '=' and not empty (RFC 5321 4.1.2 esmtp-value). */
static bool smtpc_is_clean(const char *s, bool param)
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
    return n < 0 ? n : smtpc_send_line(c, SMTPC_K_MAIL, 0, line, (size_t)n);
}

static int smtpc_send_rcpt(struct smtpc *c, size_t i)
{
    char line[SMTPC_CMD_MAX];
    int n = smtpc_rcpt_line(c, &c->msg->rcpts[i], line, sizeof(line));
    return n < 0 ? n : smtpc_send_line(c, SMTPC_K_RCPT, (uint32_t)i, line, (size_t)n);
}

/* Checks that every line of m can be built, before anything is sent. */
static int smtpc_msg_check(const struct smtpc *c, const struct smtpc_msg *m)
{
    char line[SMTPC_CMD_MAX];
    if (!m->sender || !m->rcpts || m->nrcpt == 0 || m->nrcpt > UINT32_MAX)
        return -EINVAL;
    if (!smtpc_is_clean(m->sender, false) || (m->ret && !smtpc_is_clean(m->ret, true)) ||
        (m->envid && !smtpc_is_clean(m->envid, true)))
        return -EINVAL;
    if (smtpc_mail_line(c, m, line, sizeof(line)) < 0)
        return -EINVAL;
    for (size_t i = 0; i < m->nrcpt; i++) {
        const struct smtpc_rcpt *r = &m->rcpts[i];
        if (!r->addr || !smtpc_is_clean(r->addr, false) ||
            (r->notify && !smtpc_is_clean(r->notify, true)) ||
            (r->orcpt && !smtpc_is_clean(r->orcpt, true)) ||
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
    smtpc_msg_end(c);
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
        smtpc_abort_local(c, "4.3.0", "out of memory");
        return -ENOMEM;
    }
    c->msg = m;
    memset(c->rcpt_res, 0, m->nrcpt * sizeof(*c->rcpt_res));
    memset(c->rcpt_ok, 0, m->nrcpt * sizeof(*c->rcpt_ok));
    memset(&c->msg_res, 0, sizeof(c->msg_res));
    c->naccepted = 0;
    c->mail_failed = false;

    /* What the server cannot take is not sent (RFC 6152 3, RFC 6531 3.4, RFC 1870 6.1). */
    if (m->body_8bit && !(c->ext & SMTPC_EXT_8BITMIME)) {
        smtpc_result_local(&why, SMTPC_DEFER, "4.6.3", "8-bit message but server lacks 8BITMIME");
        smtpc_msg_refuse(c, &why);
        return 0;
    }
    if (m->smtputf8 && !(c->ext & SMTPC_EXT_SMTPUTF8)) {
        smtpc_result_local(&why, SMTPC_DEFER, "4.6.7",
                           "message needs SMTPUTF8 but server lacks it");
        smtpc_msg_refuse(c, &why);
        return 0;
    }
    if ((c->ext & SMTPC_EXT_SIZE) && c->size_max && m->size > c->size_max) {
        smtpc_result_local(&why, SMTPC_FAIL, "5.3.4",
                           "message size %" PRIu64 " exceeds the server's limit %" PRIu64, m->size,
                           c->size_max);
        smtpc_msg_refuse(c, &why);
        return 0;
    }

    smtpc_enter(c, SMTPC_ST_TXN);
    int rc = 0;
    if (c->need_rset) {
        /* The last transaction was left open (no recipient, DATA refused). */
        rc = smtpc_send(c, SMTPC_K_RSET, 0, "RSET");
        if (rc < 0 || !smtpc_pipelining(c))
            goto out;
    }
    rc = smtpc_send_mail(c);
    if (rc < 0 || !smtpc_pipelining(c))
        goto out;
    /* RFC 2920 3.1: MAIL and every RCPT, DATA last in the group. */
    for (size_t i = 0; rc == 0 && i < m->nrcpt; i++)
        rc = smtpc_send_rcpt(c, i);
    if (rc == 0)
        rc = smtpc_send(c, SMTPC_K_DATA, 0, "DATA");
out:
    if (rc < 0)
        smtpc_abort_local(c, "4.3.0", "out of memory");
    return rc;
}

static int smtpc_on_rset(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    struct smtpc_result why;
    (void)idx;
    if (smtp_reply_class(r->code) != 2) {
        /* A server that cannot reset is out of step with us. */
        smtpc_result_reply(&why, SMTPC_DEFER, r);
        smtpc_abort(c, &why);
        return 0;
    }
    c->need_rset = false;
    return smtpc_pipelining(c) ? 0 : smtpc_send_mail(c);
}

static int smtpc_on_mail(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
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
    smtpc_result_reply(&c->msg_res, smtpc_outcome_of(r->code), r);
    for (size_t i = 0; i < c->msg->nrcpt; i++)
        c->rcpt_res[i] = c->msg_res;
    return smtpc_pipelining(c) ? 0 : smtpc_msg_finish(c);
}

static int smtpc_on_rcpt(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    const struct smtpc_msg *m = c->msg;
    if (!c->mail_failed) {
        if (smtp_reply_class(r->code) == 2) {
            c->rcpt_ok[idx] = true;
            c->naccepted++;
        } else {
            smtpc_result_reply(&c->rcpt_res[idx], smtpc_outcome_of(r->code), r);
        }
    }
    if (smtpc_pipelining(c))
        return 0;
    if (idx + 1 < m->nrcpt)
        return smtpc_send_rcpt(c, idx + 1);
    if (c->naccepted > 0)
        return smtpc_send(c, SMTPC_K_DATA, 0, "DATA");
    return smtpc_msg_finish(c); /* no recipient: the transaction stays open (need_rset) */
}

static int smtpc_on_data(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (smtp_reply_class(r->code) == 3) {
        if (c->naccepted > 0 && !c->mail_failed) {
            smtpc_enter(c, SMTPC_ST_BODY);
            smtpc_stuff_init(&c->stuff);
            c->actions |= SMTPC_ACT_BODY;
            return 0;
        }
        /* RFC 2920 3.1: DATA accepted although no recipient was: send the end of data at
         * once; the reply to it decides nothing. */
        int rc = smtpc_reserve(c, 3);
        if (rc == 0)
            rc = smtpc_pend_push(c, SMTPC_K_DOT, 1);
        if (rc < 0)
            return rc;
        memcpy(c->out + c->out_len, ".\r\n", 3);
        c->out_len += 3;
        c->actions |= SMTPC_ACT_WRITE;
        smtpc_enter(c, SMTPC_ST_DOT);
        return 0;
    }
    if (!c->mail_failed && c->naccepted > 0) {
        /* DATA refused (or a bogus 2xx to it): the accepted recipients share its fate. */
        enum smtpc_outcome o = smtpc_outcome_of(r->code);
        smtpc_result_reply(&c->msg_res, o == SMTPC_OK ? SMTPC_DEFER : o, r);
        for (size_t i = 0; i < c->msg->nrcpt; i++)
            if (c->rcpt_ok[i])
                c->rcpt_res[i] = c->msg_res;
    }
    return smtpc_msg_finish(c);
}

static int smtpc_on_dot(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    /* RFC 5321 4.1.1.4: the reply to the end of data ends the transaction, whatever it
     * says; no RSET is needed before the next one. */
    c->need_rset = false;
    if (idx == 0) {
        smtpc_result_reply(&c->msg_res, smtpc_outcome_of(r->code), r);
        for (size_t i = 0; i < c->msg->nrcpt; i++)
            if (c->rcpt_ok[i] && c->rcpt_res[i].outcome == SMTPC_PENDING)
                c->rcpt_res[i] = c->msg_res;
    }
    return smtpc_msg_finish(c);
}

int smtpc_body(struct smtpc *c, const char *data, size_t len, bool last)
{
    if (c->state != SMTPC_ST_BODY)
        return -EBUSY;
    if (len > (SIZE_MAX - 5) / 3 || smtpc_reserve(c, SMTPC_STUFF_MAX(len)) < 0 ||
        (last && smtpc_pend_push(c, SMTPC_K_DOT, 0) < 0)) {
        smtpc_abort_local(c, "4.3.0", "out of memory");
        return -ENOMEM;
    }
    c->out_len += smtpc_stuff(&c->stuff, data, len, last, c->out + c->out_len);
    c->actions |= SMTPC_ACT_WRITE;
    if (last)
        smtpc_enter(c, SMTPC_ST_DOT);
    return 0;
}

/* ---- ETRN and QUIT ---- */

static int smtpc_on_etrn(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    /* RFC 1985 5: 250/251/252/253 started or queued; 458/459 not now; 5xx refused. */
    smtpc_result_reply(&c->etrn_res[idx], smtpc_outcome_of(r->code), r);
    c->next_etrn = idx + 1;
    return smtpc_etrn_next(c);
}

static int smtpc_on_quit(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (c->session.outcome == SMTPC_PENDING)
        smtpc_result_reply(&c->session, SMTPC_OK, r);
    smtpc_enter(c, SMTPC_ST_DONE);
    c->actions |= SMTPC_ACT_CLOSE;
    return 0;
}

int smtpc_quit(struct smtpc *c)
{
    if (c->state != SMTPC_ST_IDLE || c->msg)
        return -EBUSY;
    smtpc_enter(c, SMTPC_ST_QUIT);
    int rc = smtpc_send(c, SMTPC_K_QUIT, 0, "QUIT");
    if (rc < 0)
        smtpc_abort_local(c, "4.3.0", "out of memory");
    return rc;
}

/* ---- the door for replies ---- */

typedef int (*smtpc_reply_fn)(struct smtpc *c, const struct smtp_reply *r, uint32_t idx);

static const struct {
    const char *name;
    smtpc_reply_fn fn;
} smtpc_kinds[SMTPC_K_COUNT] = {
    [SMTPC_K_GREET] = {"greeting", smtpc_on_greet},
    [SMTPC_K_EHLO] = {"EHLO", smtpc_on_ehlo},
    [SMTPC_K_HELO] = {"HELO", smtpc_on_helo},
    [SMTPC_K_STARTTLS] = {"STARTTLS", smtpc_on_starttls},
    [SMTPC_K_AUTH] = {"AUTH", smtpc_on_auth},
    [SMTPC_K_RSET] = {"RSET", smtpc_on_rset},
    [SMTPC_K_MAIL] = {"MAIL", smtpc_on_mail},
    [SMTPC_K_RCPT] = {"RCPT", smtpc_on_rcpt},
    [SMTPC_K_DATA] = {"DATA", smtpc_on_data},
    [SMTPC_K_DOT] = {"end of data", smtpc_on_dot},
    [SMTPC_K_ETRN] = {"ETRN", smtpc_on_etrn},
    [SMTPC_K_QUIT] = {"QUIT", smtpc_on_quit},
};

int smtpc_on_line(struct smtpc *c, const char *line, size_t len)
{
    struct smtpc_result why;
    if (c->state == SMTPC_ST_DONE)
        return HF_EPROTO;
    if (c->state == SMTPC_ST_TLS) {
        /* RFC 3207 5: nothing may come between the 220 and the handshake. */
        smtpc_abort_local(c, "4.7.0", "reply injected before the TLS handshake");
        return HF_EPROTO;
    }
    if (!c->reply_active) {
        smtp_reply_init(&c->reply);
        c->reply_active = true;
    }
    int rc = smtp_reply_feed(&c->reply, line, len);
    if (rc == 0)
        return 0;
    c->reply_active = false;
    if (rc < 0) {
        char safe[64];
        char shown[48];
        size_t n = len < sizeof(shown) - 1 ? len : sizeof(shown) - 1;
        memcpy(shown, line, n);
        shown[n] = '\0';
        smtpc_result_local(&why, SMTPC_DEFER, "4.5.0", "malformed reply \"%s\"",
                           log_safe(shown, safe, sizeof(safe)));
        smtpc_abort(c, &why);
        return HF_EPROTO;
    }
    const struct smtp_reply *r = &c->reply;
    if (c->pend_len == 0) {
        smtpc_result_local(&why, SMTPC_DEFER, "4.5.0", "unexpected reply %d in %s", r->code,
                           smtpc_state_name(c->state));
        smtpc_abort(c, &why);
        return HF_EPROTO;
    }
    struct smtpc_pend p = smtpc_pend_pop(c);
    log_debug("%s smtpc reply to %s: %d", smtpc_id(c), smtpc_kinds[p.kind].name, r->code);
    if (r->code == 421 && p.kind != SMTPC_K_QUIT) {
        /* RFC 5321 3.8: the server is closing the channel, whatever the command was. */
        smtpc_result_reply(&why, SMTPC_DEFER, r);
        smtpc_abort(c, &why);
        return 0;
    }
    rc = smtpc_kinds[p.kind].fn(c, r, p.idx);
    if (rc < 0 && c->state != SMTPC_ST_DONE)
        smtpc_abort_local(c, "4.3.0", "out of memory");
    return 0;
}

void smtpc_on_closed(struct smtpc *c, int err)
{
    if (c->state == SMTPC_ST_DONE)
        return;
    if (c->state == SMTPC_ST_QUIT && !c->msg) {
        /* Closed instead of answering QUIT: nothing was pending. */
        if (c->session.outcome == SMTPC_PENDING)
            smtpc_result_local(&c->session, SMTPC_OK, "", "closed after QUIT");
        smtpc_enter(c, SMTPC_ST_DONE);
        c->actions |= SMTPC_ACT_CLOSE;
        return;
    }
    struct smtpc_result why;
    smtpc_result_local(&why, SMTPC_DEFER, "4.4.2", "connection lost in %s: %s",
                       smtpc_state_name(c->state), hf_strerror(err));
    smtpc_abort(c, &why);
}

/* ---- set-up ---- */

int smtpc_init(struct smtpc *c, const struct smtpc_opts *opts)
{
    memset(c, 0, sizeof(*c));
    if (opts->mode == SMTPC_MODE_ATRN)
        return -ENOTSUP;
    if (opts->mode != SMTPC_MODE_DELIVER && opts->mode != SMTPC_MODE_ETRN)
        return -EINVAL;
    if (!opts->helo || !smtpc_is_clean(opts->helo, true))
        return -EINVAL;
    if (opts->auth_user || opts->auth_pass) {
        if (!opts->auth_user || !opts->auth_pass || !opts->auth_user[0] || !opts->auth_pass[0] ||
            strlen(opts->auth_user) > SMTPC_AUTH_FIELD_MAX ||
            strlen(opts->auth_pass) > SMTPC_AUTH_FIELD_MAX)
            return -EINVAL;
    }
    if (opts->mode == SMTPC_MODE_ETRN) {
        if (opts->netrn == 0 || opts->netrn > UINT32_MAX || !opts->etrn)
            return -EINVAL;
        for (size_t i = 0; i < opts->netrn; i++)
            if (!opts->etrn[i] || !smtpc_is_clean(opts->etrn[i], true))
                return -EINVAL;
        c->etrn_res = calloc(opts->netrn, sizeof(*c->etrn_res));
        if (!c->etrn_res)
            return -ENOMEM;
    }
    c->o = *opts;
    c->state = SMTPC_ST_GREET;
    if (smtpc_pend_push(c, SMTPC_K_GREET, 0) < 0) {
        smtpc_close(c);
        return -ENOMEM;
    }
    return 0;
}

void smtpc_close(struct smtpc *c)
{
    if (c->out)
        explicit_bzero(c->out, c->out_len);
    free(c->out);
    free(c->pend);
    free(c->rcpt_res);
    free(c->rcpt_ok);
    free(c->etrn_res);
    memset(c, 0, sizeof(*c));
    c->state = SMTPC_ST_DONE;
}

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
