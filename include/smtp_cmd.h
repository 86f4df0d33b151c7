/* SMTP command grammar (RFC 5321 4.1, with ESMTP parameters of RFC 1870, 6152, 6531,
 * 3461, 1985, 2645, 3207, 4954). Pure: a line in, a parsed command out.
 *
 * The caller frames lines; this module checks what is inside one. It does not decide
 * whether a verb is allowed in the session's state, nor whether a recipient is ours. */
#ifndef HF_SMTP_CMD_H
#define HF_SMTP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define SMTP_CMD_LINE_MAX 512 /* octets including CRLF, RFC 5321 4.5.3.1.4 */
/* RFC 5321 4.5.3.1.4: "SMTP extensions may be used to increase this limit", and the ones we
 * offer do so for the lines that carry their parameters. MAIL: SIZE 26 octets (RFC 1870 3),
 * BODY 16 (RFC 6152 2), SMTPUTF8 10 (RFC 6531 3.1), AUTH= 500 (RFC 4954 5), and RET and ENVID
 * (RFC 3461 4.3, 4.4: " RET=HDRS" 9, " ENVID=" 7 + an ENVID of 100 characters, 300 as
 * xtext). RCPT: NOTIFY and ORCPT 500 (RFC 3461 4). Every other line keeps 512. */
#define SMTP_MAIL_LINE_MAX    (SMTP_CMD_LINE_MAX + 26 + 16 + 10 + 500 + 9 + 7 + 300)
#define SMTP_RCPT_LINE_MAX    (SMTP_CMD_LINE_MAX + 500)
#define SMTP_CMD_LINE_LONGEST SMTP_MAIL_LINE_MAX /* the longest of the above */
#define SMTP_TEXT_LINE_MAX    1000               /* octets including CRLF, RFC 5321 4.5.3.1.6 */
#define SMTP_PATH_MAX         256                /* octets, RFC 5321 4.5.3.1.3 */
#define SMTP_XTEXT_MAX        500 /* ENVID is at most 100 decoded; ORCPT 500 encoded */

enum smtp_verb {
    SMTP_V_UNKNOWN = 0,
    SMTP_V_HELO,
    SMTP_V_EHLO,
    SMTP_V_MAIL,
    SMTP_V_RCPT,
    SMTP_V_DATA,
    SMTP_V_BDAT,
    SMTP_V_RSET,
    SMTP_V_NOOP,
    SMTP_V_QUIT,
    SMTP_V_VRFY,
    SMTP_V_EXPN,
    SMTP_V_HELP,
    SMTP_V_ETRN,
    SMTP_V_ATRN,
    SMTP_V_TURN,
    SMTP_V_STARTTLS,
    SMTP_V_AUTH,
    /* RFC 821 3.5 (dropped by RFC 2821): known, never implemented, answered 502. */
    SMTP_V_SEND,
    SMTP_V_SOML,
    SMTP_V_SAML,
    SMTP_V_COUNT
};

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

/* RCPT NOTIFY bits (RFC 3461 4.1); NEVER excludes the others. */
#define SMTP_NOTIFY_NEVER   0x1u
#define SMTP_NOTIFY_SUCCESS 0x2u
#define SMTP_NOTIFY_FAILURE 0x4u
#define SMTP_NOTIFY_DELAY   0x8u

