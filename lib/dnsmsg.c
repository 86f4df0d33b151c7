/* Reading DNS messages: names (RFC 1035 3.1, 4.1.4), the answer section (4.1.3) and TLSA
 * answers (RFC 6698 2.1). Every read is bounds checked against the message; a name may
 * jump through compression pointers at most as many times as the message has octets,
 * which ends every loop. */
#include "dnsmsg.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hf_err.h"

unsigned dnsmsg_u16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static bool dnsmsg_reserved(unsigned char c)
{
    return c == '.' || c == '\\' || c == '"' || c == ';' || c == '(' || c == ')' || c == '@' ||
           c == '$';
}

/* Octets the label octet c takes when expanded. */
static size_t dnsmsg_esc_len(unsigned char c)
{
    if (c < 0x20 || c > 0x7e)
        return 4;
    return dnsmsg_reserved(c) ? 2 : 1;
}

int dnsmsg_name_at(const unsigned char *msg, size_t len, size_t off, size_t limit, char **out,
                   size_t *wirelen)
{
    *out = NULL;
    if (off >= len)
        return HF_EDNS;
    /* First pass: check the name and measure it. */
    size_t p = off, wl = 0, olen = 0, hops = 0;
    bool jumped = false;
    for (;;) {
        if (p >= len)
            return HF_EDNS;
        unsigned char c = msg[p];
        if ((c & 0xc0) == 0xc0) {
            if (len - p < 2)
                return HF_EDNS;
            if (!jumped)
                wl = p + 2 - off;
            jumped = true;
            if (++hops > len)
                return HF_EDNS; /* a pointer loop */
            p = (size_t)(c & 0x3f) << 8 | msg[p + 1];
            continue;
        }
        if (c & 0xc0)
            return HF_EDNS; /* 01 and 10: label types nobody defines for answers */
        if (c == 0) {
            if (!jumped)
                wl = p + 1 - off;
            break;
        }
        if (len - p - 1 < c)
            return HF_EDNS;
        for (size_t i = 0; i < c; i++)
            olen += dnsmsg_esc_len(msg[p + 1 + i]);
        olen++; /* the dot, or the NUL after the last label */
        p += 1 + (size_t)c;
    }
    if (wl > limit)
        return HF_EDNS;
    char *s = malloc(olen ? olen : 1);
    if (!s)
        return -ENOMEM;
    /* Second pass: write it (the name is known to be sound). */
    size_t o = 0;
    p = off;
    for (;;) {
        unsigned char c = msg[p];
        if ((c & 0xc0) == 0xc0) {
            p = (size_t)(c & 0x3f) << 8 | msg[p + 1];
            continue;
        }
        if (c == 0)
            break;
        if (o)
            s[o++] = '.';
        for (size_t i = 0; i < c; i++) {
            unsigned char ch = msg[p + 1 + i];
            if (ch < 0x20 || ch > 0x7e) {
                snprintf(s + o, 5, "\\%03u", ch);
                o += 4;
            } else {
                if (dnsmsg_reserved(ch))
                    s[o++] = '\\';
                s[o++] = (char)ch;
            }
        }
        p += 1 + (size_t)c;
    }
    s[o] = '\0';
    *out = s;
    *wirelen = wl;
    return 0;
}

bool dnsmsg_name_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 0 && a[la - 1] == '.')
        la--;
    if (lb > 0 && b[lb - 1] == '.')
        lb--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* One resource record of an answer section, located in the message. */
struct dnsmsg_rr {
    char *owner; /* malloc'd */
    unsigned type, cls;
    size_t rdoff, rdlen;
};

/* Locates the answer section's records in rrs[an]; the caller frees their owners. */
static int dnsmsg_rrs_read(const unsigned char *msg, size_t len, size_t off, struct dnsmsg_rr *rrs,
                           size_t an)
{
    for (size_t i = 0; i < an; i++) {
        size_t n;
        int rc = dnsmsg_name_at(msg, len, off, len - off, &rrs[i].owner, &n);
        if (rc < 0)
            return rc;
        off += n;
        /* TYPE, CLASS, TTL, RDLENGTH (RFC 1035 4.1.3), then RDATA within the message. */
        if (len - off < 10)
            return HF_EDNS;
        rrs[i].type = dnsmsg_u16(msg + off);
        rrs[i].cls = dnsmsg_u16(msg + off + 2);
        rrs[i].rdlen = dnsmsg_u16(msg + off + 8);
        off += 10;
        if (len - off < rrs[i].rdlen)
            return HF_EDNS;
        rrs[i].rdoff = off;
        off += rrs[i].rdlen;
    }
    return 0;
}

