/* Inbound SMTP dialogue: line framing, the verb table, the DATA phase, replies.
 *
 * Each verb has a check (syntax, sequence, limits: refuses with a reply and changes nothing)
 * and an apply (effects and the next state). Every state change goes through smtpd_enter().
 * Replies accumulate in s->out so pipelined commands (RFC 2920) are answered in order and
 * sent in one write by the glue. */
#include "smtpd.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "auth.h"
#include "hf_err.h"
#include "log.h"
#include "smtp_reply.h"

static const char *const smtpd_state_names[] = {"GREET",  "READY", "MAIL",   "RCPT", "DATA",
                                                "COMMIT", "WAIT",  "CLOSED", "TLS",  "AUTH"};

const char *smtpd_state_name(enum smtpd_state st)
{
    return (unsigned)st < sizeof(smtpd_state_names) / sizeof(smtpd_state_names[0])
               ? smtpd_state_names[st]
               : "?";
}

static void smtpd_enter(struct smtpd *s, enum smtpd_state next)
{
    if (s->st != next)
        log_debug("c=%llu state %s -> %s", (unsigned long long)s->id, smtpd_state_name(s->st),
                  smtpd_state_name(next));
    s->st = next;
}

static void smtpd_out_append(struct smtpd *s, const char *p, size_t n)
{
    struct smtpd_out *o = &s->out;
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n)
            cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) { /* out of memory: drop the session rather than send a partial reply */
            o->act |= SMTPD_ACT_CLOSE;
            s->st = SMTPD_ST_CLOSED;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static void smtpd_reply(struct smtpd *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void smtpd_reply(struct smtpd *s, int code, const char *enh, const char *fmt, ...)
{
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    char line[700];
    int n = smtp_reply_fmt(line, sizeof(line), code, enh, false, "%s", text);
    if (n > 0)
        smtpd_out_append(s, line, (size_t)n);
}

void smtpd_out_reset(struct smtpd *s)
{
    s->out.len = 0;
    s->out.act = 0; /* every action is taken once, by the glue, before this */
    if (s->out.cap > 4096) {
        free(s->out.buf);
        s->out.buf = NULL;
        s->out.cap = 0;
    }
}

static void smtpd_rcpt_free(struct smtpd_rcpt *r)
{
    free(r->addr);
    free(r->domain);
    free(r->orcpt);
}

void smtpd_msg_free(struct smtpd_msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nrcpt; i++)
        smtpd_rcpt_free(&m->rcpts[i]);
    free(m->rcpts);
    free(m->sender);
    free(m->buf);
    free(m->envid);
    free(m);
}

/* Would a message buffer of cap octets (instead of the current one) fit the shared budget? */
static bool smtpd_mem_fits(const struct smtpd *s, size_t cap)
{
    if (!s->prm->mem_used || cap <= s->msg_cap)
        return true;
    return *s->prm->mem_used - s->msg_cap + cap <= s->prm->mem_limit;
}

/* Records that this session's message buffer is now cap octets. */
static void smtpd_mem_set(struct smtpd *s, size_t cap)
{
    if (s->prm->mem_used)
        *s->prm->mem_used = *s->prm->mem_used - s->msg_cap + cap;
    s->msg_cap = cap;
}

static void smtpd_reset_tx(struct smtpd *s)
{
    smtpd_mem_set(s, 0);
    smtpd_msg_free(s->msg);
    s->msg = NULL;
    s->declared_size = 0;
    s->too_big = false;
    s->no_mem = false;
}

void smtpd_init(struct smtpd *s, const struct smtpd_params *prm, const struct policy *policy,
                uint64_t id, const char *client_addr)
{
    memset(s, 0, sizeof(*s));
    s->prm = prm;
    s->policy = policy;
    s->id = id;
    snprintf(s->client_addr, sizeof(s->client_addr), "%s", client_addr ? client_addr : "");
    s->st = SMTPD_ST_GREET;
    smtpd_reply(s, 220, NULL, "%s ESMTP holdfast", prm->hostname);
}

void smtpd_close(struct smtpd *s)
{
    smtpd_reset_tx(s);
    free(s->helo);
    free(s->line);
    free(s->out.buf);
    free(s->out.auth_user);
    free(s->out.auth_pass);
    free(s->user);
    free(s->auth_login);
    memset(s, 0, sizeof(*s));
    s->st = SMTPD_ST_CLOSED;
}

void smtpd_refuse(struct smtpd *s, int code, const char *enh, const char *text)
{
    smtpd_reply(s, code, enh, "%s", text);
    s->out.act |= SMTPD_ACT_CLOSE;
    smtpd_enter(s, SMTPD_ST_CLOSED);
}

void smtpd_timeout(struct smtpd *s)
{
    smtpd_refuse(s, 421, "4.4.2", "Timeout exceeded, closing connection");
}

/* Counts a bad command; past the limit the session is dropped (421 4.7.0). */
static void smtpd_bad(struct smtpd *s)
{
    if (++s->bad >= s->prm->max_bad && s->st != SMTPD_ST_CLOSED) {
        log_info("c=%llu too many errors client=[%s] count=%u", (unsigned long long)s->id,
                 s->client_addr, s->bad);
        smtpd_refuse(s, 421, "4.7.0", "Too many errors, closing connection");
    }
}

/* ---- verbs ---------------------------------------------------------------------------- */

#define ST(x)      (1u << SMTPD_ST_##x)
#define ST_SESSION (ST(GREET) | ST(READY) | ST(MAIL) | ST(RCPT))

struct smtpd_verb {
    enum smtp_verb verb;
    unsigned allowed;
    int (*check)(struct smtpd *, const struct smtp_cmd *);
    void (*apply)(struct smtpd *, const struct smtp_cmd *);
};

static int smtpd_check_helo(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!c->arg[0]) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: %s hostname", smtp_cmd_verb_name(c->verb));
        return -EINVAL;
    }
    if (strlen(c->arg) > 255 || strchr(c->arg, ' ')) {
        smtpd_reply(s, 501, "5.5.4", "Invalid domain name");
        return -EINVAL;
    }
    return 0;
}

