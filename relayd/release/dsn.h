/* Delivery status notifications (RFC 3461 6, RFC 3462/6522 multipart/report, RFC 3464
 * message/delivery-status). Pure: the facts of one report in, the complete message
 * (headers and body, CRLF line ends) out. It does not decide whether a report is owed
 * (bounce.c does: NOTIFY, null sender), where it goes, or when; it never reads a clock.
 *
 * The message has three parts:
 *   1. text/plain: what happened, in plain words, one paragraph per recipient (reason,
 *      the host that answered, whether the attempt used TLS);
 *   2. message/delivery-status: per-message fields (Original-Envelope-Id, Reporting-MTA,
 *      Arrival-Date) and a block of per-recipient fields (Original-Recipient, Final-Recipient,
 *      Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until,
 *      and the extension field X-Holdfast-TLS);
 *   3. the returned message (message/rfc822) when RET=FULL or RET is absent and it fits
 *      the size cap, else only its header section (text/rfc822-headers); delay reports
 *      return headers only (the message is still being delivered). */
#ifndef HF_DSN_H
#define HF_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_cmd.h"

/* RFC 3464 2.3.3 action values. */
enum dsn_action {
    DSN_ACT_FAILED = 0,
    DSN_ACT_DELAYED,
    DSN_ACT_DELIVERED,
    DSN_ACT_RELAYED,
    DSN_ACT_EXPANDED,
};

/* One recipient of the report; every pointer borrowed for the call. */
struct dsn_rcpt {
    const char *addr;  /* the recipient as queued (Final-Recipient), required */
    const char *orcpt; /* ORCPT as received: "addr-type;xtext", or NULL/"" */
    enum dsn_action action;
    const char *status;     /* "x.y.z" (RFC 3463), required */
    const char *remote_mta; /* host name of the MTA that answered, or NULL/"" */
    const char *diag;       /* the reply that decided it ("550 5.1.1 No such user"), or a
                               local reason; NULL/"" for none */
    bool diag_smtp;         /* diag is an SMTP reply (type "smtp"), else "X-Holdfast" */
    int64_t last_attempt;   /* unix seconds; 0: never tried (no Last-Attempt-Date) */
    int64_t retry_until;    /* DSN_ACT_DELAYED: when the relay gives up (Will-Retry-Until) */
    const char *tls;        /* how the last attempt was protected ("none",
                               "TLSv1.3,TLS_AES_256_GCM_SHA384,verified"), or NULL: unknown
                               / no connection was made */
};

/* The report; every pointer borrowed for the call. */
struct dsn_report {
    const char *reporting_mta; /* our host name, required */
    const char *sender;        /* the original reverse-path, recipient of the report */
    const char *envid;         /* ENVID as received (xtext), or NULL/"" */
    const char *queue_id;      /* the original message's queue id (for the human part) */
    const char *message_id;    /* the report's Message-ID, "<...>", required */
    const char *boundary;      /* base MIME boundary; made unique against the content */
    int64_t arrival;           /* when the original was accepted (Arrival-Date) */
    int64_t date;              /* the report's Date: */
    const char *orig;          /* the original message as stored (CRLF lines), or NULL */
    size_t orig_len;
    enum smtp_ret ret; /* RET of the original */
    size_t full_max;   /* largest original returned whole (octets) */
    bool utf8;         /* addresses or headers need UTF-8 (SMTPUTF8 original) */
    const struct dsn_rcpt *rcpts;
    size_t nrcpt; /* >= 1; all with actions of one kind (failed / delayed / success) */
};

/* Builds the report as a complete RFC 5322 message, CRLF line ends, into *out (returns
 * owned: free()) of *len octets. *has_8bit tells whether it holds octets above 127 (the
 * returned original did), so it must go with BODY=8BITMIME.
 * Returns 0, -EINVAL (a required field missing, nrcpt 0, a status that is not x.y.z, a
 * header value holding CR or LF), -ENOMEM. */
int dsn_build(const struct dsn_report *r, char **out, size_t *len, bool *has_8bit);

/* Picks the RFC 3463 status for a recipient from the reply that decided it: the enhanced
 * code enh ("5.1.1") when it has one of the right class, else class.0.0 from code (4 or 5
 * hundreds), else dflt. Writes it to out (16 octets). Returns out. */
const char *dsn_status_of(int code, const char *enh, const char *dflt, char out[16]);

/* Writes t as an RFC 5322 date-time in UTC ("Mon, 07 Dec 2026 01:53:02 +0000") into out
 * (40 octets). Returns out. */
const char *dsn_date(int64_t t, char out[40]);

#endif
