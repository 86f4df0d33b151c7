/* Inside the smtpd module only: what its files share. The layers call downwards only:
 *   smtpd.c (life, framing)  ->  smtpd_verbs.c (verb table)  ->  smtpd_bdat.c (BDAT)
 *   ->  smtpd_data.c (transaction, DATA, message content), smtpd_auth.c
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
/* Allocates the message buffer for a new body (DATA or the first BDAT): 0, or -ENOSPC over
 * the shared budget (logged), -ENOMEM. */
int smtpd__msg_start(struct smtpd *s, const char *verb);
/* Feeds in[0..n) (n <= SMTPD_SLICE) to s->dec, growing the message buffer within the budget;
 * past max_size or the budget the output is dropped (s->too_big, s->no_mem). Returns the
 * octets the decoder consumed. */
size_t smtpd__msg_feed(struct smtpd *s, const char *in, size_t n);
/* A complete message that cannot be queued: emits its refusal (452 4.3.1 budget, 552 5.3.4
 * size, 554 5.6.0 bare CR/LF or long line), logs it with verb, and returns true; false when
 * the message is good. */
bool smtpd__msg_refused(struct smtpd *s, const char *verb);
/* The message is complete and good: hand it to the glue for the commit. */
void smtpd__msg_commit(struct smtpd *s);
#define SMTPD_SLICE 32768

/* ---- smtpd_bdat.c: BDAT (RFC 3030) ---- */

void smtpd__apply_bdat(struct smtpd *s, const struct smtp_cmd *c);
/* Consumes chunk octets in SMTPD_ST_CHUNK; returns how many were consumed. */
size_t smtpd__chunk_input(struct smtpd *s, const char *data, size_t len);

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
