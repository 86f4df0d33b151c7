/* Mailbox and domain syntax (RFC 5321 4.1.2, RFC 6531 for UTF-8), domain matching on label
 * boundaries, and reversed-label keys for the queue's per-domain index. Pure. */
#ifndef HF_ADDR_H
#define HF_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_LOCAL_MAX  64  /* RFC 5321 4.5.3.1.1 */
#define ADDR_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */

struct addr_mailbox {
    char local[ADDR_LOCAL_MAX * 2 + 3]; /* as received (quoted form kept), NUL-terminated */
    char domain[ADDR_DOMAIN_MAX + 1];   /* lower-cased; address literals kept as "[...]" */
    bool local_quoted;                  /* the local part was a quoted-string */
    bool domain_literal;                /* [1.2.3.4] or [IPv6:...] */
    bool has_relay_chars;               /* local part holds '%', '!' or '@' (quoted):
                                           the %-hack, bang paths: never relayed */
    bool utf8;                          /* non-ASCII octets present */
};

/* Parses "local@domain" (the path without <> or source route). utf8_ok allows UTF-8 in
 * both parts (SMTPUTF8 was given); invalid UTF-8 sequences are always refused.
 * Returns 0, HF_EADDR for bad syntax or a missing domain, HF_ELONGLINE when a part is over
 * its limit. Postmaster without a domain is not accepted here (callers special-case it). */
int addr_parse_mailbox(const char *s, size_t len, bool utf8_ok, struct addr_mailbox *out);

/* True if d[0..len) is a syntactically valid domain name (LDH labels of 1..63 octets,
 * total <= 255, optional trailing dot not allowed) or, when utf8_ok, U-labels. */
bool addr_domain_is_valid(const char *d, size_t len, bool utf8_ok);

/* True if s[0..len) is "[a.b.c.d]" or "[IPv6:...]" (tag case-insensitive) holding an
 * address inet_pton() accepts (RFC 5321 4.1.3). General address literals are refused. */
bool addr_literal_is_valid(const char *s, size_t len);

/* True if s[0..len) is well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates,
 * nothing above U+10FFFF. A NUL octet is accepted here; callers that forbid it check. */
bool addr_utf8_is_valid(const char *s, size_t len);

/* True if every octet of s[0..len) is below 0x80. */
bool addr_is_ascii(const char *s, size_t len);

/* Lower-cases ASCII letters of s in place. */
void addr_lower(char *s);

/* Writes the reversed-label key of domain ("branch.test" -> "test.branch.") to out (size
 * outsz, NUL-terminated). Lower-cases ASCII; one trailing dot on domain is ignored. An
 * address literal ("[1.2.3.4]") is not reversed: its key is the literal and a dot.
 * Returns the key length, -ENOSPC when out is too small, HF_EADDR for an empty domain or an
 * empty label ("a..b", ".a"). */
int addr_domain_key(const char *domain, char *out, size_t outsz);

/* True if domain equals zone, or (subdomains) ends with "." zone: label boundaries only,
 * so "badexample.com" never matches zone "example.com". Case-insensitive. */
bool addr_domain_matches(const char *domain, const char *zone, bool subdomains);

#endif
