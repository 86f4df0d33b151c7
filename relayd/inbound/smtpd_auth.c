/* Inbound SMTP dialogue: AUTH (RFC 4954) PLAIN and LOGIN, offered only over TLS, and on an
 * ODMR listener CRAM-MD5 (RFC 2195, named by RFC 2645), also without TLS since no password
 * crosses the wire. Decodes the SASL exchange (auth.c, cram.h) and hands the credentials to
 * the glue, which checks them (off the loop for scrypt) and answers with smtpd_auth_done(). */
#include "smtpd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "cram.h"
#include "hf_err.h"
#include "smtpd_int.h"

/* CRAM-MD5 is offered here: an ODMR listener with secrets loaded. */
static bool smtpd_cram_offered(const struct smtpd *s)
{
    return s->prm->odmr && s->prm->cram_available;
}

int smtpd__check_auth(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!s->prm->auth_available && !smtpd_cram_offered(s)) {
        smtpd__reply(s, 502, "5.5.1", "AUTH not available");
        return -EPERM;
    }
    if (!s->tls && !smtpd_cram_offered(s)) {
        /* RFC 4954 4: no mechanism that sends passwords in clear without TLS. */
        smtpd__reply(s, 538, "5.7.11",
                     "Encryption required for requested authentication mechanism");
        return -EPERM;
    }
    if (s->st == SMTPD_ST_GREET) {
        smtpd__reply(s, 503, "5.5.1", "Send EHLO first");
        return -EPROTO;
    }
    if (s->user) {
        smtpd__reply(s, 503, "5.5.1", "Already authenticated");
        return -EPROTO;
    }
    if (s->st != SMTPD_ST_READY) {
        smtpd__reply(s, 503, "5.5.1", "AUTH not allowed inside a mail transaction");
        return -EPROTO;
    }
    char mech[32];
    size_t ml = strcspn(c->arg, " ");
    if (ml == 0 || ml >= sizeof(mech)) {
        smtpd__reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        return -EINVAL;
    }
    memcpy(mech, c->arg, ml);
    mech[ml] = '\0';
    bool cram = strcasecmp(mech, "CRAM-MD5") == 0 && smtpd_cram_offered(s);
    bool plain = strcasecmp(mech, "PLAIN") == 0 || strcasecmp(mech, "LOGIN") == 0;
    if (!cram && (!plain || !s->prm->auth_available)) {
        if (smtpd_cram_offered(s) && s->tls && s->prm->auth_available)
            smtpd__reply(s, 504, "5.5.4",
                         "Unrecognized authentication type (CRAM-MD5, PLAIN and LOGIN offered)");
        else if (smtpd_cram_offered(s))
            smtpd__reply(s, 504, "5.5.4", "Unrecognized authentication type (CRAM-MD5 offered%s)",
                         s->prm->auth_available ? "; PLAIN and LOGIN after STARTTLS" : "");
        else
            smtpd__reply(s, 504, "5.5.4",
                         "Unrecognized authentication type (PLAIN and LOGIN offered)");
        return -EINVAL;
    }
    if (plain && !s->tls) {
        /* RFC 4954 4: the password would cross the wire in clear. */
        smtpd__reply(s, 538, "5.7.11",
                     "Encryption required for requested authentication mechanism");
        return -EPERM;
    }
    if (cram && c->arg[ml]) {
        /* RFC 2195: the server speaks first; there is no initial response. */
        smtpd__reply(s, 501, "5.5.4", "CRAM-MD5 takes no initial response");
        return -EINVAL;
    }
    return 0;
}

/* AUTH CRAM-MD5: the challenge "<nonce.id@hostname>" (RFC 2195 2: a unique timestamp-like
 * string in msg-id form), base64 after 334. */
static void smtpd_auth_cram_start(struct smtpd *s)
{
    char b64[sizeof(s->cram_chal) / 3 * 4 + 8];
    snprintf(s->cram_chal, sizeof(s->cram_chal), "<%s.%llu@%.200s>",
             s->nonce[0] ? s->nonce : "0", (unsigned long long)s->id, s->prm->hostname);
    if (auth_b64_encode(s->cram_chal, strlen(s->cram_chal), b64, sizeof(b64)) < 0) {
        smtpd__reply(s, 454, "4.7.0", "Temporary authentication failure");
        return;
    }
    s->auth_mech = 3;
    smtpd__reply(s, 334, NULL, "%s", b64);
    smtpd__enter(s, SMTPD_ST_AUTH);
}

/* The client's CRAM-MD5 answer: base64 of "user SP 32-hex-digest". */
static void smtpd_auth_cram_line(struct smtpd *s, const char *line, size_t len)
{
    char resp[AUTH_FIELD_MAX + 1];
    int rc = auth_login_decode(line, len, resp, sizeof(resp));
    if (rc < 0) {
        smtpd__auth_decode_error(s, rc);
        return;
    }
    const char *user, *hex;
    size_t ulen;
    if (cram_md5_split(resp, strlen(resp), &user, &ulen, &hex) < 0) {
        smtpd__auth_decode_error(s, HF_ESYNTAX);
        return;
    }
    s->auth_mech = 0;
    free(s->out.auth_user);
    free(s->out.auth_pass);
    s->out.auth_user = strndup(user, ulen);
    s->out.auth_pass = strndup(hex, 32);
    if (!s->out.auth_user || !s->out.auth_pass) {
        smtpd__reply(s, 454, "4.7.0", "Temporary authentication failure");
        smtpd__enter(s, SMTPD_ST_READY);
        return;
    }
    s->out.auth_cram = true;
    s->out.act |= SMTPD_ACT_AUTH;
    smtpd__enter(s, SMTPD_ST_WAIT);
}

