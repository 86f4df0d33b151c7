/* SMTP client dialogue: the session (greeting, EHLO/HELO, STARTTLS, AUTH, QUIT), the
 * door for replies and set-up, as a state machine without I/O. The glue feeds reply lines
 * and writes what the machine leaves in its output buffer; see smtpc.h for the loop.
 * Delivery transactions are in smtpc_deliver.c, the ETRN client in smtpc_etrn.c, output,
 * the pending-reply queue and results in smtpc_out.c (smtpc_int.h joins them).
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
 * AUTH: PLAIN with an initial response (RFC 4954 4, RFC 4616), only under TLS and only
 * when the EHLO answered under TLS lists it; or CRAM-MD5 (RFC 2195) when the glue gave a
 * response function and PLAIN is not possible (the only mechanism sent without TLS). The line
 * carrying the credentials is built in a local buffer that is wiped after use; the output buffer is
 * wiped when freed here. */
#include "smtpc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hf_err.h"
#include "log.h"
#include "smtpc_int.h"

/* ---- greeting, EHLO, STARTTLS ---- */

static int smtpc_ehlo(struct smtpc *c)
{
    smtpc__enter(c, SMTPC_ST_EHLO);
    return smtpc__send(c, SMTPC_K_EHLO, 0, "EHLO %s", c->o.helo);
}

/* Greeted and (if wanted) under TLS: start the mode's work. */
static int smtpc_ready(struct smtpc *c)
{
    if (c->o.mode == SMTPC_MODE_ETRN || c->o.mode == SMTPC_MODE_ATRN)
        return smtpc__etrn_next(c);
    smtpc__enter(c, SMTPC_ST_IDLE);
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
    smtpc__result_local(&why, SMTPC_FAIL, c->tls_active ? "5.7.4" : "5.7.11", "%s", what);
    log_debug("%s smtpc auth not attempted: %s", smtpc__id(c), what);
    return smtpc__session_fail(c, &why);
}

/* Standard base64 (RFC 4648 4) of in[0..len) into out (outsz octets). Returns the length
 * decoded, or -EINVAL (not base64, or too long for out). */
static long smtpc_unb64(const char *in, size_t len, unsigned char *out, size_t outsz)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
                : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                : ch >= '0' && ch <= '9' ? ch - '0' + 52
                : ch == '+'              ? 62
                : ch == '/'              ? 63
                                         : -1;
        if (ch == '=') {
            pad++;
            continue;
        }
        if (v < 0 || pad)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outsz)
                return -EINVAL;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if ((len % 4) != 0 || pad > 2)
        return -EINVAL;
    return (long)o;
}

/* The reply to "AUTH CRAM-MD5": 334 carries the challenge; answer it. */
static int smtpc_cram_answer(struct smtpc *c, const struct smtp_reply *r)
{
    unsigned char chal[SMTPC_TEXT_MAX];
    char resp[2 * SMTPC_AUTH_FIELD_MAX + 64];
    char line[4 * (sizeof(resp) + 2) / 3 + 4];
    long n = smtpc_unb64(r->text, strcspn(r->text, "\n "), chal, sizeof(chal));
    struct smtpc_result why;
    if (n <= 0) {
        smtpc__result_local(&why, SMTPC_FAIL, "5.7.0",
                            "AUTH CRAM-MD5: the challenge is not base64");
        return smtpc__session_fail(c, &why);
    }
    if (c->o.cram(c->o.auth_user, c->o.auth_pass, strlen(c->o.auth_pass), chal, (size_t)n, resp,
                  sizeof(resp)) < 0) {
        smtpc__result_local(&why, SMTPC_FAIL, "5.7.0",
                            "AUTH CRAM-MD5: cannot compute the response");
        return smtpc__session_fail(c, &why);
    }
    size_t len = smtpc_b64((const unsigned char *)resp, strlen(resp), line);
    int rc = smtpc__send_line(c, SMTPC_K_AUTH, 3, line, len);
    explicit_bzero(resp, sizeof(resp));
    explicit_bzero(line, sizeof(line));
    return rc;
}

/* After EHLO: AUTH PLAIN with the initial response under TLS, CRAM-MD5 when PLAIN is not
 * possible and the glue can compute it, or a refusal to send the credentials at all. */
