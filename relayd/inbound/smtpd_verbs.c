/* Inbound SMTP dialogue: the verb table and the session states it allows.
 *
 * Each verb has a check (syntax, sequence, limits: refuses with a reply and changes nothing)
 * and an apply (effects and the next state). smtpd__command() parses one command line and
 * runs its row; DATA's and AUTH's rows live in smtpd_data.c and smtpd_auth.c. */
#include "smtpd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "hf_err.h"
#include "log.h"
#include "smtp_reply.h"
#include "smtpd_int.h"

/* ---- verbs ---------------------------------------------------------------------------- */

#define ST(x)      (1u << SMTPD_ST_##x)
#define ST_SESSION (ST(GREET) | ST(READY) | ST(MAIL) | ST(RCPT))
/* Between BDAT chunks (RFC 3030 2) the transaction's content has begun: the envelope is
 * fixed (no MAIL, RCPT), nothing that needs a transaction-free session (ETRN, STARTTLS,
 * AUTH); RSET and EHLO end it, BDAT goes on, DATA is answered 503 by its check. */
#define ST_ANY (ST_SESSION | ST(BDAT))

struct smtpd_verb {
    enum smtp_verb verb;
    unsigned allowed;
    int (*check)(struct smtpd *, const struct smtp_cmd *);
    void (*apply)(struct smtpd *, const struct smtp_cmd *);
};

static int smtpd_check_helo(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!c->arg[0]) {
        smtpd__reply(s, 501, "5.5.4", "Syntax: %s hostname", smtp_cmd_verb_name(c->verb));
        return -EINVAL;
    }
    if (strlen(c->arg) > 255 || strchr(c->arg, ' ')) {
        smtpd__reply(s, 501, "5.5.4", "Invalid domain name");
        return -EINVAL;
    }
    return 0;
}

/* EHLO's keywords on an ODMR listener (RFC 2645 4): what it takes is AUTH and ATRN; no
 * mail is accepted there, so no SIZE, 8BITMIME, CHUNKING, DSN or ETRN. */
static void smtpd_odmr_ehlo(struct smtpd *s, const char **ext, size_t *n)
{
    ext[(*n)++] = "ENHANCEDSTATUSCODES";
    if (s->prm->tls_available && !s->tls)
        ext[(*n)++] = "STARTTLS";
    if (!s->user) {
        bool plain = s->prm->auth_available && s->tls;
        if (s->prm->cram_available && plain)
            ext[(*n)++] = "AUTH CRAM-MD5 PLAIN LOGIN";
        else if (s->prm->cram_available)
            ext[(*n)++] = "AUTH CRAM-MD5";
        else if (plain)
            ext[(*n)++] = "AUTH PLAIN LOGIN";
    }
    ext[(*n)++] = "ATRN";
    ext[(*n)++] = "HELP";
}

static void smtpd_apply_helo(struct smtpd *s, const struct smtp_cmd *c)
{
    free(s->helo);
    s->helo = strdup(c->arg);
    smtpd__reset_tx(s);
    s->esmtp = c->verb == SMTP_V_EHLO;
    if (!s->esmtp) {
        smtpd__reply(s, 250, NULL, "%s", s->prm->hostname);
    } else {
        char line[300];
        const char *ext[12];
        char size[40];
        size_t n = 0;
        snprintf(size, sizeof(size), "SIZE %llu", (unsigned long long)s->prm->max_size);
        if (s->prm->odmr) {
            smtpd_odmr_ehlo(s, ext, &n);
            goto send;
        }
        ext[n++] = "PIPELINING";
        ext[n++] = size;
        ext[n++] = "8BITMIME";
        /* RFC 3030: BDAT for 7BIT and 8BITMIME bodies; BINARYMIME is not offered. */
        ext[n++] = "CHUNKING";
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
    send:;
        int l = smtp_reply_fmt(line, sizeof(line), 250, NULL, true, "%s Hello %.200s [%s]",
                               s->prm->hostname, s->helo ? s->helo : "", s->client_addr);
        if (l > 0)
            smtpd__out_append(s, line, (size_t)l);
        for (size_t i = 0; i < n; i++) {
            l = smtp_reply_fmt(line, sizeof(line), 250, NULL, i + 1 < n, "%s", ext[i]);
            if (l > 0)
                smtpd__out_append(s, line, (size_t)l);
        }
    }
    smtpd__enter(s, SMTPD_ST_READY);
}

