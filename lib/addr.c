/* Mailbox and domain syntax (RFC 5321 4.1.2 and 4.1.3, RFC 6531 3.3 for UTF-8), UTF-8
 * well-formedness (RFC 3629), reversed-label domain keys and label-boundary matching.
 *
 * Pure: strings in, verdicts and copies out. Whether a domain is one of ours, whether a
 * recipient exists, and what to reply are decided by the callers (policy.c, smtpd.c). */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "hf_err.h"

static bool addr__is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool addr__is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static unsigned char addr__lower_c(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* atext of RFC 5322 3.2.3, as RFC 5321 4.1.2 uses it for Atom. */
static bool addr__is_atext(unsigned char c)
{
    if (addr__is_alpha(c) || addr__is_digit(c)) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* qtextSMTP of RFC 5321 4.1.2: printable ASCII except '"' and '\'. */
static bool addr__is_qtext(unsigned char c)
{
    return c == 32 || c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126);
}

/* Returns the length (1..4) of the well-formed UTF-8 sequence at s[0..len), or 0.
 * Second-octet ranges follow RFC 3629 4, which excludes overlongs (C0, C1, E0 80..9F,
 * F0 80..8F), surrogates (ED A0..BF) and code points above U+10FFFF (F4 90.., F5..FF). */
static size_t addr__utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) {
            lo = 0xA0;
        } else if (c == 0xED) {
            hi = 0x9F;
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) {
            lo = 0x90;
        } else if (c == 0xF4) {
            hi = 0x8F;
        }
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return n;
}

bool addr_utf8_is_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = addr__utf8_seq(u + i, len - i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

bool addr_is_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] >= 0x80) {
            return false;
        }
    }
    return true;
}

void addr_lower(char *s)
{
    for (; *s != '\0'; s++) {
        *s = (char)addr__lower_c((unsigned char)*s);
    }
}

bool addr_literal_is_valid(const char *s, size_t len)
{
    char buf[64];
    const char *in;
    size_t inlen;
    int af = AF_INET;
    unsigned char bin[16];

    if (len < 3 || s[0] != '[' || s[len - 1] != ']') {
        return false;
    }
    in = s + 1;
    inlen = len - 2;
    /* RFC 5321 4.1.3: IPv6-address-literal = "IPv6:" IPv6-addr; ABNF strings are
     * case-insensitive. A General-address-literal (other tags) names nothing we can use. */
    if (inlen >= 5 && strncasecmp(in, "IPv6:", 5) == 0) {
        af = AF_INET6;
        in += 5;
        inlen -= 5;
    }
    if (inlen == 0 || inlen >= sizeof(buf) || memchr(in, '\0', inlen) != NULL) {
        return false;
    }
    memcpy(buf, in, inlen);
    buf[inlen] = '\0';
    return inet_pton(af, buf, bin) == 1;
}