static void smtpd_apply_helo(struct smtpd *s, const struct smtp_cmd *c)
{
    free(s->helo);
    s->helo = strdup(c->arg);
    smtpd_reset_tx(s);
    s->esmtp = c->verb == SMTP_V_EHLO;
    if (!s->esmtp) {
        smtpd_reply(s, 250, NULL, "%s", s->prm->hostname);
    } else {
        char line[300];
        const char *ext[12];
        char size[40];
        size_t n = 0;
        snprintf(size, sizeof(size), "SIZE %llu", (unsigned long long)s->prm->max_size);
        ext[n++] = "PIPELINING";
        ext[n++] = size;
        ext[n++] = "8BITMIME";
        ext[n++] = "ENHANCEDSTATUSCODES";
        ext[n++] = "SMTPUTF8";
        ext[n++] = "DSN";
        if (s->prm->etrn)
            ext[n++] = "ETRN";
        if (s->prm->tls_available && !s->tls)
            ext[n++] = "STARTTLS";
        /* AUTH only over TLS (RFC 4954 4: no plaintext passwords on the wire). */
        if (s->prm->auth_available && s->tls && !s->user)
            ext[n++] = "AUTH PLAIN LOGIN";
        ext[n++] = "HELP";
        int l = smtp_reply_fmt(line, sizeof(line), 250, NULL, true, "%s Hello %.200s [%s]",
                               s->prm->hostname, s->helo ? s->helo : "", s->client_addr);
        if (l > 0)
            smtpd_out_append(s, line, (size_t)l);
        for (size_t i = 0; i < n; i++) {
            l = smtp_reply_fmt(line, sizeof(line), 250, NULL, i + 1 < n, "%s", ext[i]);
            if (l > 0)
                smtpd_out_append(s, line, (size_t)l);
        }
    }
    smtpd_enter(s, SMTPD_ST_READY);
}

static int smtpd_check_mail(struct smtpd *s, const struct smtp_cmd *c)
{
    if (s->st == SMTPD_ST_GREET) {
        smtpd_reply(s, 503, "5.5.1", "Send HELO or EHLO first");
        return -EPROTO;
    }
    if (s->st != SMTPD_ST_READY) {
        smtpd_reply(s, 503, "5.5.1", "Nested MAIL command");
        return -EPROTO;
    }
    bool params = c->has_size || c->body != SMTP_BODY_NONE || c->smtputf8 ||
                  c->ret != SMTP_RET_NONE || c->envid[0];
    if (params && !s->esmtp) {
        smtpd_reply(s, 555, "5.5.4", "MAIL parameters need EHLO");
        return -EINVAL;
    }
    if (c->body == SMTP_BODY_BINARYMIME) {
        smtpd_reply(s, 555, "5.5.4", "BODY=BINARYMIME needs CHUNKING, which is not offered");
        return -EINVAL;
    }
    if (c->has_size && c->size > s->prm->max_size) {
        smtpd_reply(s, 552, "5.3.4", "Message size exceeds fixed limit of %llu octets",
                    (unsigned long long)s->prm->max_size);
        return -EFBIG;
    }
    return 0;
}

static void smtpd_apply_mail(struct smtpd *s, const struct smtp_cmd *c)
{
    smtpd_reset_tx(s);
    struct smtpd_msg *m = calloc(1, sizeof(*m));
    if (!m || !(m->sender = strdup(c->path_null ? "" : c->path)) ||
        (c->envid[0] && !(m->envid = strdup(c->envid)))) {
        smtpd_msg_free(m);
        smtpd_reply(s, 451, "4.3.0", "Out of memory, try again later");
        return;
    }
    m->smtputf8 = c->smtputf8;
    m->ret = c->ret;
    s->msg = m;
    s->declared_size = c->has_size ? c->size : 0;
    smtpd_reply(s, 250, "2.1.0", "Ok");
    smtpd_enter(s, SMTPD_ST_MAIL);
}

/* True if the authenticated user may relay: submission_users empty, or lists the user. */
static bool smtpd_may_submit(const struct smtpd *s)
{
    const char *list = s->prm->submission_users;
    if (!list || !*list)
        return true;
    size_t ul = strlen(s->user);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t wl = strcspn(p, " ,");
        if (wl == ul && strncmp(p, s->user, ul) == 0)
            return true;
        p += wl;
    }
    return false;
}