static int smtpd_check_mail(struct smtpd *s, const struct smtp_cmd *c)
{
    if (s->st == SMTPD_ST_GREET) {
        smtpd__reply(s, 503, "5.5.1", "Send HELO or EHLO first");
        return -EPROTO;
    }
    if (s->st != SMTPD_ST_READY) {
        smtpd__reply(s, 503, "5.5.1", "Nested MAIL command");
        return -EPROTO;
    }
    bool params = c->has_size || c->body != SMTP_BODY_NONE || c->smtputf8 ||
                  c->ret != SMTP_RET_NONE || c->envid[0];
    if (params && !s->esmtp) {
        smtpd__reply(s, 555, "5.5.4", "MAIL parameters need EHLO");
        return -EINVAL;
    }
    if (c->body == SMTP_BODY_BINARYMIME) {
        /* RFC 3030 3: only when BINARYMIME is offered. It is not: a binary body could not be
         * handed on to a next hop that takes DATA only. */
        smtpd__reply(s, 555, "5.5.4", "BODY=BINARYMIME not supported (7BIT and 8BITMIME are)");
        return -EINVAL;
    }
    if (c->has_size && c->size > s->prm->max_size) {
        smtpd__reply(s, 552, "5.3.4", "Message size exceeds fixed limit of %llu octets",
                     (unsigned long long)s->prm->max_size);
        return -EFBIG;
    }
    return 0;
}

static void smtpd_apply_mail(struct smtpd *s, const struct smtp_cmd *c)
{
    smtpd__reset_tx(s);
    struct smtpd_msg *m = calloc(1, sizeof(*m));
    if (!m || !(m->sender = strdup(c->path_null ? "" : c->path)) ||
        (c->envid[0] && !(m->envid = strdup(c->envid)))) {
        smtpd_msg_free(m);
        smtpd__reply(s, 451, "4.3.0", "Out of memory, try again later");
        return;
    }
    m->smtputf8 = c->smtputf8;
    m->ret = c->ret;
    s->msg = m;
    s->declared_size = c->has_size ? c->size : 0;
    smtpd__reply(s, 250, "2.1.0", "Ok");
    smtpd__enter(s, SMTPD_ST_MAIL);
}

/* True if the authenticated user may relay: submission_users lists the user, or is "*".
 * Empty means nobody: relaying is a right given per user, so adding an account (a fetchd
 * user that only releases its domains) never makes the relay open to it. */
static bool smtpd_may_submit(const struct smtpd *s)
{
    const char *list = s->prm->submission_users;
    if (!list)
        return false;
    size_t ul = strlen(s->user);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t wl = strcspn(p, " ,");
        if (wl == 1 && *p == '*')
            return true;
        if (wl && wl == ul && strncmp(p, s->user, ul) == 0)
            return true;
        p += wl;
    }
    return false;
}