static int smtpc_auth(struct smtpc *c)
{
    bool plain = c->tls_active && (c->ext & SMTPC_EXT_AUTH_PLAIN);
    if (!plain && c->o.cram && (c->ext & SMTPC_EXT_AUTH_CRAM)) {
        smtpc__enter(c, SMTPC_ST_AUTH);
        return smtpc__send(c, SMTPC_K_AUTH, 2, "AUTH CRAM-MD5");
    }
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
    smtpc__enter(c, SMTPC_ST_AUTH);
    int rc = smtpc__send_line(c, SMTPC_K_AUTH, 0, line, n);
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
    if (idx == 2 && r->code == 334)
        return smtpc_cram_answer(c, r);
    if (idx == 1) {
        /* The reply to our "*": the exchange is over, without authentication. */
        struct smtpc_result why;
        smtpc__result_local(&why, SMTPC_FAIL, "5.7.0",
                            "AUTH PLAIN: the server asked for more than the initial response "
                            "(334); cancelled");
        return smtpc__session_fail(c, &why);
    }
    if (r->code == 334) {
        /* RFC 4954 4: a challenge after a complete initial response makes no sense for
         * PLAIN; "*" cancels the exchange (the server answers 501). */
        return smtpc__send(c, SMTPC_K_AUTH, 1, "*");
    }
    if (smtp_reply_class(r->code) == 2) {
        log_debug("%s smtpc authenticated code=%d", smtpc__id(c), r->code);
        return smtpc_ready(c);
    }
    /* 535 5.7.8 bad credentials, 534 mechanism too weak... : FAIL; 454 4.7.0 and other
     * temporary trouble: DEFER. */
    return smtpc__session_fail_reply(c, r);
}