static int smtpd_check_rcpt(struct smtpd *s, const struct smtp_cmd *c)
{
    if (s->st != SMTPD_ST_MAIL && s->st != SMTPD_ST_RCPT) {
        smtpd_reply(s, 503, "5.5.1", "Need MAIL before RCPT");
        return -EPROTO;
    }
    if ((c->notify || c->orcpt[0]) && !s->esmtp) {
        smtpd_reply(s, 555, "5.5.4", "RCPT parameters need EHLO");
        return -EINVAL;
    }
    if (s->msg->nrcpt >= s->prm->max_rcpts) {
        smtpd_reply(s, 452, "4.5.3", "Too many recipients");
        return -E2BIG;
    }
    if (strcasecmp(c->path, "postmaster") == 0) {
        smtpd_reply(s, 550, "5.7.1", "<%s>: this relay has no local mailboxes", c->path);
        return -EPERM;
    }
    /* The parser checked the syntax and filled c->mbox (not for Postmaster, handled above). */
    const struct addr_mailbox *mb = &c->mbox;
    if (mb->utf8 && !s->msg->smtputf8) {
        smtpd_reply(s, 553, "5.6.7", "Non-ASCII recipient address needs SMTPUTF8");
        return -EINVAL;
    }
    enum policy_verdict verdict = policy_check_rcpt(s->policy, mb, NULL);
    /* Submission: an authenticated client may relay anywhere when the config allows it
     * (never through %-hacks or bang paths, which stay refused). */
    if (verdict == POLICY_RELAY_DENIED && s->user && s->prm->submission && !mb->has_relay_chars &&
        !mb->domain_literal && smtpd_may_submit(s)) {
        log_info("c=%llu relay to=<%s> authenticated user=%s", (unsigned long long)s->id, c->path,
                 s->user);
        return 0;
    }
    if (verdict != POLICY_OK)
        s->rej_rcpt++;
    switch (verdict) {
    case POLICY_OK:
        return 0;
    case POLICY_UNKNOWN_USER:
        log_info("c=%llu reject RCPT to=<%s> reason=unknown_user client=[%s]",
                 (unsigned long long)s->id, c->path, s->client_addr);
        smtpd_reply(s, 550, "5.1.1", "<%s>: Recipient address rejected: user unknown", c->path);
        return -ENOENT;
    case POLICY_RELAY_TRICK:
        log_info("c=%llu reject RCPT to=<%s> reason=relay_trick client=[%s]",
                 (unsigned long long)s->id, c->path, s->client_addr);
        smtpd_reply(s, 550, "5.7.1",
                    "<%s>: Relaying denied: %%, ! and quoted @ in local parts are not relayed",
                    c->path);
        return -EPERM;
    case POLICY_RELAY_DENIED:
    default:
        log_info("c=%llu reject RCPT to=<%s> reason=relay_denied client=[%s]",
                 (unsigned long long)s->id, c->path, s->client_addr);
        smtpd_reply(s, 550, "5.7.1", "<%s>: Relaying denied", c->path);
        return -EPERM;
    }
}

static void smtpd_apply_rcpt(struct smtpd *s, const struct smtp_cmd *c)
{
    struct smtpd_msg *m = s->msg;
    /* A duplicate recipient is accepted once (RFC 5321 3.3 lets the server drop it). */
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (strcmp(m->rcpts[i].addr, c->path) == 0) {
            smtpd_reply(s, 250, "2.1.5", "Ok");
            smtpd_enter(s, SMTPD_ST_RCPT);
            return;
        }
    }
    struct smtpd_rcpt *v = realloc(m->rcpts, (m->nrcpt + 1) * sizeof(*v));
    if (!v) {
        smtpd_reply(s, 451, "4.3.0", "Out of memory, try again later");
        return;
    }
    m->rcpts = v;
    struct smtpd_rcpt *r = &v[m->nrcpt];
    memset(r, 0, sizeof(*r));
    r->addr = strdup(c->path);
    r->domain = strdup(c->mbox.domain);
    r->orcpt = c->orcpt[0] ? strdup(c->orcpt) : NULL;
    r->notify = c->notify;
    if (!r->addr || !r->domain || (c->orcpt[0] && !r->orcpt)) {
        smtpd_rcpt_free(r);
        smtpd_reply(s, 451, "4.3.0", "Out of memory, try again later");
        return;
    }
    m->nrcpt++;
    smtpd_reply(s, 250, "2.1.5", "Ok");
    smtpd_enter(s, SMTPD_ST_RCPT);
}

static int smtpd_check_data(struct smtpd *s, const struct smtp_cmd *c)
{
    if (c->arg[0]) {
        smtpd_reply(s, 501, "5.5.4", "DATA takes no argument");
        return -EINVAL;
    }
    if (s->st == SMTPD_ST_MAIL) {
        smtpd_reply(s, 554, "5.5.1", "No valid recipients");
        return -EPROTO;
    }
    if (s->st != SMTPD_ST_RCPT) {
        smtpd_reply(s, 503, "5.5.1", "Need RCPT before DATA");
        return -EPROTO;
    }
    return 0;
}