static int smtpd_check_rcpt(struct smtpd *s, const struct smtp_cmd *c)
{
    if (s->st != SMTPD_ST_MAIL && s->st != SMTPD_ST_RCPT) {
        smtpd__reply(s, 503, "5.5.1", "Need MAIL before RCPT");
        return -EPROTO;
    }
    if ((c->notify || c->orcpt[0]) && !s->esmtp) {
        smtpd__reply(s, 555, "5.5.4", "RCPT parameters need EHLO");
        return -EINVAL;
    }
    if (s->msg->nrcpt >= s->prm->max_rcpts) {
        smtpd__reply(s, 452, "4.5.3", "Too many recipients");
        return -E2BIG;
    }
    if (strcasecmp(c->path, "postmaster") == 0) {
        smtpd__reply(s, 550, "5.7.1", "<%s>: this relay has no local mailboxes", c->path);
        return -EPERM;
    }
    /* The parser checked the syntax and filled c->mbox (not for Postmaster, handled above). */
    const struct addr_mailbox *mb = &c->mbox;
    if (mb->utf8 && !s->msg->smtputf8) {
        smtpd__reply(s, 553, "5.6.7", "Non-ASCII recipient address needs SMTPUTF8");
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
        if (s->prm->primary_up && s->prm->primary_up(s->prm->primary_arg, mb->domain)) {
            s->rej_rcpt++;
            smtpd_note(s, "reason=primary_up");
            smtpd__reply(s, 451, "4.7.1", "primary MX is up, deliver there");
            return -EAGAIN;
        }
        return 0;
    case POLICY_UNKNOWN_USER:
        smtpd_note(s, "reason=unknown_user");
        smtpd__reply(s, 550, "5.1.1", "<%s>: Recipient address rejected: user unknown", c->path);
        return -ENOENT;
    case POLICY_RELAY_TRICK:
        smtpd_note(s, "reason=relay_trick");
        smtpd__reply(s, 550, "5.7.1",
                     "<%s>: Relaying denied: %%, ! and quoted @ in local parts are not relayed",
                     c->path);
        return -EPERM;
    case POLICY_RELAY_DENIED:
    default:
        if (s->user && s->prm->submission && !mb->has_relay_chars && !mb->domain_literal)
            smtpd_note(s, "reason=relay_denied why=user_not_in_submission_users");
        else
            smtpd_note(s, "reason=relay_denied");
        smtpd__reply(s, 550, "5.7.1", "<%s>: Relaying denied", c->path);
        return -EPERM;
    }
}

static void smtpd_apply_rcpt(struct smtpd *s, const struct smtp_cmd *c)
{
    struct smtpd_msg *m = s->msg;
    /* A duplicate recipient is accepted once (RFC 5321 3.3 lets the server drop it). */
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (strcmp(m->rcpts[i].addr, c->path) == 0) {
            smtpd__reply(s, 250, "2.1.5", "Ok");
            smtpd__enter(s, SMTPD_ST_RCPT);
            return;
        }
    }
    struct smtpd_rcpt *v = realloc(m->rcpts, (m->nrcpt + 1) * sizeof(*v));
    if (!v) {
        smtpd__reply(s, 451, "4.3.0", "Out of memory, try again later");
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
        smtpd__rcpt_free(r);
        smtpd__reply(s, 451, "4.3.0", "Out of memory, try again later");
        return;
    }
    m->nrcpt++;
    smtpd__reply(s, 250, "2.1.5", "Ok");
    smtpd__enter(s, SMTPD_ST_RCPT);
}

static int smtpd_check_noarg(struct smtpd *s, const struct smtp_cmd *c)
{
    if (c->arg[0]) {
        smtpd__reply(s, 501, "5.5.4", "%s takes no argument", smtp_cmd_verb_name(c->verb));
        return -EINVAL;
    }
    return 0;
}

static void smtpd_apply_rset(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    smtpd__reset_tx(s);
    smtpd__reply(s, 250, "2.0.0", "Ok");
    if (s->st != SMTPD_ST_GREET)
        smtpd__enter(s, SMTPD_ST_READY);
}

static void smtpd_apply_noop(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    smtpd__reply(s, 250, "2.0.0", "Ok");
}

static void smtpd_apply_quit(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    smtpd_refuse(s, 221, "2.0.0", "Bye");
}

static int smtpd_check_vrfy(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!c->arg[0]) {
        smtpd__reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return -EINVAL;
    }
    return 0;
}

static void smtpd_apply_vrfy(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    /* Never a user list (RFC 5321 3.5.3, 7.3). */
    smtpd__reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
}