static int smtpc_after_hello(struct smtpc *c)
{
    if (!c->tls_active && c->o.tls != SMTPC_TLS_NEVER) {
        if (c->ext & SMTPC_EXT_STARTTLS) {
            smtpc__enter(c, SMTPC_ST_STARTTLS);
            return smtpc__send(c, SMTPC_K_STARTTLS, 0, "STARTTLS");
        }
        if (c->o.tls == SMTPC_TLS_REQUIRED) {
            struct smtpc_result why;
            smtpc__result_local(&why, SMTPC_DEFER, "4.7.10",
                                "TLS required but the server does not offer STARTTLS");
            return smtpc__session_fail(c, &why);
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
    return smtpc__session_fail_reply(c, r);
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
        {"CHUNKING", SMTPC_EXT_CHUNKING},
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
            if (n == 8 && strncasecmp(p, "CRAM-MD5", 8) == 0)
                c->ext |= SMTPC_EXT_AUTH_CRAM;
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
        smtpc__enter(c, SMTPC_ST_HELO);
        return smtpc__send(c, SMTPC_K_HELO, 0, "HELO %s", c->o.helo);
    default:
        return smtpc__session_fail_reply(c, r);
    }
}

static int smtpc_on_helo(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (smtp_reply_class(r->code) != 2)
        return smtpc__session_fail_reply(c, r);
    c->ext = 0; /* HELO: no service extensions */
    c->size_max = 0;
    return smtpc_after_hello(c);
}

static int smtpc_on_starttls(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (smtp_reply_class(r->code) == 2) {
        smtpc__enter(c, SMTPC_ST_TLS);
        c->actions |= SMTPC_ACT_STARTTLS;
        return 0;
    }
    if (c->o.tls == SMTPC_TLS_REQUIRED)
        return smtpc__session_fail_reply(c, r);
    log_info("%s smtpc starttls refused code=%d: going on without TLS", smtpc__id(c), r->code);
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
        smtpc__abort_local(c, "4.3.0", "out of memory");
}

static int smtpc_on_quit(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    (void)idx;
    if (c->session.outcome == SMTPC_PENDING)
        smtpc__result_reply(&c->session, SMTPC_OK, r);
    smtpc__enter(c, SMTPC_ST_DONE);
    c->actions |= SMTPC_ACT_CLOSE;
    return 0;
}

int smtpc_quit(struct smtpc *c)
{
    if (c->state != SMTPC_ST_IDLE || c->msg)
        return -EBUSY;
    smtpc__enter(c, SMTPC_ST_QUIT);
    int rc = smtpc__send(c, SMTPC_K_QUIT, 0, "QUIT");
    if (rc < 0)
        smtpc__abort_local(c, "4.3.0", "out of memory");
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
    [SMTPC_K_RSET] = {"RSET", smtpc__on_rset},
    [SMTPC_K_MAIL] = {"MAIL", smtpc__on_mail},
    [SMTPC_K_RCPT] = {"RCPT", smtpc__on_rcpt},
    [SMTPC_K_DATA] = {"DATA", smtpc__on_data},
    [SMTPC_K_DOT] = {"end of data", smtpc__on_dot},
    [SMTPC_K_BDAT] = {"BDAT", smtpc__on_bdat},
    [SMTPC_K_ETRN] = {"ETRN", smtpc__on_etrn},
    [SMTPC_K_QUIT] = {"QUIT", smtpc_on_quit},
};

int smtpc_on_line(struct smtpc *c, const char *line, size_t len)
{
    struct smtpc_result why;
    if (c->state == SMTPC_ST_DONE)
        return HF_EPROTO;
    if (c->state == SMTPC_ST_TLS) {
        /* RFC 3207 5: nothing may come between the 220 and the handshake. */
        smtpc__abort_local(c, "4.7.0", "reply injected before the TLS handshake");
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
        smtpc__result_local(&why, SMTPC_DEFER, "4.5.0", "malformed reply \"%s\"",
                            log_safe(shown, safe, sizeof(safe)));
        smtpc__abort(c, &why);
        return HF_EPROTO;
    }
    const struct smtp_reply *r = &c->reply;
    if (c->pend_len == 0) {
        smtpc__result_local(&why, SMTPC_DEFER, "4.5.0", "unexpected reply %d in %s", r->code,
                            smtpc_state_name(c->state));
        smtpc__abort(c, &why);
        return HF_EPROTO;
    }
    struct smtpc_pend p = smtpc__pend_pop(c);
    log_debug("%s smtpc reply to %s: %d", smtpc__id(c), smtpc_kinds[p.kind].name, r->code);
    if (r->code == 421 && p.kind != SMTPC_K_QUIT) {
        /* RFC 5321 3.8: the server is closing the channel, whatever the command was. */
        smtpc__result_reply(&why, SMTPC_DEFER, r);
        smtpc__abort(c, &why);
        return 0;
    }
    rc = smtpc_kinds[p.kind].fn(c, r, p.idx);
    if (rc < 0 && c->state != SMTPC_ST_DONE)
        smtpc__abort_local(c, "4.3.0", "out of memory");
    return 0;
}

void smtpc_on_closed(struct smtpc *c, int err)
{
    if (c->state == SMTPC_ST_DONE)
        return;
    if (c->state == SMTPC_ST_QUIT && !c->msg) {
        /* Closed instead of answering QUIT: nothing was pending. */
        if (c->session.outcome == SMTPC_PENDING)
            smtpc__result_local(&c->session, SMTPC_OK, "", "closed after QUIT");
        smtpc__enter(c, SMTPC_ST_DONE);
        c->actions |= SMTPC_ACT_CLOSE;
        return;
    }
    struct smtpc_result why;
    smtpc__result_local(&why, SMTPC_DEFER, "4.4.2", "connection lost in %s: %s",
                        smtpc_state_name(c->state), hf_strerror(err));
    smtpc__abort(c, &why);
}

/* ---- set-up ---- */

int smtpc_init(struct smtpc *c, const struct smtpc_opts *opts)
{
    memset(c, 0, sizeof(*c));
    if (opts->mode != SMTPC_MODE_DELIVER && opts->mode != SMTPC_MODE_ETRN &&
        opts->mode != SMTPC_MODE_ATRN)
        return -EINVAL;
    if (!opts->helo || !smtpc__is_clean(opts->helo, true))
        return -EINVAL;
    if (opts->auth_user || opts->auth_pass) {
        if (!opts->auth_user || !opts->auth_pass || !opts->auth_user[0] || !opts->auth_pass[0] ||
            strlen(opts->auth_user) > SMTPC_AUTH_FIELD_MAX ||
            strlen(opts->auth_pass) > SMTPC_AUTH_FIELD_MAX)
            return -EINVAL;
    }
    if (opts->mode == SMTPC_MODE_ETRN || opts->mode == SMTPC_MODE_ATRN) {
        if (opts->netrn == 0 || opts->netrn > UINT32_MAX || !opts->etrn)
            return -EINVAL;
        for (size_t i = 0; i < opts->netrn; i++)
            if (!opts->etrn[i] || !smtpc__is_clean(opts->etrn[i], true))
                return -EINVAL;
        c->etrn_res = calloc(opts->netrn, sizeof(*c->etrn_res));
        if (!c->etrn_res)
            return -ENOMEM;
    }
    c->o = *opts;
    c->state = SMTPC_ST_GREET;
    if (smtpc__pend_push(c, SMTPC_K_GREET, 0) < 0) {
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