static void smtpd_apply_data(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    size_t cap = SMTPD_BODY_HEADROOM + 16384;
    if (s->declared_size && s->declared_size < s->prm->max_size)
        cap = SMTPD_BODY_HEADROOM + (size_t)s->declared_size + 64;
    if (!smtpd_mem_fits(s, cap)) {
        log_warn("c=%llu refuse DATA reason=memory budget=%zu client=[%s]",
                 (unsigned long long)s->id, s->prm->mem_limit, s->client_addr);
        smtpd_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
        return;
    }
    s->msg->buf = malloc(cap);
    if (!s->msg->buf) {
        smtpd_reply(s, 451, "4.3.0", "Out of memory, try again later");
        return;
    }
    smtpd_mem_set(s, cap);
    s->msg->head = SMTPD_BODY_HEADROOM;
    s->msg->len = 0;
    s->too_big = false;
    smtp_data_init(&s->dec, SMTP_TEXT_LINE_MAX,
                   s->prm->bare_normalise ? SMTP_DATA_BARE_NORMALISE : SMTP_DATA_BARE_REJECT);
    smtpd_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    smtpd_enter(s, SMTPD_ST_DATA);
}

static int smtpd_check_noarg(struct smtpd *s, const struct smtp_cmd *c)
{
    if (c->arg[0]) {
        smtpd_reply(s, 501, "5.5.4", "%s takes no argument", smtp_cmd_verb_name(c->verb));
        return -EINVAL;
    }
    return 0;
}

static void smtpd_apply_rset(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    smtpd_reset_tx(s);
    smtpd_reply(s, 250, "2.0.0", "Ok");
    if (s->st != SMTPD_ST_GREET)
        smtpd_enter(s, SMTPD_ST_READY);
}

static void smtpd_apply_noop(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    smtpd_reply(s, 250, "2.0.0", "Ok");
}

static void smtpd_apply_quit(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    smtpd_refuse(s, 221, "2.0.0", "Bye");
}

static int smtpd_check_vrfy(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!c->arg[0]) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return -EINVAL;
    }
    return 0;
}

static void smtpd_apply_vrfy(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    /* Never a user list (RFC 5321 3.5.3, 7.3). */
    smtpd_reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void smtpd_apply_help(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    smtpd_reply(s, 214, "2.0.0",
                "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP%s; see RFC 5321",
                s->prm->etrn ? " ETRN" : "");
}

static void smtpd_apply_refused(struct smtpd *s, const struct smtp_cmd *c)
{
    switch (c->verb) {
    case SMTP_V_TURN:
        /* RFC 2645 1: TURN hands the queue to whoever asks. */
        smtpd_reply(s, 502, "5.5.1", "TURN refused: it gives mail to whoever asks; use ETRN");
        break;
    case SMTP_V_ATRN:
        smtpd_reply(s, 502, "5.5.1", "ATRN is served on the ODMR port only (RFC 2645)");
        break;
    case SMTP_V_EXPN:
        smtpd_reply(s, 502, "5.5.1", "EXPN not available");
        break;
    case SMTP_V_BDAT:
        smtpd_reply(s, 502, "5.5.1", "CHUNKING not offered; use DATA");
        break;
    default:
        smtpd_reply(s, 502, "5.5.1", "%s not available", smtp_cmd_verb_name(c->verb));
        break;
    }
}

static int smtpd_check_starttls(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!s->prm->tls_available) {
        smtpd_reply(s, 502, "5.5.1", "STARTTLS not available");
        return -EPERM;
    }
    if (s->tls) {
        smtpd_reply(s, 503, "5.5.1", "TLS already active");
        return -EPROTO;
    }
    if (c->arg[0]) {
        smtpd_reply(s, 501, "5.5.4", "STARTTLS takes no argument");
        return -EINVAL;
    }
    return 0;
}

static void smtpd_apply_starttls(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    smtpd_reply(s, 220, "2.0.0", "Ready to start TLS");
    /* Whatever the client sent after STARTTLS in the same packet is discarded by the glue
     * (RFC 3207 5, CVE-2011-0411): smtpd stops consuming input here. */
    free(s->line);
    s->line = NULL;
    s->line_len = 0;
    s->line_overflow = false;
    s->out.act |= SMTPD_ACT_STARTTLS;
    smtpd_enter(s, SMTPD_ST_TLS);
}

void smtpd_tls_ready(struct smtpd *s, int status, const char *info)
{
    if (s->st != SMTPD_ST_TLS)
        return;
    if (status < 0) {
        s->out.act |= SMTPD_ACT_CLOSE;
        smtpd_enter(s, SMTPD_ST_CLOSED);
        return;
    }
    /* RFC 3207 4.2: discard all knowledge from the client; it must say EHLO again. */
    smtpd_reset_tx(s);
    free(s->helo);
    s->helo = NULL;
    s->esmtp = false;
    s->tls = true;
    snprintf(s->tls_info, sizeof(s->tls_info), "%s", info ? info : "");
    smtpd_enter(s, SMTPD_ST_GREET);
}

/* ---- AUTH (RFC 4954), offered only over TLS ------------------------------------------- */