/* HELP topics: the commands this session implements, with their syntax (RFC 5321 4.1.1.8). */
static const struct {
    enum smtp_verb verb;
    const char *syntax;
} smtpd_help_topics[] = {
    {SMTP_V_HELO, "HELO hostname"},
    {SMTP_V_EHLO, "EHLO hostname"},
    {SMTP_V_MAIL, "MAIL FROM:<sender> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8] [RET=FULL|HDRS] "
                  "[ENVID=xtext]"},
    {SMTP_V_RCPT, "RCPT TO:<recipient> [NOTIFY=...] [ORCPT=type;xtext]"},
    {SMTP_V_DATA, "DATA, then the message, ended by <CRLF>.<CRLF>"},
    {SMTP_V_BDAT, "BDAT size [LAST], then exactly size octets of the message (RFC 3030)"},
    {SMTP_V_RSET, "RSET"},
    {SMTP_V_NOOP, "NOOP"},
    {SMTP_V_QUIT, "QUIT"},
    {SMTP_V_VRFY, "VRFY address (answered 252: no user list)"},
    {SMTP_V_HELP, "HELP [command]"},
    {SMTP_V_ETRN, "ETRN domain | @domain | #queue (RFC 1985)"},
    {SMTP_V_STARTTLS, "STARTTLS (RFC 3207)"},
    {SMTP_V_AUTH, "AUTH PLAIN|LOGIN [initial-response], over TLS (RFC 4954)"},
    {SMTP_V_ATRN, "ATRN [domain[,domain...]], after AUTH: your held mail comes over this "
                  "connection (RFC 2645)"},
};

/* Is the verb implemented in this session (ETRN, STARTTLS and AUTH as configured)? */
static bool smtpd_help_offered(const struct smtpd *s, enum smtp_verb v)
{
    if (s->prm->odmr) {
        switch (v) {
        case SMTP_V_MAIL:
        case SMTP_V_RCPT:
        case SMTP_V_DATA:
        case SMTP_V_BDAT:
        case SMTP_V_ETRN:
            return false;
        case SMTP_V_AUTH:
            return s->prm->cram_available || (s->prm->auth_available && s->tls);
        default:
            break;
        }
    }
    switch (v) {
    case SMTP_V_ATRN:
        return s->prm->odmr;
    case SMTP_V_ETRN:
        return s->prm->etrn;
    case SMTP_V_STARTTLS:
        return s->prm->tls_available && !s->tls;
    case SMTP_V_AUTH:
        return s->prm->auth_available && s->tls;
    default:
        return true;
    }
}

static void smtpd_apply_help(struct smtpd *s, const struct smtp_cmd *c)
{
    size_t n = sizeof(smtpd_help_topics) / sizeof(smtpd_help_topics[0]);
    if (c->arg[0]) {
        struct smtp_cmd topic;
        (void)smtp_cmd_parse(c->arg, strcspn(c->arg, " "), &topic);
        for (size_t i = 0; i < n; i++) {
            if (smtpd_help_topics[i].verb == topic.verb && smtpd_help_offered(s, topic.verb)) {
                smtpd__reply(s, 214, "2.0.0", "%s", smtpd_help_topics[i].syntax);
                return;
            }
        }
        /* RFC 5321 4.3.2: HELP may be answered 504 (parameter not implemented). */
        smtpd__reply(s, 504, "5.5.4", "No help for that; HELP alone lists the commands");
        return;
    }
    char list[200] = "";
    size_t l = 0;
    for (size_t i = 0; i < n; i++)
        if (smtpd_help_offered(s, smtpd_help_topics[i].verb) && l < sizeof(list))
            l += (size_t)snprintf(list + l, sizeof(list) - l, " %s",
                                  smtp_cmd_verb_name(smtpd_help_topics[i].verb));
    smtpd__reply(s, 214, "2.0.0", "Commands:%s; HELP command for its syntax", list);
}