struct smtp_cmd {
    enum smtp_verb verb;
    /* Argument text after the verb and its single space, leading/trailing blanks removed,
     * NUL-terminated copy ("" when none). HELO/EHLO domain, VRFY/HELP/ETRN/ATRN/AUTH args. */
    char arg[SMTP_CMD_LINE_LONGEST + 1];
    /* MAIL/RCPT: the mailbox without angle brackets and without any source route
     * ("@a,@b:" prefix, RFC 5321 4.1.2 / C: accepted and ignored). Quoted local parts are
     * kept quoted, as received. "" for the null reverse-path <>. */
    char path[SMTP_PATH_MAX + 1];
    bool path_null;    /* MAIL FROM:<> */
    bool source_route; /* a source route was present and stripped */
    /* MAIL/RCPT: path parsed as a mailbox (domain lower-cased, relay characters flagged);
     * valid when path is a mailbox, i.e. neither "" (<>) nor RCPT's "Postmaster". */
    struct addr_mailbox mbox;
    /* MAIL parameters. */
    bool has_size;
    uint64_t size;
    enum smtp_body body;
    bool smtputf8;
    enum smtp_ret ret;
    char envid[SMTP_XTEXT_MAX + 1]; /* xtext as received; "" when absent */
    /* RCPT parameters. */
    unsigned notify;                /* 0 when absent */
    char orcpt[SMTP_XTEXT_MAX + 1]; /* "addr-type;xtext" as received; "" when absent */
    /* BDAT (RFC 3030 2): the chunk size is in size (has_size set); LAST marker. */
    bool bdat_last;
};

/* Parses one command line; line points at len octets with the CRLF already removed.
 * Verbs are case-insensitive. "MAIL FROM:" and "RCPT TO:" are required with the colon;
 * a single space between "FROM:" and "<" is tolerated (common client bug), nothing else.
 * Arguments checked here: HELO/EHLO one domain (underscores tolerated) or address literal;
 * ETRN [@|#]domain or #queue; ATRN an optional comma list of domains; BDAT size [LAST];
 * AUTH mechanism [base64 or "="]; VRFY/EXPN something; DATA/RSET/QUIT/STARTTLS/TURN
 * nothing; SEND/SOML/SAML anything (they are known only to be refused with 502). A path over
 * SMTP_PATH_MAX octets (brackets included) is HF_EADDR. MAIL allows UTF-8 in the path only with
 * SMTPUTF8; RCPT allows well-formed UTF-8 (the session knows whether MAIL had SMTPUTF8). ORCPT with
 * addr-type utf-8 may hold raw UTF-8 (RFC 6533). Returns: 0             success; *out filled (all
 * strings are NUL-terminated copies) HF_ELONGLINE  len + 2 > SMTP_CMD_LINE_MAX (checked first)
 *   HF_EBARELF    a CR or LF octet inside the line
 *   HF_EUNKNOWN   unknown verb (out->verb = SMTP_V_UNKNOWN)
 *   HF_ESYNTAX    bad syntax: missing/extra argument, bad path, bad parameter value,
 *                 duplicate parameter, NUL octet (out->verb is set when the verb was known)
 *   HF_EPARAM     unknown ESMTP parameter keyword for MAIL/RCPT (out->verb set)
 *   HF_EADDR      MAIL/RCPT path is syntactically invalid as a mailbox (out->verb set)
 * The caller maps: HF_EUNKNOWN->500 5.5.1, HF_ESYNTAX->501 5.5.4, HF_EADDR->501 5.1.3 (RCPT)
 * or 501 5.1.7 (MAIL), HF_EPARAM->555 5.5.4, HF_ELONGLINE/HF_EBARELF->500 5.5.2. */
int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out);

/* Returns the canonical upper-case verb name ("MAIL"), "?" for SMTP_V_UNKNOWN. */
const char *smtp_cmd_verb_name(enum smtp_verb v);

/* Decodes xtext (RFC 3461 4) from in[0..len) into out (NUL-terminated, size outsz).
 * Lower-case hex after '+' is accepted; "+00" is refused (it would end the C string).
 * Returns decoded length or HF_ESYNTAX (bad +HH, forbidden char) or -ENOSPC; a syntax
 * error is reported as such whatever outsz. */
int smtp_xtext_decode(const char *in, size_t len, char *out, size_t outsz);

/* Encodes s as xtext into out (size outsz). Returns length or -ENOSPC. */
int smtp_xtext_encode(const char *s, char *out, size_t outsz);

#endif