static int smtpd_check_auth(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!s->prm->auth_available) {
        smtpd_reply(s, 502, "5.5.1", "AUTH not available");
        return -EPERM;
    }
    if (!s->tls) {
        /* RFC 4954 4: no mechanism that sends passwords in clear without TLS. */
        smtpd_reply(s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
        return -EPERM;
    }
    if (s->st == SMTPD_ST_GREET) {
        smtpd_reply(s, 503, "5.5.1", "Send EHLO first");
        return -EPROTO;
    }
    if (s->user) {
        smtpd_reply(s, 503, "5.5.1", "Already authenticated");
        return -EPROTO;
    }
    if (s->st != SMTPD_ST_READY) {
        smtpd_reply(s, 503, "5.5.1", "AUTH not allowed inside a mail transaction");
        return -EPROTO;
    }
    char mech[32];
    size_t ml = strcspn(c->arg, " ");
    if (ml == 0 || ml >= sizeof(mech)) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        return -EINVAL;
    }
    memcpy(mech, c->arg, ml);
    mech[ml] = '\0';
    if (strcasecmp(mech, "PLAIN") != 0 && strcasecmp(mech, "LOGIN") != 0) {
        smtpd_reply(s, 504, "5.5.4", "Unrecognized authentication type (PLAIN and LOGIN offered)");
        return -EINVAL;
    }
    return 0;
}

/* Hands decoded credentials to the glue, which checks them off the loop. */
static void smtpd_auth_submit(struct smtpd *s, const char *user, const char *pass)
{
    free(s->out.auth_user);
    free(s->out.auth_pass);
    s->out.auth_user = strdup(user);
    s->out.auth_pass = strdup(pass);
    if (!s->out.auth_user || !s->out.auth_pass) {
        smtpd_reply(s, 454, "4.7.0", "Temporary authentication failure");
        smtpd_enter(s, SMTPD_ST_READY);
        return;
    }
    s->out.act |= SMTPD_ACT_AUTH;
    smtpd_enter(s, SMTPD_ST_WAIT);
}

static void smtpd_auth_decode_error(struct smtpd *s, int rc)
{
    if (rc == -ECANCELED)
        smtpd_reply(s, 501, "5.0.0", "Authentication cancelled");
    else if (rc == HF_ETOOBIG)
        smtpd_reply(s, 500, "5.5.6", "Authentication exchange line is too long");
    else
        smtpd_reply(s, 501, "5.5.2", "Cannot decode the response (base64, RFC 4954 4)");
    free(s->auth_login);
    s->auth_login = NULL;
    s->auth_mech = 0;
    smtpd_enter(s, SMTPD_ST_READY);
    smtpd_bad(s);
}

static void smtpd_auth_plain(struct smtpd *s, const char *b64, size_t len)
{
    struct auth_plain ap;
    int rc = (len == 1 && b64[0] == '=') ? HF_ESYNTAX : auth_plain_decode(b64, len, &ap);
    if (rc < 0) {
        smtpd_auth_decode_error(s, rc);
        return;
    }
    if (ap.authzid[0] && strcmp(ap.authzid, ap.authcid) != 0) {
        auth_wipe(&ap, sizeof(ap));
        smtpd_reply(s, 535, "5.7.8", "Authentication credentials invalid");
        smtpd_enter(s, SMTPD_ST_READY);
        return;
    }
    s->auth_mech = 0;
    smtpd_auth_submit(s, ap.authcid, ap.passwd);
    auth_wipe(&ap, sizeof(ap));
}

static void smtpd_apply_auth(struct smtpd *s, const struct smtp_cmd *c)
{
    const char *ir = c->arg + strcspn(c->arg, " ");
    while (*ir == ' ')
        ir++;
    if (strncasecmp(c->arg, "PLAIN", 5) == 0) {
        if (*ir) {
            smtpd_auth_plain(s, ir, strlen(ir));
            return;
        }
        s->auth_mech = 1;
        /* RFC 4954 4: continue-req = "334" SP [base64] CRLF, so the space stays. */
        smtpd_out_append(s, "334 \r\n", 6);
        smtpd_enter(s, SMTPD_ST_AUTH);
        return;
    }
    s->auth_mech = 2;
    free(s->auth_login);
    s->auth_login = NULL;
    if (*ir) {
        char user[AUTH_FIELD_MAX + 1];
        int rc = auth_login_decode(ir, strlen(ir), user, sizeof(user));
        if (rc < 0) {
            smtpd_auth_decode_error(s, rc);
            return;
        }
        s->auth_login = strdup(user);
        smtpd_reply(s, 334, NULL, "%s", AUTH_LOGIN_PASS_PROMPT);
    } else {
        smtpd_reply(s, 334, NULL, "%s", AUTH_LOGIN_USER_PROMPT);
    }
    smtpd_enter(s, SMTPD_ST_AUTH);
}

/* A line of the SASL exchange (after 334). */
static void smtpd_auth_line(struct smtpd *s, const char *line, size_t len)
{
    if (s->auth_mech == 1) {
        smtpd_auth_plain(s, line, len);
        return;
    }
    char buf[AUTH_FIELD_MAX + 1];
    int rc = auth_login_decode(line, len, buf, sizeof(buf));
    if (rc < 0) {
        smtpd_auth_decode_error(s, rc);
        return;
    }
    if (!s->auth_login) {
        s->auth_login = strdup(buf);
        smtpd_reply(s, 334, NULL, "%s", AUTH_LOGIN_PASS_PROMPT);
        return;
    }
    s->auth_mech = 0;
    char *user = s->auth_login;
    s->auth_login = NULL;
    smtpd_auth_submit(s, user, buf);
    auth_wipe(buf, sizeof(buf));
    free(user);
}