static void smtpd_apply_refused(struct smtpd *s, const struct smtp_cmd *c)
{
    switch (c->verb) {
    case SMTP_V_TURN:
        /* RFC 2645 1: TURN hands the queue to whoever asks. */
        smtpd__reply(s, 502, "5.5.1",
                     "TURN refused: it gives mail to whoever asks; use ETRN, or AUTH and ATRN "
                     "(RFC 2645)");
        break;
    case SMTP_V_EXPN:
        smtpd__reply(s, 502, "5.5.1", "EXPN not available");
        break;
    case SMTP_V_SEND:
    case SMTP_V_SOML:
    case SMTP_V_SAML:
        /* RFC 821 3.5 commands (delivery to a terminal), dropped by RFC 2821: known, so
         * 502 "not implemented" (RFC 5321 4.2.4), not 500 "unrecognized". */
        smtpd__reply(s, 502, "5.5.1", "%s not implemented (RFC 821 terminal delivery)",
                     smtp_cmd_verb_name(c->verb));
        break;
    default:
        smtpd__reply(s, 502, "5.5.1", "%s not available", smtp_cmd_verb_name(c->verb));
        break;
    }
}

static int smtpd_check_starttls(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!s->prm->tls_available) {
        smtpd__reply(s, 502, "5.5.1", "STARTTLS not available");
        return -EPERM;
    }
    if (s->tls) {
        smtpd__reply(s, 503, "5.5.1", "TLS already active");
        return -EPROTO;
    }
    if (c->arg[0]) {
        smtpd__reply(s, 501, "5.5.4", "STARTTLS takes no argument");
        return -EINVAL;
    }
    return 0;
}

static void smtpd_apply_starttls(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    smtpd__reply(s, 220, "2.0.0", "Ready to start TLS");
    /* Whatever the client sent after STARTTLS in the same packet is discarded by the glue
     * (RFC 3207 5, CVE-2011-0411): smtpd stops consuming input here. */
    free(s->line);
    s->line = NULL;
    s->line_len = 0;
    s->line_overflow = false;
    s->out.act |= SMTPD_ACT_STARTTLS;
    smtpd__enter(s, SMTPD_ST_TLS);
}

void smtpd_tls_ready(struct smtpd *s, int status, const char *info)
{
    if (s->st != SMTPD_ST_TLS)
        return;
    if (status < 0) {
        s->out.act |= SMTPD_ACT_CLOSE;
        smtpd__enter(s, SMTPD_ST_CLOSED);
        return;
    }
    /* RFC 3207 4.2: discard all knowledge from the client; it must say EHLO again. */
    smtpd__reset_tx(s);
    free(s->helo);
    s->helo = NULL;
    s->esmtp = false;
    s->tls = true;
    snprintf(s->tls_info, sizeof(s->tls_info), "%s", info ? info : "");
    smtpd__enter(s, SMTPD_ST_GREET);
}

static int smtpd_check_etrn(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!s->prm->etrn) {
        smtpd__reply(s, 502, "5.5.1", "ETRN not available");
        return -EPERM;
    }
    if (s->st == SMTPD_ST_GREET) {
        smtpd__reply(s, 503, "5.5.1", "Send HELO or EHLO first");
        return -EPROTO;
    }
    if (s->st != SMTPD_ST_READY) { /* RFC 1985 5: not inside a mail transaction */
        smtpd__reply(s, 503, "5.5.1", "ETRN not allowed inside a mail transaction");
        return -EPROTO;
    }
    if (!c->arg[0] || strchr(c->arg, ' ')) {
        smtpd__reply(s, 501, "5.5.4", "Syntax: ETRN domain | @domain | #queue");
        return -EINVAL;
    }
    return 0;
}

static void smtpd_apply_etrn(struct smtpd *s, const struct smtp_cmd *c)
{
    snprintf(s->out.etrn_arg, sizeof(s->out.etrn_arg), "%s", c->arg);
    s->out.act |= SMTPD_ACT_ETRN;
    smtpd__enter(s, SMTPD_ST_WAIT);
}

/* ATRN (RFC 2645 4.2): only on an ODMR listener, after EHLO and AUTH, outside a
 * transaction. The domains are checked by the glue, which answers with smtpd_atrn_done. */