bool addr_domain_is_valid(const char *d, size_t len, bool utf8_ok)
{
    const unsigned char *u = (const unsigned char *)d;
    size_t label = 0;

    if (len == 0 || len > ADDR_DOMAIN_MAX) {
        return false;
    }
    if (!addr_is_ascii(d, len) && (!utf8_ok || !addr_utf8_is_valid(d, len))) {
        return false;
    }
    for (size_t i = 0; i <= len; i++) {
        if (i == len || u[i] == '.') {
            /* RFC 1035 2.3.1 / RFC 5890: 1..63 octets, no hyphen at either end. */
            if (label == 0 || label > 63 || u[i - 1] == '-' || u[i - label] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        if (!(addr__is_alpha(u[i]) || addr__is_digit(u[i]) || u[i] == '-' || u[i] >= 0x80)) {
            return false;
        }
        label++;
    }
    return true;
}

/* Scans the local part at s[0..len). Returns its length (the '@' that must follow is not
 * included) or HF_EADDR. Sets quoted, relay and utf8 flags in out. */
static int addr__scan_local(const char *s, size_t len, bool utf8_ok, struct addr_mailbox *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i;

    if (len > 0 && u[0] == '"') {
        /* Quoted-string = DQUOTE *QcontentSMTP DQUOTE (RFC 5321 4.1.2). */
        out->local_quoted = true;
        for (i = 1; i < len; i++) {
            unsigned char c = u[i];
            if (c == '"') {
                return (int)(i + 1);
            }
            if (c == '\\') {
                /* quoted-pairSMTP = %d92 %d32-126 */
                if (i + 1 >= len || u[i + 1] < 32 || u[i + 1] > 126) {
                    return HF_EADDR;
                }
                i++;
                c = u[i];
            } else if (c >= 0x80) {
                size_t n = utf8_ok ? addr__utf8_seq(u + i, len - i) : 0;
                if (n == 0) {
                    return HF_EADDR;
                }
                out->utf8 = true;
                i += n - 1;
                continue;
            } else if (!addr__is_qtext(c)) {
                return HF_EADDR;
            }
            /* An '@' inside quotes is how "user@evil"@ours asks us to relay onward. */
            if (c == '%' || c == '!' || c == '@') {
                out->has_relay_chars = true;
            }
        }
        return HF_EADDR; /* unterminated */
    }
    /* Dot-string = Atom *("." Atom): no leading, trailing or doubled dot. */
    for (i = 0; i < len && u[i] != '@'; i++) {
        unsigned char c = u[i];
        if (c == '.') {
            if (i == 0 || u[i - 1] == '.') {
                return HF_EADDR;
            }
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_ok ? addr__utf8_seq(u + i, len - i) : 0;
            if (n == 0) {
                return HF_EADDR;
            }
            out->utf8 = true;
            i += n - 1;
            continue;
        }
        if (!addr__is_atext(c)) {
            return HF_EADDR;
        }
        if (c == '%' || c == '!') {
            out->has_relay_chars = true;
        }
    }
    if (i == 0 || u[i - 1] == '.') {
        return HF_EADDR;
    }
    return (int)i;
}

int addr_parse_mailbox(const char *s, size_t len, bool utf8_ok, struct addr_mailbox *out)
{
    int llen;
    const char *dom;
    size_t dlen;

    memset(out, 0, sizeof(*out));
    llen = addr__scan_local(s, len, utf8_ok, out);
    if (llen < 0) {
        return llen;
    }
    if ((size_t)llen >= len || s[llen] != '@') {
        return HF_EADDR; /* no domain (Postmaster alone is the caller's special case) */
    }
    if ((size_t)llen > ADDR_LOCAL_MAX) {
        return HF_ELONGLINE;
    }
    dom = s + llen + 1;
    dlen = len - (size_t)llen - 1;
    if (dlen > ADDR_DOMAIN_MAX) {
        return HF_ELONGLINE;
    }
    if (dlen > 0 && dom[0] == '[') {
        if (!addr_literal_is_valid(dom, dlen)) {
            return HF_EADDR;
        }
        out->domain_literal = true;
    } else {
        if (!addr_domain_is_valid(dom, dlen, utf8_ok)) {
            return HF_EADDR;
        }
        if (!addr_is_ascii(dom, dlen)) {
            out->utf8 = true;
        }
    }
    memcpy(out->local, s, (size_t)llen);
    out->local[llen] = '\0';
    memcpy(out->domain, dom, dlen);
    out->domain[dlen] = '\0';
    if (!out->domain_literal) {
        addr_lower(out->domain);
    }
    return 0;
}

int addr_domain_key(const char *domain, char *out, size_t outsz)
{
    size_t len = strlen(domain);
    size_t o = 0;

    if (len > 0 && domain[len - 1] == '.') {
        len--;
    }
    if (len == 0) {
        return HF_EADDR;
    }
    if (len + 2 > outsz) {
        return -ENOSPC;
    }
    if (domain[0] == '[') {
        /* Address literals hold dots that are not label separators. */
        for (size_t i = 0; i < len; i++) {
            out[o++] = (char)addr__lower_c((unsigned char)domain[i]);
        }
    } else {
        size_t end = len;
        while (end > 0) {
            size_t start = end;
            while (start > 0 && domain[start - 1] != '.') {
                start--;
            }
            if (start == end) {
                return HF_EADDR; /* empty label */
            }
            for (size_t i = start; i < end; i++) {
                out[o++] = (char)addr__lower_c((unsigned char)domain[i]);
            }
            if (start == 0) {
                break;
            }
            end = start - 1;
            if (end == 0) {
                return HF_EADDR; /* leading dot */
            }
            out[o++] = '.';
        }
    }
    out[o++] = '.';
    out[o] = '\0';
    return (int)o;
}

bool addr_domain_matches(const char *domain, const char *zone, bool subdomains)
{
    size_t dlen = strlen(domain);
    size_t zlen = strlen(zone);

    /* A trailing dot (absolute form) names the same domain. */
    if (dlen > 0 && domain[dlen - 1] == '.') {
        dlen--;
    }
    if (zlen > 0 && zone[zlen - 1] == '.') {
        zlen--;
    }
    if (zlen == 0 || dlen == 0) {
        return false;
    }
    if (dlen == zlen) {
        return strncasecmp(domain, zone, zlen) == 0;
    }
    /* Subdomain: at least one label, then a dot, then the zone. The dot is what keeps
     * "badexample.com" out of "example.com". */
    if (!subdomains || dlen < zlen + 2) {
        return false;
    }
    return domain[dlen - zlen - 1] == '.' && domain[dlen - zlen - 2] != '.' &&
           strncasecmp(domain + dlen - zlen, zone, zlen) == 0;
}
