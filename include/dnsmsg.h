/* Reading DNS messages (RFC 1035 4.1): names with compression pointers, the answer
 * section, and the TLSA answer of one name (RFC 6698 2.1, RFC 7672), CNAME chains inside
 * the answer followed. Pure: bytes in, results out; no resolver, socket or c-ares. dns.c
 * sends the queries and hands the answers here. */
#ifndef HF_DNSMSG_H
#define HF_DNSMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNSMSG_T_TLSA    52 /* RFC 6698 7.1 */
#define DNSMSG_CNAME_MAX 8  /* CNAME links followed inside one answer */

/* Reads the 16-bit big-endian value at p (two octets, checked by the caller). */
unsigned dnsmsg_u16(const unsigned char *p);

/* Expands the name at off in msg[0..len) (borrowed) into *out (returns owned: free()),
 * following compression pointers (RFC 1035 4.1.4); *wirelen is the octets it takes at
 * off, which must be within limit. Labels are joined with '.', without a trailing dot
 * (the root is ""); in a label the octets . \ " ; ( ) @ $ are written with a backslash
 * before them and those outside 0x20-0x7e as \DDD (decimal), so an expanded name is
 * never mistaken for another. Returns 0, -ENOMEM, or HF_EDNS for a name that runs past
 * the message or limit, uses a label type other than 0 and 3 (pointer), or loops. */
int dnsmsg_name_at(const unsigned char *msg, size_t len, size_t off, size_t limit, char **out,
                   size_t *wirelen);

/* Compares two names as DNS does: ASCII case-insensitive, a trailing dot ignored. */
bool dnsmsg_name_eq(const char *a, const char *b);

/* One TLSA record, as published (no value checked: unknown usages and the like are the
 * caller's to treat as unusable, RFC 7672 2.2). data points into dnsmsg_tlsa.buf. */
struct dnsmsg_tlsa_rr {
    uint8_t usage, selector, mtype;
    const unsigned char *data;
    size_t len;
};

/* The TLSA answer for one name. */
struct dnsmsg_tlsa {
    bool secure;                /* the AD bit of the answer (RFC 4035 3.2.3) */
    struct dnsmsg_tlsa_rr *rrs; /* malloc'd, nrrs, in the published order */
    size_t nrrs;
    unsigned char *buf; /* malloc'd copy of the message the records point into */
};

/* Parses the answer msg[0..len) (borrowed) to a TLSA query for qname: the records of
 * qname, or of the end of a CNAME chain from it (at most DNSMSG_CNAME_MAX links, in any
 * order); records of other types and classes are skipped. out->secure is set for every
 * result that gets past the header. Returns 0 (nrrs >= 1; release with dnsmsg_tlsa_free),
 * -ENOENT (NXDOMAIN, NODATA), HF_EDNSTEMP (another error rcode), HF_EDNS (malformed:
 * not a response, a count beyond the message, a record past its end, a TLSA RDATA
 * shorter than its three fixed octets), -ENOMEM. On an error nothing is left to free. */
int dnsmsg_tlsa_parse(const unsigned char *msg, size_t len, const char *qname,
                      struct dnsmsg_tlsa *out);
void dnsmsg_tlsa_free(struct dnsmsg_tlsa *t);

#endif