void smtpd_auth_done(struct smtpd *s, bool ok, bool temp_fail, const char *user)
{
    if (s->st != SMTPD_ST_WAIT)
        return;
    if (ok) {
        free(s->user);
        s->user = strdup(user);
        smtpd_reply(s, 235, "2.7.0", "Authentication successful");
    } else if (temp_fail) {
        smtpd_reply(s, 454, "4.7.0", "Temporary authentication failure, try again later");
    } else {
        smtpd_reply(s, 535, "5.7.8", "Authentication credentials invalid");
        smtpd_bad(s);
    }
    if (s->st != SMTPD_ST_CLOSED)
        smtpd_enter(s, SMTPD_ST_READY);
}

static int smtpd_check_etrn(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!s->prm->etrn) {
        smtpd_reply(s, 502, "5.5.1", "ETRN not available");
        return -EPERM;
    }
    if (s->st == SMTPD_ST_GREET) {
        smtpd_reply(s, 503, "5.5.1", "Send HELO or EHLO first");
        return -EPROTO;
    }
    if (s->st != SMTPD_ST_READY) { /* RFC 1985 5: not inside a mail transaction */
        smtpd_reply(s, 503, "5.5.1", "ETRN not allowed inside a mail transaction");
        return -EPROTO;
    }
    if (!c->arg[0] || strchr(c->arg, ' ')) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: ETRN domain | @domain | #queue");
        return -EINVAL;
    }
    return 0;
}

static void smtpd_apply_etrn(struct smtpd *s, const struct smtp_cmd *c)
{
    snprintf(s->out.etrn_arg, sizeof(s->out.etrn_arg), "%s", c->arg);
    s->out.act |= SMTPD_ACT_ETRN;
    smtpd_enter(s, SMTPD_ST_WAIT);
}

static const struct smtpd_verb smtpd_verbs[] = {
    {SMTP_V_HELO, ST_SESSION, smtpd_check_helo, smtpd_apply_helo},
    {SMTP_V_EHLO, ST_SESSION, smtpd_check_helo, smtpd_apply_helo},
    {SMTP_V_MAIL, ST_SESSION, smtpd_check_mail, smtpd_apply_mail},
    {SMTP_V_RCPT, ST_SESSION, smtpd_check_rcpt, smtpd_apply_rcpt},
    {SMTP_V_DATA, ST_SESSION, smtpd_check_data, smtpd_apply_data},
    {SMTP_V_RSET, ST_SESSION, smtpd_check_noarg, smtpd_apply_rset},
    {SMTP_V_NOOP, ST_SESSION, NULL, smtpd_apply_noop},
    {SMTP_V_QUIT, ST_SESSION, NULL, smtpd_apply_quit},
    {SMTP_V_VRFY, ST_SESSION, smtpd_check_vrfy, smtpd_apply_vrfy},
    {SMTP_V_HELP, ST_SESSION, NULL, smtpd_apply_help},
    {SMTP_V_ETRN, ST_SESSION, smtpd_check_etrn, smtpd_apply_etrn},
    {SMTP_V_EXPN, ST_SESSION, NULL, smtpd_apply_refused},
    {SMTP_V_TURN, ST_SESSION, NULL, smtpd_apply_refused},
    {SMTP_V_ATRN, ST_SESSION, NULL, smtpd_apply_refused},
    {SMTP_V_BDAT, ST_SESSION, NULL, smtpd_apply_refused},
    {SMTP_V_STARTTLS, ST_SESSION, smtpd_check_starttls, smtpd_apply_starttls},
    {SMTP_V_AUTH, ST_SESSION, smtpd_check_auth, smtpd_apply_auth},
};

static bool smtpd_line_is_ascii(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] >= 0x80)
            return false;
    return true;
}