static int smtpd_check_atrn(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    if (!s->prm->odmr) {
        if (s->prm->atrn_where)
            smtpd__reply(s, 502, "5.5.1",
                         "ATRN is served on the ODMR port %s, not here (RFC 2645)",
                         s->prm->atrn_where);
        else
            smtpd__reply(s, 502, "5.5.1",
                         "ATRN not offered: this relay has no ODMR listener; use ETRN");
        return -EPERM;
    }
    if (s->st == SMTPD_ST_GREET) {
        smtpd__reply(s, 503, "5.5.1", "Send EHLO first");
        return -EPROTO;
    }
    if (s->st != SMTPD_ST_READY) {
        smtpd__reply(s, 503, "5.5.1", "ATRN not allowed inside a mail transaction");
        return -EPROTO;
    }
    if (!s->user) {
        smtpd__reply(s, 530, "5.7.0", "Authentication required");
        return -EPERM;
    }
    return 0;
}

static void smtpd_apply_atrn(struct smtpd *s, const struct smtp_cmd *c)
{
    snprintf(s->out.etrn_arg, sizeof(s->out.etrn_arg), "%s", c->arg);
    s->out.act |= SMTPD_ACT_ATRN;
    smtpd__enter(s, SMTPD_ST_WAIT);
}

void smtpd_atrn_done(struct smtpd *s, int code, const char *enh, const char *text)
{
    if (s->st != SMTPD_ST_WAIT)
        return;
    smtpd__reply(s, code, enh, "%s", text);
    if (code == 250) {
        s->out.act |= SMTPD_ACT_REVERSE;
        smtpd__enter(s, SMTPD_ST_REVERSED);
        return;
    }
    if (s->st != SMTPD_ST_CLOSED)
        smtpd__enter(s, SMTPD_ST_READY);
}

static const struct smtpd_verb smtpd_verbs[] = {
    {SMTP_V_HELO, ST_ANY, smtpd_check_helo, smtpd_apply_helo},
    {SMTP_V_EHLO, ST_ANY, smtpd_check_helo, smtpd_apply_helo},
    {SMTP_V_MAIL, ST_SESSION, smtpd_check_mail, smtpd_apply_mail},
    {SMTP_V_RCPT, ST_SESSION, smtpd_check_rcpt, smtpd_apply_rcpt},
    {SMTP_V_DATA, ST_ANY, smtpd__check_data, smtpd__apply_data},
    {SMTP_V_BDAT, ST_ANY, NULL, smtpd__apply_bdat}, /* refusals wait for the chunk's end */
    {SMTP_V_RSET, ST_ANY, smtpd_check_noarg, smtpd_apply_rset},
    {SMTP_V_NOOP, ST_ANY, NULL, smtpd_apply_noop},
    {SMTP_V_QUIT, ST_ANY, NULL, smtpd_apply_quit},
    {SMTP_V_VRFY, ST_ANY, smtpd_check_vrfy, smtpd_apply_vrfy},
    {SMTP_V_HELP, ST_ANY, NULL, smtpd_apply_help},
    {SMTP_V_ETRN, ST_SESSION, smtpd_check_etrn, smtpd_apply_etrn},
    {SMTP_V_EXPN, ST_ANY, NULL, smtpd_apply_refused},
    {SMTP_V_TURN, ST_ANY, NULL, smtpd_apply_refused},
    {SMTP_V_ATRN, ST_ANY, smtpd_check_atrn, smtpd_apply_atrn},
    {SMTP_V_SEND, ST_ANY, NULL, smtpd_apply_refused},
    {SMTP_V_SOML, ST_ANY, NULL, smtpd_apply_refused},
    {SMTP_V_SAML, ST_ANY, NULL, smtpd_apply_refused},
    {SMTP_V_STARTTLS, ST_SESSION, smtpd_check_starttls, smtpd_apply_starttls},
    {SMTP_V_AUTH, ST_SESSION, smtpd__check_auth, smtpd__apply_auth},
};

