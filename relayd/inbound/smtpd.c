/* Inbound SMTP dialogue: the session's life (init, close) and command-line framing; the
 * entry point smtpd_input() hands lines to the verb table (smtpd_verbs.c), SASL lines to
 * smtpd_auth.c, message bytes to the DATA phase (smtpd_data.c) and BDAT chunks, counted, to
 * smtpd_bdat.c. Replies and state
 * changes go through smtpd_out.c. */
#include "smtpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_err.h"
#include "smtpd_int.h"

void smtpd_init(struct smtpd *s, const struct smtpd_params *prm, const struct policy *policy,
                uint64_t id, const char *client_addr)
{
    memset(s, 0, sizeof(*s));
    s->prm = prm;
    s->policy = policy;
    s->id = id;
    snprintf(s->client_addr, sizeof(s->client_addr), "%s", client_addr ? client_addr : "");
    s->st = SMTPD_ST_GREET;
    s->verb = "CONNECT";
    smtpd__reply(s, 220, NULL, "%s ESMTP holdfast", prm->hostname);
}

void smtpd_close(struct smtpd *s)
{
    smtpd__reset_tx(s);
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

/* ---- framing -------------------------------------------------------------------------- */

/* Handles one complete line (CR LF removed) or reports a framing error. */
static void smtpd_line(struct smtpd *s, const char *line, size_t len, int err)
{
    if (s->st == SMTPD_ST_AUTH) {
        if (err) {
            smtpd__auth_decode_error(s, err == HF_ELONGLINE ? HF_ETOOBIG : HF_ESYNTAX);
            return;
        }
        smtpd__auth_line(s, line, len);
        return;
    }
    if (err) {
        s->verb = "UNKNOWN"; /* the line was not parsed: its verb is not known */
        smtpd__reply(s, 500, "5.5.2", "%s",
                     err == HF_ELONGLINE ? "Line too long" : "Bare CR or LF in command line");
        smtpd__bad(s);
        return;
    }
    smtpd__command(s, line, len);
}

static bool smtpd_waiting(const struct smtpd *s)
{
    return s->st == SMTPD_ST_COMMIT || s->st == SMTPD_ST_WAIT || s->st == SMTPD_ST_CLOSED ||
           s->st == SMTPD_ST_TLS || s->st == SMTPD_ST_REVERSED;
}

size_t smtpd_input(struct smtpd *s, const char *data, size_t len)
{
    size_t used = 0;
    while (used < len && !smtpd_waiting(s)) {
        if (s->st == SMTPD_ST_DATA) {
            used += smtpd__data_input(s, data + used, len - used);
            continue;
        }
        if (s->st == SMTPD_ST_CHUNK) {
            used += smtpd__chunk_input(s, data + used, len - used);
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
        if (s->line_len + chunk > SMTP_CMD_LINE_LONGEST) {
            /* Longer than any command may be (512 octets with CRLF, more for MAIL and RCPT:
             * smtp_cmd.h): drop the line, answer once its end arrives. The parser applies
             * the verb's own limit to what is kept. */
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
            if (!s->line && !(s->line = malloc(SMTP_CMD_LINE_LONGEST + 1)))
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
            err = llen > SMTP_CMD_LINE_MAX ? HF_ELONGLINE : HF_EBARELF; /* length first */
        else if (s->st == SMTPD_ST_AUTH && llen > SMTP_CMD_LINE_MAX)
            err = HF_ELONGLINE; /* a SASL response is an ordinary line (RFC 4954 4) */
        smtpd_line(s, line, err ? 0 : llen - 2, err);
        free(s->line);
        s->line = NULL;
        s->line_len = 0;
    }
    return used;
}