static void smtpd_command(struct smtpd *s, const char *line, size_t len)
{
    struct smtp_cmd c;
    int rc = smtp_cmd_parse(line, len, &c);
    if (rc < 0) {
        switch (rc) {
        case HF_ELONGLINE:
        case HF_EBARELF:
            smtpd_reply(s, 500, "5.5.2", "%s",
                        rc == HF_ELONGLINE ? "Line too long" : "Bare CR or LF in command line");
            break;
        case HF_EUNKNOWN:
            smtpd_reply(s, 500, "5.5.1", "Command unrecognized");
            break;
        case HF_EPARAM:
            smtpd_reply(s, 555, "5.5.4", "Unsupported %s parameter", smtp_cmd_verb_name(c.verb));
            break;
        case HF_EADDR:
            if (c.verb == SMTP_V_MAIL && !smtpd_line_is_ascii(line, len))
                smtpd_reply(s, 553, "5.6.7", "Non-ASCII sender address needs SMTPUTF8");
            else if (c.verb == SMTP_V_MAIL)
                smtpd_reply(s, 501, "5.1.7", "Bad sender address syntax");
            else
                smtpd_reply(s, 501, "5.1.3", "Bad recipient address syntax");
            break;
        default:
            smtpd_reply(s, 501, "5.5.4", "Syntax error in %s", smtp_cmd_verb_name(c.verb));
            break;
        }
        smtpd_bad(s);
        return;
    }
    for (size_t i = 0; i < sizeof(smtpd_verbs) / sizeof(smtpd_verbs[0]); i++) {
        const struct smtpd_verb *v = &smtpd_verbs[i];
        if (v->verb != c.verb)
            continue;
        if (!(v->allowed & (1u << s->st))) {
            smtpd_reply(s, 503, "5.5.1", "Bad sequence of commands");
            smtpd_bad(s);
            return;
        }
        if (v->check) {
            int rc2 = v->check(s, &c);
            if (rc2 < 0) {
                /* Refused recipients and senders are ordinary in mail; only protocol
                 * mistakes (sequence, syntax) count towards max_bad_commands. */
                if ((c.verb != SMTP_V_RCPT && c.verb != SMTP_V_MAIL) || rc2 == -EPROTO ||
                    rc2 == -EINVAL || rc2 == HF_EADDR)
                    smtpd_bad(s);
                return;
            }
        }
        v->apply(s, &c);
        return;
    }
    smtpd_reply(s, 500, "5.5.1", "Command unrecognized");
    smtpd_bad(s);
}

/* ---- DATA ----------------------------------------------------------------------------- */

static size_t smtpd_data_input(struct smtpd *s, const char *data, size_t len)
{
    struct smtpd_msg *m = s->msg;
    size_t used = 0;
    while (used < len && !s->dec.done) {
        /* Decode in slices so the output (at most twice the input) fits. */
        size_t n = len - used;
        if (n > 32768)
            n = 32768;
        size_t need = m->head + m->len + SMTP_DATA_OUT_MAX(n);
        if (!s->too_big && !s->no_mem && need > s->msg_cap) {
            size_t cap = s->msg_cap * 2;
            while (cap < need)
                cap *= 2;
            /* Never more than the largest message can use, and when doubling would not fit
             * the shared budget, just what this slice needs. */
            size_t ceiling = m->head + (size_t)s->prm->max_size + SMTP_DATA_OUT_MAX(32768);
            if (cap > ceiling && need <= ceiling)
                cap = ceiling;
            if (!smtpd_mem_fits(s, cap) && smtpd_mem_fits(s, need))
                cap = need;
            char *b = smtpd_mem_fits(s, cap) ? realloc(m->buf, cap) : NULL;
            if (!b) {
                /* Over the shared budget (or out of memory): the message is refused with
                 * 452 4.3.1 at its end; what was received is released now. */
                s->no_mem = true;
                free(m->buf);
                m->buf = NULL;
                m->len = 0;
                smtpd_mem_set(s, 0);
            } else {
                m->buf = b;
                smtpd_mem_set(s, cap);
            }
        }
        size_t out_len = 0;
        size_t c;
        if (s->too_big || s->no_mem) {
            static char sink[SMTP_DATA_OUT_MAX(32768)]; /* discarded output, one thread */
            c = smtp_data_feed(&s->dec, data + used, n, sink, &out_len);
        } else {
            c = smtp_data_feed(&s->dec, data + used, n, m->buf + m->head + m->len, &out_len);
            m->len += out_len;
        }
        used += c;
        if (!s->too_big && s->dec.bytes_out > s->prm->max_size) {
            s->too_big = true;
            /* Release what was received; the rest is only scanned for the end of data. */
            free(m->buf);
            m->buf = NULL;
            m->len = 0;
            smtpd_mem_set(s, 0);
        }
    }
    if (!s->dec.done)
        return used;

    s->rej_data++;
    if (s->no_mem && !s->too_big) {
        log_warn("c=%llu reject DATA reason=memory budget=%zu client=[%s]",
                 (unsigned long long)s->id, s->prm->mem_limit, s->client_addr);
        smtpd_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
    } else if (s->too_big) {
        log_info("c=%llu reject DATA reason=size size>%llu client=[%s]", (unsigned long long)s->id,
                 (unsigned long long)s->prm->max_size, s->client_addr);
        smtpd_reply(s, 552, "5.3.4", "Message size exceeds fixed limit of %llu octets",
                    (unsigned long long)s->prm->max_size);
    } else if (s->dec.err == HF_EBARELF) {
        log_info("c=%llu reject DATA reason=bare_lf client=[%s]", (unsigned long long)s->id,
                 s->client_addr);
        smtpd_reply(s, 554, "5.6.0",
                    "Message refused: bare LF or bare CR in message, only CRLF ends a line");
    } else if (s->dec.err == HF_ELONGLINE) {
        log_info("c=%llu reject DATA reason=long_line client=[%s]", (unsigned long long)s->id,
                 s->client_addr);
        smtpd_reply(s, 500, "5.5.2", "Line too long (over %d octets); message refused",
                    SMTP_TEXT_LINE_MAX);
    } else {
        m->eight_bit = s->dec.eight_bit;
        s->rej_data--; /* counted above; only refusals count */
        s->out.act |= SMTPD_ACT_COMMIT;
        smtpd_enter(s, SMTPD_ST_COMMIT);
        return used;
    }
    smtpd_reset_tx(s);
    smtpd_enter(s, SMTPD_ST_READY);
    return used;
}