static bool smtpd_line_is_ascii(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] >= 0x80)
            return false;
    return true;
}

void smtpd__command(struct smtpd *s, const char *line, size_t len)
{
    struct smtp_cmd c;
    int rc = smtp_cmd_parse(line, len, &c);
    s->verb = c.verb != SMTP_V_UNKNOWN ? smtp_cmd_verb_name(c.verb) : "UNKNOWN";
    if (rc < 0) {
        switch (rc) {
        case HF_ELONGLINE:
        case HF_EBARELF:
            smtpd__reply(s, 500, "5.5.2", "%s",
                         rc == HF_ELONGLINE ? "Line too long" : "Bare CR or LF in command line");
            break;
        case HF_EUNKNOWN:
            smtpd__reply(s, 500, "5.5.1", "Command unrecognized");
            break;
        case HF_EPARAM:
            smtpd__reply(s, 555, "5.5.4", "Unsupported %s parameter", smtp_cmd_verb_name(c.verb));
            break;
        case HF_EADDR:
            if (c.verb == SMTP_V_MAIL && !smtpd_line_is_ascii(line, len))
                smtpd__reply(s, 553, "5.6.7", "Non-ASCII sender address needs SMTPUTF8");
            else if (c.verb == SMTP_V_MAIL)
                smtpd__reply(s, 501, "5.1.7", "Bad sender address syntax");
            else
                smtpd__reply(s, 501, "5.1.3", "Bad recipient address syntax");
            break;
        default:
            if (c.verb == SMTP_V_BDAT) /* no size known: nothing after the line is skipped */
                smtpd__reply(s, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
            else
                smtpd__reply(s, 501, "5.5.4", "Syntax error in %s", smtp_cmd_verb_name(c.verb));
            break;
        }
        smtpd__bad(s);
        return;
    }
    if (s->prm->odmr && (c.verb == SMTP_V_MAIL || c.verb == SMTP_V_RCPT ||
                         c.verb == SMTP_V_DATA || c.verb == SMTP_V_BDAT || c.verb == SMTP_V_ETRN)) {
        /* RFC 2645: the ODMR port releases mail to its owner; it takes none. */
        smtpd__reply(s, 502, "5.5.1",
                     "%s not accepted on the ODMR port: AUTH, then ATRN (RFC 2645); send mail "
                     "to the SMTP port",
                     smtp_cmd_verb_name(c.verb));
        smtpd__bad(s);
        return;
    }
    for (size_t i = 0; i < sizeof(smtpd_verbs) / sizeof(smtpd_verbs[0]); i++) {
        const struct smtpd_verb *v = &smtpd_verbs[i];
        if (v->verb != c.verb)
            continue;
        if (!(v->allowed & (1u << s->st))) {
            smtpd__reply(s, 503, "5.5.1", "Bad sequence of commands");
            smtpd__bad(s);
            return;
        }
        if (c.verb == SMTP_V_MAIL || c.verb == SMTP_V_RCPT)
            s->cur_path = c.path; /* for the refusal's log line; c lives until we return */
        if (v->check) {
            int rc2 = v->check(s, &c);
            if (rc2 < 0) {
                /* Refused recipients and senders are ordinary in mail; only protocol
                 * mistakes (sequence, syntax) count towards max_bad_commands. */
                if ((c.verb != SMTP_V_RCPT && c.verb != SMTP_V_MAIL) || rc2 == -EPROTO ||
                    rc2 == -EINVAL || rc2 == HF_EADDR)
                    smtpd__bad(s);
                s->cur_path = NULL;
                return;
            }
        }
        v->apply(s, &c);
        s->cur_path = NULL;
        return;
    }
    smtpd__reply(s, 500, "5.5.1", "Command unrecognized");
    smtpd__bad(s);
}

void smtpd_etrn_done(struct smtpd *s, int code, const char *enh, const char *text)
{
    if (s->st != SMTPD_ST_WAIT)
        return;
    smtpd__reply(s, code, enh, "%s", text);
    smtpd__enter(s, SMTPD_ST_READY);
}
