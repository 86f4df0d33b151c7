/* Inbound SMTP dialogue: AUTH (RFC 4954) PLAIN and LOGIN, offered only over TLS. Decodes
 * the SASL exchange (auth.c) and hands the credentials to the glue, which checks them off
 * the loop and answers with smtpd_auth_done(). */
#include "smtpd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "hf_err.h"
#include "smtpd_int.h"

int smtpd__check_auth(struct smtpd *s, const struct smtp_cmd *c)
{
    if (!s->prm->auth_available) {
        smtpd__reply(s, 502, "5.5.1", "AUTH not available");
        return -EPERM;
    }
    if (!s->tls) {
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
    if (strcasecmp(mech, "PLAIN") != 0 && strcasecmp(mech, "LOGIN") != 0) {
        smtpd__reply(s, 504, "5.5.4", "Unrecognized authentication type (PLAIN and LOGIN offered)");
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