struct smtpd_msg *smtpd_take_message(struct smtpd *s)
{
    struct smtpd_msg *m = s->msg;
    if (m)
        m->mem = s->msg_cap; /* still counted: the taker subtracts it when buf is freed */
    s->msg = NULL;
    s->msg_cap = 0;
    return m;
}

void smtpd_committed(struct smtpd *s, int status, const char *queue_id)
{
    if (s->st != SMTPD_ST_COMMIT)
        return;
    if (status == 0)
        smtpd_reply(s, 250, "2.0.0", "Ok: queued as %s", queue_id);
    else if (status == -ENOSPC)
        smtpd_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
    else
        smtpd_reply(s, 451, "4.3.0", "Local error in processing, try again later");
    smtpd_reset_tx(s);
    smtpd_enter(s, SMTPD_ST_READY);
}

void smtpd_etrn_done(struct smtpd *s, int code, const char *enh, const char *text)
{
    if (s->st != SMTPD_ST_WAIT)
        return;
    smtpd_reply(s, code, enh, "%s", text);
    smtpd_enter(s, SMTPD_ST_READY);
}

/* ---- framing -------------------------------------------------------------------------- */

/* Handles one complete line (CR LF removed) or reports a framing error. */
static void smtpd_line(struct smtpd *s, const char *line, size_t len, int err)
{
    if (s->st == SMTPD_ST_AUTH) {
        if (err) {
            smtpd_auth_decode_error(s, err == HF_ELONGLINE ? HF_ETOOBIG : HF_ESYNTAX);
            return;
        }
        smtpd_auth_line(s, line, len);
        return;
    }
    if (err) {
        smtpd_reply(s, 500, "5.5.2", "%s",
                    err == HF_ELONGLINE ? "Line too long" : "Bare CR or LF in command line");
        smtpd_bad(s);
        return;
    }
    smtpd_command(s, line, len);
}

static bool smtpd_waiting(const struct smtpd *s)
{
    return s->st == SMTPD_ST_COMMIT || s->st == SMTPD_ST_WAIT || s->st == SMTPD_ST_CLOSED ||
           s->st == SMTPD_ST_TLS;
}

size_t smtpd_input(struct smtpd *s, const char *data, size_t len)
{
    size_t used = 0;
    while (used < len && !smtpd_waiting(s)) {
        if (s->st == SMTPD_ST_DATA) {
            used += smtpd_data_input(s, data + used, len - used);
            continue;
        }
        /* Command mode: only CR LF ends a line (RFC 5321 2.3.8). A bare LF or bare CR is
         * part of the line, which is then answered 500 5.5.2 as a whole and not executed:
         * "MAIL FROM:<a>\nRCPT TO:<b>\r\n" is one bad line, never two commands. */
        const char *p = data + used;
        size_t rem = len - used;
        const char *nl = NULL;
        for (size_t off = 0; off < rem;) {
            const char *lf = memchr(p + off, '\n', rem - off);
            if (!lf)
                break;
            char prev = lf > p             ? lf[-1]
                        : s->line_overflow ? (s->overflow_cr ? '\r' : 0)
                        : s->line_len      ? s->line[s->line_len - 1]
                                           : 0;
            if (prev == '\r') {
                nl = lf;
                break;
            }
            off = (size_t)(lf - p) + 1;
        }
        size_t chunk = nl ? (size_t)(nl - p) + 1 : rem;
        if (chunk)
            s->overflow_cr = p[chunk - 1] == '\r';
        if (s->line_overflow) {
            used += chunk;
            if (nl) {
                s->line_overflow = false;
                smtpd_line(s, NULL, 0, HF_ELONGLINE);
            }
            continue;
        }
        if (s->line_len + chunk > SMTP_CMD_LINE_MAX) {
            /* Over 512 octets with CRLF: drop the line, answer once its end arrives. */
            free(s->line);
            s->line = NULL;
            s->line_len = 0;
            used += chunk;
            if (nl)
                smtpd_line(s, NULL, 0, HF_ELONGLINE);
            else
                s->line_overflow = true;
            continue;
        }
        if (!nl) {
            if (!s->line && !(s->line = malloc(SMTP_CMD_LINE_MAX + 1)))
                return used; /* try again later */
            memcpy(s->line + s->line_len, p, chunk);
            s->line_len += chunk;
            used += chunk;
            continue;
        }
        const char *line = p;
        size_t llen = chunk;
        if (s->line_len) {
            memcpy(s->line + s->line_len, p, chunk);
            s->line_len += chunk;
            line = s->line;
            llen = s->line_len;
        }
        used += chunk;
        int err = 0;
        if (memchr(line, '\r', llen - 2) || memchr(line, '\n', llen - 2))
            err = HF_EBARELF;
        smtpd_line(s, line, err ? 0 : llen - 2, err);
        free(s->line);
        s->line = NULL;
        s->line_len = 0;
    }
    return used;
}