/* Hands decoded credentials to the glue, which checks them off the loop. */
static void smtpd_auth_submit(struct smtpd *s, const char *user, const char *pass)
{
    free(s->out.auth_user);
    free(s->out.auth_pass);
    s->out.auth_user = strdup(user);
    s->out.auth_pass = strdup(pass);
    s->out.auth_cram = false;
    if (!s->out.auth_user || !s->out.auth_pass) {
        smtpd__reply(s, 454, "4.7.0", "Temporary authentication failure");
        smtpd__enter(s, SMTPD_ST_READY);
        return;
    }
    s->out.act |= SMTPD_ACT_AUTH;
    smtpd__enter(s, SMTPD_ST_WAIT);
}

void smtpd__auth_decode_error(struct smtpd *s, int rc)
{
    if (rc == -ECANCELED)
        smtpd__reply(s, 501, "5.0.0", "Authentication cancelled");
    else if (rc == HF_ETOOBIG)
        smtpd__reply(s, 500, "5.5.6", "Authentication exchange line is too long");
    else
        smtpd__reply(s, 501, "5.5.2", "Cannot decode the response (base64, RFC 4954 4)");
    free(s->auth_login);
    s->auth_login = NULL;
    s->auth_mech = 0;
    smtpd__enter(s, SMTPD_ST_READY);
    smtpd__bad(s);
}

static void smtpd_auth_plain(struct smtpd *s, const char *b64, size_t len)
{
    struct auth_plain ap;
    int rc = (len == 1 && b64[0] == '=') ? HF_ESYNTAX : auth_plain_decode(b64, len, &ap);
    if (rc < 0) {
        smtpd__auth_decode_error(s, rc);
        return;
    }
    if (ap.authzid[0] && strcmp(ap.authzid, ap.authcid) != 0) {
        auth_wipe(&ap, sizeof(ap));
        smtpd__reply(s, 535, "5.7.8", "Authentication credentials invalid");
        smtpd__enter(s, SMTPD_ST_READY);
        return;
    }
    s->auth_mech = 0;
    smtpd_auth_submit(s, ap.authcid, ap.passwd);
    auth_wipe(&ap, sizeof(ap));
}

void smtpd__apply_auth(struct smtpd *s, const struct smtp_cmd *c)
{
    const char *ir = c->arg + strcspn(c->arg, " ");
    while (*ir == ' ')
        ir++;
    if (strncasecmp(c->arg, "CRAM-MD5", 8) == 0) {
        smtpd_auth_cram_start(s);
        return;
    }
    if (strncasecmp(c->arg, "PLAIN", 5) == 0) {
        if (*ir) {
            smtpd_auth_plain(s, ir, strlen(ir));
            return;
        }
        s->auth_mech = 1;
        /* RFC 4954 4: continue-req = "334" SP [base64] CRLF, so the space stays. */
        smtpd__out_append(s, "334 \r\n", 6);
        smtpd__enter(s, SMTPD_ST_AUTH);
        return;
    }
    s->auth_mech = 2;
    free(s->auth_login);
    s->auth_login = NULL;
    if (*ir) {
        char user[AUTH_FIELD_MAX + 1];
        int rc = auth_login_decode(ir, strlen(ir), user, sizeof(user));
        if (rc < 0) {
            smtpd__auth_decode_error(s, rc);
            return;
        }
        s->auth_login = strdup(user);
        smtpd__reply(s, 334, NULL, "%s", AUTH_LOGIN_PASS_PROMPT);
    } else {
        smtpd__reply(s, 334, NULL, "%s", AUTH_LOGIN_USER_PROMPT);
    }
    smtpd__enter(s, SMTPD_ST_AUTH);
}

/* A line of the SASL exchange (after 334). */
void smtpd__auth_line(struct smtpd *s, const char *line, size_t len)
{
    if (s->auth_mech == 3) {
        smtpd_auth_cram_line(s, line, len);
        return;
    }
    if (s->auth_mech == 1) {
        smtpd_auth_plain(s, line, len);
        return;
    }
    char buf[AUTH_FIELD_MAX + 1];
    int rc = auth_login_decode(line, len, buf, sizeof(buf));
    if (rc < 0) {
        smtpd__auth_decode_error(s, rc);
        return;
    }
    if (!s->auth_login) {
        s->auth_login = strdup(buf);
        smtpd__reply(s, 334, NULL, "%s", AUTH_LOGIN_PASS_PROMPT);
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
        smtpd__reply(s, 235, "2.7.0", "Authentication successful");
    } else if (temp_fail) {
        smtpd__reply(s, 454, "4.7.0", "Temporary authentication failure, try again later");
    } else {
        smtpd__reply(s, 535, "5.7.8", "Authentication credentials invalid");
        smtpd__bad(s);
    }
    if (s->st != SMTPD_ST_CLOSED)
        smtpd__enter(s, SMTPD_ST_READY);
}
