/* Inside the smtpd module only: what its files share. The layers call downwards only:
 *   smtpd.c (life, framing)  ->  smtpd_verbs.c (verb table)  ->  smtpd_data.c, smtpd_auth.c
 *   ->  smtpd_out.c (replies, state changes).
 * Nothing outside relayd/inbound/smtpd*.c includes this header. */
#ifndef HF_SMTPD_INT_H
#define HF_SMTPD_INT_H

#include <stddef.h>

#include "smtp_cmd.h"
#include "smtpd.h"

/* ---- smtpd_out.c: reply buffer, state changes, bad commands ---- */

/* Every state change goes through here (one debug log line per change). */
void smtpd__enter(struct smtpd *s, enum smtpd_state next);
/* Appends raw reply bytes to s->out; out of memory closes the session. */
void smtpd__out_append(struct smtpd *s, const char *p, size_t n);
/* Appends one single-line reply "code enh text". */
void smtpd__reply(struct smtpd *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Counts a bad command; past max_bad the session is dropped (421 4.7.0). */
void smtpd__bad(struct smtpd *s);

/* ---- smtpd_data.c: the transaction and the DATA phase ---- */

void smtpd__rcpt_free(struct smtpd_rcpt *r);
/* Forgets the transaction (message, declared size) and returns its memory to the budget. */
void smtpd__reset_tx(struct smtpd *s);
int smtpd__check_data(struct smtpd *s, const struct smtp_cmd *c);
void smtpd__apply_data(struct smtpd *s, const struct smtp_cmd *c);
/* Feeds message bytes in SMTPD_ST_DATA; returns how many were consumed. */
size_t smtpd__data_input(struct smtpd *s, const char *data, size_t len);

/* ---- smtpd_auth.c: AUTH (RFC 4954) ---- */

int smtpd__check_auth(struct smtpd *s, const struct smtp_cmd *c);
void smtpd__apply_auth(struct smtpd *s, const struct smtp_cmd *c);
/* A line of the SASL exchange (after 334). */
void smtpd__auth_line(struct smtpd *s, const char *line, size_t len);
/* Ends the SASL exchange with a 500/501 for rc (-ECANCELED, HF_ETOOBIG, other). */
void smtpd__auth_decode_error(struct smtpd *s, int rc);

/* ---- smtpd_verbs.c: the verb table ---- */

/* Parses one command line (CRLF removed) and runs its verb's check and apply. */
void smtpd__command(struct smtpd *s, const char *line, size_t len);

#endif