static bool dnsmsg_is_tlsa_of(const struct dnsmsg_rr *rr, const char *target)
{
    return rr->type == DNSMSG_T_TLSA && rr->cls == ns_c_in && dnsmsg_name_eq(rr->owner, target);
}

/* Keeps the TLSA records owned by target: copies the message into out->buf and points
 * out->rrs into it. Returns 0, -ENOENT when there are none, HF_EDNS for an RDATA shorter
 * than usage, selector and matching type, -ENOMEM. */
static int dnsmsg_tlsa_collect(const unsigned char *msg, size_t len, const struct dnsmsg_rr *rrs,
                               size_t an, const char *target, struct dnsmsg_tlsa *out)
{
    size_t n = 0;
    for (size_t i = 0; i < an; i++) {
        if (!dnsmsg_is_tlsa_of(&rrs[i], target))
            continue;
        if (rrs[i].rdlen < 3)
            return HF_EDNS; /* RFC 6698 2.1: three fixed octets, then the data */
        n++;
    }
    if (n == 0)
        return -ENOENT;
    out->buf = malloc(len);
    out->rrs = calloc(n, sizeof(*out->rrs));
    if (!out->buf || !out->rrs) {
        dnsmsg_tlsa_free(out);
        return -ENOMEM;
    }
    memcpy(out->buf, msg, len);
    for (size_t i = 0; i < an; i++) {
        if (!dnsmsg_is_tlsa_of(&rrs[i], target))
            continue;
        const unsigned char *rd = out->buf + rrs[i].rdoff;
        out->rrs[out->nrrs++] = (struct dnsmsg_tlsa_rr){
            .usage = rd[0],
            .selector = rd[1],
            .mtype = rd[2],
            .data = rd + 3,
            .len = rrs[i].rdlen - 3,
        };
    }
    return 0;
}

int dnsmsg_tlsa_parse(const unsigned char *msg, size_t len, const char *qname,
                      struct dnsmsg_tlsa *out)
{
    struct dnsmsg_rr *rrs = NULL;
    char *cname[DNSMSG_CNAME_MAX] = {NULL};
    size_t an = 0, ncname = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    /* RFC 1035 4.1.1: QR must be set; RCODE is the low nibble of the fourth octet, next to
     * AD (RFC 4035 3.2.3). */
    if (len < NS_HFIXEDSZ || len > 65535 || !(msg[2] & 0x80))
        return HF_EDNS;
    unsigned rcode = msg[3] & 0x0f;
    out->secure = (msg[3] & 0x20) != 0;
    if (rcode == ns_r_nxdomain)
        return -ENOENT;
    if (rcode != ns_r_noerror)
        return HF_EDNSTEMP;

    size_t off = NS_HFIXEDSZ, qd = dnsmsg_u16(msg + 4);
    an = dnsmsg_u16(msg + 6);
    for (size_t i = 0; i < qd; i++) {
        char *q;
        size_t n;
        rc = dnsmsg_name_at(msg, len, off, len - off, &q, &n);
        if (rc < 0)
            return rc;
        free(q);
        off += n;
        if (len - off < NS_QFIXEDSZ)
            return HF_EDNS;
        off += NS_QFIXEDSZ;
    }
    if (an == 0)
        return -ENOENT;
    /* Every record takes at least 11 octets: a count beyond that is a lie. */
    if (an > (len - off) / 11)
        return HF_EDNS;
    rrs = calloc(an, sizeof(*rrs));
    if (!rrs)
        return -ENOMEM;
    rc = dnsmsg_rrs_read(msg, len, off, rrs, an);
    if (rc < 0)
        goto out;

    /* Follow the CNAME chain from the name asked, whatever the order of the records. */
    const char *target = qname;
    while (ncname < DNSMSG_CNAME_MAX) {
        size_t i = 0;
        while (i < an && !(rrs[i].type == ns_t_cname && rrs[i].cls == ns_c_in &&
                           dnsmsg_name_eq(rrs[i].owner, target)))
            i++;
        if (i == an)
            break;
        size_t n;
        rc = dnsmsg_name_at(msg, len, rrs[i].rdoff, rrs[i].rdlen, &cname[ncname], &n);
        if (rc < 0)
            goto out;
        target = cname[ncname++];
    }
    rc = dnsmsg_tlsa_collect(msg, len, rrs, an, target, out);

out:
    for (size_t i = 0; i < an; i++)
        free(rrs[i].owner);
    for (size_t i = 0; i < ncname; i++)
        free(cname[i]);
    free(rrs);
    return rc;
}

void dnsmsg_tlsa_free(struct dnsmsg_tlsa *t)
{
    free(t->rrs);
    free(t->buf);
    t->rrs = NULL;
    t->buf = NULL;
    t->nrrs = 0;
}
