/* Inside the smtpc module only (lib/smtpc*.c): what its files share. Calls go downwards:
 *   smtpc.c (session, reply door, set-up)  ->  smtpc_deliver.c, smtpc_etrn.c
 *   ->  smtpc_out.c (output, pending replies, results, abort). */
#ifndef HF_SMTPC_INT_H
#define HF_SMTPC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_reply.h"
#include "smtpc.h"

#define SMTPC_CMD_MAX 2048 /* longest command we build: 512 plus extension parameters */

/* What a pending reply answers; smtpc.c's smtpc_kinds[] maps each to its handler. */
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
    SMTPC_K_BDAT, /* idx 0: a chunk, 1: the LAST one */
    SMTPC_K_ETRN,
    SMTPC_K_QUIT,
    SMTPC_K_COUNT,
};

/* ---- smtpc_out.c ---- */

/* The log id ("c=17", or "c=?"). */
const char *smtpc__id(const struct smtpc *c);
/* The one door for state changes. */
void smtpc__enter(struct smtpc *c, enum smtpc_state next);
enum smtpc_outcome smtpc__outcome_of(int code);
void smtpc__result_reply(struct smtpc_result *res, enum smtpc_outcome o,
                         const struct smtp_reply *r);
void smtpc__result_local(struct smtpc_result *res, enum smtpc_outcome o, const char *enh,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Makes room for n more output octets. Returns 0 or -ENOMEM. */
int smtpc__reserve(struct smtpc *c, size_t n);
int smtpc__pend_push(struct smtpc *c, enum smtpc_kind kind, uint32_t idx);
struct smtpc_pend smtpc__pend_pop(struct smtpc *c);
/* Appends the command line (CRLF added) and expects its reply. */
int smtpc__send_line(struct smtpc *c, enum smtpc_kind kind, uint32_t idx, const char *line,
                     size_t len);
int smtpc__send(struct smtpc *c, enum smtpc_kind kind, uint32_t idx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The current message's results are final: MSG_DONE. */
void smtpc__msg_end(struct smtpc *c);
/* The dialogue broke: every recipient not yet final is deferred with why; CLOSE. */
void smtpc__abort(struct smtpc *c, const struct smtpc_result *why);
void smtpc__abort_local(struct smtpc *c, const char *enh, const char *what);
/* The session cannot go on, but the server is in step: record why, QUIT politely. */
int smtpc__session_fail(struct smtpc *c, const struct smtpc_result *why);
int smtpc__session_fail_reply(struct smtpc *c, const struct smtp_reply *r);
/* True if s can go into a command line (for a parameter value: an esmtp-value). */
bool smtpc__is_clean(const char *s, bool param);

/* ---- smtpc_deliver.c: reply handlers of a transaction ---- */

int smtpc__on_rset(struct smtpc *c, const struct smtp_reply *r, uint32_t idx);
int smtpc__on_mail(struct smtpc *c, const struct smtp_reply *r, uint32_t idx);
int smtpc__on_rcpt(struct smtpc *c, const struct smtp_reply *r, uint32_t idx);
int smtpc__on_data(struct smtpc *c, const struct smtp_reply *r, uint32_t idx);
int smtpc__on_dot(struct smtpc *c, const struct smtp_reply *r, uint32_t idx);
int smtpc__on_bdat(struct smtpc *c, const struct smtp_reply *r, uint32_t idx);

/* ---- smtpc_etrn.c ---- */

/* Sends the next ETRN argument, or QUIT after the last. */
int smtpc__etrn_next(struct smtpc *c);
int smtpc__on_etrn(struct smtpc *c, const struct smtp_reply *r, uint32_t idx);

#endif
