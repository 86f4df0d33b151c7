/* SMTP command grammar: the verb, its argument, MAIL/RCPT paths and their ESMTP parameters
 * (RFC 5321 4.1; SIZE RFC 1870, BODY RFC 6152 / RFC 3030, SMTPUTF8 RFC 6531, RET, ENVID,
 * NOTIFY and ORCPT RFC 3461, AUTH= RFC 4954, ETRN RFC 1985, ATRN RFC 2645, BDAT RFC 3030),
 * and xtext (RFC 3461 4).
 *
 * Pure: one line in, one parsed command out. The caller frames lines and strips CRLF;
 * whether a verb is allowed now, whether an advertised extension was used, and whether a
 * recipient is ours are the session's decisions (smtpd.c, policy.c). Mailbox syntax is
 * addr.c's. */
#include "smtp_cmd.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "hf_err.h"

/* RFC 3461 4.4: ENVID is at most 100 characters once decoded. */
#define CMD_ENVID_DECODED_MAX 100
/* RFC 4954 6: SASL mechanism names are 1..20 characters. */
#define CMD_SASL_MECH_MAX 20

struct cmd__verb {
    const char *name;
    enum smtp_verb verb;
    /* Checks the trimmed argument a[0..alen) and fills verb-specific fields. */
    int (*parse)(const char *a, size_t alen, struct smtp_cmd *out);
};

struct cmd__param {
    const char *name;
    enum smtp_verb verb; /* SMTP_V_MAIL or SMTP_V_RCPT */
    bool has_value;      /* keyword=value; otherwise a bare keyword */
    int (*apply)(const char *v, size_t vlen, struct smtp_cmd *out);
};

static bool cmd__is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool cmd__is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool cmd__eq(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

static bool cmd__has_blank(const char *s, size_t len)
{
    return memchr(s, ' ', len) != NULL || memchr(s, '\t', len) != NULL;
}

/* 1*20DIGIT (RFC 1870 3) that fits in uint64_t. */
static int cmd__parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 20) {
        return HF_ESYNTAX;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9') {
            return HF_ESYNTAX;
        }
        d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return HF_ESYNTAX;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int cmd__hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

int smtp_xtext_decode(const char *in, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    bool full = false;

    /* Syntax is checked to the end before -ENOSPC is reported, so a bad value is always
     * HF_ESYNTAX whatever the buffer size. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '+') {
            /* hexchar = "+" 2HEXDIG; RFC 3461 asks for upper case, lower case is taken. */
            int hi, lo;
            if (len - i < 3) {
                return HF_ESYNTAX;
            }
            hi = cmd__hexval((unsigned char)in[i + 1]);
            lo = cmd__hexval((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return HF_ESYNTAX; /* "+00" would cut a C string short */
            }
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return HF_ESYNTAX; /* xchar is "!".."~" except "+" and "=" */
        }
        if (o + 1 >= outsz) {
            full = true;
            continue;
        }
        out[o++] = (char)c;
    }
    if (full || outsz == 0) {
        return -ENOSPC;
    }
    out[o] = '\0';
    return (int)o;
}

int smtp_xtext_encode(const char *s, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 33 && c <= 126 && c != '+' && c != '=') {
            if (o + 2 > outsz) {
                return -ENOSPC;
            }
            out[o++] = (char)c;
        } else {
            if (o + 4 > outsz) {
                return -ENOSPC;
            }
            out[o++] = '+';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (outsz == 0) {
        return -ENOSPC;
    }
    out[o] = '\0';
    return (int)o;
}

/* ---- MAIL and RCPT parameters ---- */

static int cmd__p_size(const char *v, size_t vlen, struct smtp_cmd *out)
{
    int rc = cmd__parse_u64(v, vlen, &out->size);
    if (rc == 0) {
        out->has_size = true;
    }
    return rc;
}

static int cmd__p_body(const char *v, size_t vlen, struct smtp_cmd *out)
{
    if (cmd__eq(v, vlen, "7BIT")) {
        out->body = SMTP_BODY_7BIT;
    } else if (cmd__eq(v, vlen, "8BITMIME")) {
        out->body = SMTP_BODY_8BITMIME;
    } else if (cmd__eq(v, vlen, "BINARYMIME")) {
        out->body = SMTP_BODY_BINARYMIME;
    } else {
        return HF_ESYNTAX;
    }
    return 0;
}

static int cmd__p_smtputf8(const char *v, size_t vlen, struct smtp_cmd *out)
{
    (void)v;
    (void)vlen;
    out->smtputf8 = true;
    return 0;
}

static int cmd__p_ret(const char *v, size_t vlen, struct smtp_cmd *out)
{
    if (cmd__eq(v, vlen, "FULL")) {
        out->ret = SMTP_RET_FULL;
    } else if (cmd__eq(v, vlen, "HDRS")) {
        out->ret = SMTP_RET_HDRS;
    } else {
        return HF_ESYNTAX;
    }
    return 0;
}

static int cmd__p_envid(const char *v, size_t vlen, struct smtp_cmd *out)
{
    char dec[SMTP_XTEXT_MAX + 1];
    int n;

    if (vlen > SMTP_XTEXT_MAX) {
        return HF_ESYNTAX;
    }
    n = smtp_xtext_decode(v, vlen, dec, sizeof(dec));
    if (n < 0 || n > CMD_ENVID_DECODED_MAX) {
        return HF_ESYNTAX;
    }
    /* RFC 3461 4.4: the decoded ENVID is printable US-ASCII. */
    for (int i = 0; i < n; i++) {
        if ((unsigned char)dec[i] < 32 || (unsigned char)dec[i] > 126) {
            return HF_ESYNTAX;
        }
    }
    memcpy(out->envid, v, vlen);
    out->envid[vlen] = '\0';
    return 0;
}

static int cmd__p_auth(const char *v, size_t vlen, struct smtp_cmd *out)
{
    char dec[SMTP_CMD_LINE_MAX];

    /* RFC 4954 5: AUTH=<> or an xtext mailbox. We never trust it, so it is checked and
     * dropped. */
    (void)out;
    return smtp_xtext_decode(v, vlen, dec, sizeof(dec)) < 0 ? HF_ESYNTAX : 0;
}

static int cmd__p_notify(const char *v, size_t vlen, struct smtp_cmd *out)
{
    unsigned bits = 0;
    size_t i = 0;

    /* RFC 3461 4.1: "NEVER" alone, or a comma list of SUCCESS, FAILURE, DELAY. */
    while (i <= vlen) {
        size_t start = i;
        while (i < vlen && v[i] != ',') {
            i++;
        }
        if (cmd__eq(v + start, i - start, "NEVER")) {
            bits |= SMTP_NOTIFY_NEVER;
        } else if (cmd__eq(v + start, i - start, "SUCCESS")) {
            bits |= SMTP_NOTIFY_SUCCESS;
        } else if (cmd__eq(v + start, i - start, "FAILURE")) {
            bits |= SMTP_NOTIFY_FAILURE;
        } else if (cmd__eq(v + start, i - start, "DELAY")) {
            bits |= SMTP_NOTIFY_DELAY;
        } else {
            return HF_ESYNTAX;
        }
        i++; /* past the comma, or past the end to stop */
    }
    if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER) {
        return HF_ESYNTAX;
    }
    out->notify = bits;
    return 0;
}

static int cmd__p_orcpt(const char *v, size_t vlen, struct smtp_cmd *out)
{
    const char *semi = memchr(v, ';', vlen);
    size_t tlen, alen;
    const char *a;
    char dec[SMTP_XTEXT_MAX + 1];

    if (semi == NULL || vlen > SMTP_XTEXT_MAX) {
        return HF_ESYNTAX;
    }
    /* original-recipient-address = addr-type ";" xtext (RFC 3461 4.2); addr-type is an
     * atom, "rfc822" or "utf-8" (RFC 6533) in practice. */
    tlen = (size_t)(semi - v);
    a = semi + 1;
    alen = vlen - tlen - 1;
    if (tlen == 0 || alen == 0) {
        return HF_ESYNTAX;
    }
    for (size_t i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!cmd__is_alnum(c) && (c == '\0' || strchr("!#$%&'*+-/=?^_`{|}~", c) == NULL)) {
            return HF_ESYNTAX;
        }
    }
    if (cmd__eq(v, tlen, "utf-8")) {
        /* RFC 6533 4: utf-8-addr-xtext or, under SMTPUTF8, raw UTF-8 (utf-8-addr-unitext).
         * The generic value check already refused controls, '=' and bad UTF-8. */
    } else if (smtp_xtext_decode(a, alen, dec, sizeof(dec)) < 0) {
        return HF_ESYNTAX;
    }
    memcpy(out->orcpt, v, vlen);
    out->orcpt[vlen] = '\0';
    return 0;
}

static const struct cmd__param cmd__params[] = {
    {"SIZE", SMTP_V_MAIL, true, cmd__p_size},          {"BODY", SMTP_V_MAIL, true, cmd__p_body},
    {"SMTPUTF8", SMTP_V_MAIL, false, cmd__p_smtputf8}, {"RET", SMTP_V_MAIL, true, cmd__p_ret},
    {"ENVID", SMTP_V_MAIL, true, cmd__p_envid},        {"AUTH", SMTP_V_MAIL, true, cmd__p_auth},
    {"NOTIFY", SMTP_V_RCPT, true, cmd__p_notify},      {"ORCPT", SMTP_V_RCPT, true, cmd__p_orcpt},
};

/* One esmtp-param = esmtp-keyword ["=" esmtp-value] (RFC 5321 4.1.2). */
static int cmd__param(const char *t, size_t tlen, unsigned *seen, struct smtp_cmd *out)
{
    const char *eq = memchr(t, '=', tlen);
    size_t klen = eq != NULL ? (size_t)(eq - t) : tlen;
    const char *v = eq != NULL ? eq + 1 : NULL;
    size_t vlen = eq != NULL ? tlen - klen - 1 : 0;

    /* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
    if (klen == 0 || !cmd__is_alnum((unsigned char)t[0])) {
        return HF_ESYNTAX;
    }
    for (size_t i = 1; i < klen; i++) {
        if (!cmd__is_alnum((unsigned char)t[i]) && t[i] != '-') {
            return HF_ESYNTAX;
        }
    }
    if (v != NULL) {
        /* esmtp-value = 1*(%d33-60 / %d62-126), widened to UTF-8 by RFC 6531 3.3. */
        if (vlen == 0 || !addr_utf8_is_valid(v, vlen)) {
            return HF_ESYNTAX;
        }
        for (size_t i = 0; i < vlen; i++) {
            unsigned char c = (unsigned char)v[i];
            if (c < 33 || c == '=' || c == 127) {
                return HF_ESYNTAX;
            }
        }
    }
    for (size_t i = 0; i < sizeof(cmd__params) / sizeof(cmd__params[0]); i++) {
        const struct cmd__param *p = &cmd__params[i];
        if (p->verb != out->verb || !cmd__eq(t, klen, p->name)) {
            continue;
        }
        if ((*seen & (1u << i)) != 0 || p->has_value != (v != NULL)) {
            return HF_ESYNTAX;
        }
        *seen |= 1u << i;
        return p->apply(v, vlen, out);
    }
    return HF_EPARAM;
}

static int cmd__parse_params(const char *p, size_t len, struct smtp_cmd *out)
{
    unsigned seen = 0;
    size_t i = 0;

    while (i < len) {
        size_t start;
        int rc;
        if (p[i] == ' ') {
            i++;
            continue;
        }
        start = i;
        while (i < len && p[i] != ' ') {
            i++;
        }
        rc = cmd__param(p + start, i - start, &seen, out);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- Paths ---- */

/* A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain (RFC 5321 4.1.2). */
static bool cmd__route_ok(const char *r, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t start;
        if (r[i] != '@') {
            return false;
        }
        start = ++i;
        while (i < len && r[i] != ',') {
            i++;
        }
        if (!addr_domain_is_valid(r + start, i - start, false)) {
            return false;
        }
        if (i < len) {
            i++;
            if (i == len) {
                return false; /* trailing comma */
            }
        }
    }
    return len > 0;
}

/* The text between < and >: source route, null path, Postmaster, mailbox. */
static int cmd__path(const char *p, size_t len, struct smtp_cmd *out)
{
    bool mail = out->verb == SMTP_V_MAIL;
    struct addr_mailbox mb;

    if (len == 0) {
        if (!mail) {
            return HF_EADDR;
        }
        out->path_null = true;
        return 0;
    }
    /* RFC 5321 4.1.1.3: "<Postmaster>" with no domain, for RCPT only. */
    if (!mail && cmd__eq(p, len, "Postmaster")) {
        memcpy(out->path, "Postmaster", sizeof("Postmaster"));
        return 0;
    }
    if (p[0] == '@') {
        /* RFC 5321 4.1.2 and appendix C: a source route MUST be accepted and SHOULD be
         * ignored; we deliver only to the final mailbox. */
        const char *colon = memchr(p, ':', len);
        if (colon == NULL || !cmd__route_ok(p, (size_t)(colon - p))) {
            return HF_EADDR;
        }
        out->source_route = true;
        len -= (size_t)(colon + 1 - p);
        p = colon + 1;
    }
    /* RFC 6531 3.4: UTF-8 in MAIL only with SMTPUTF8. RCPT comes after MAIL, so the
     * session, which remembers MAIL's parameters, decides about RCPT. */
    if (addr_parse_mailbox(p, len, mail ? out->smtputf8 : true, &mb) != 0) {
        return HF_EADDR;
    }
    memcpy(out->path, p, len);
    out->path[len] = '\0';
    out->mbox = mb;
    return 0;
}

/* "FROM:" / "TO:", at most one space, "<" path ">", then SP-separated parameters. */
static int cmd__mail_rcpt(const char *a, size_t alen, const char *kw, struct smtp_cmd *out)
{
    size_t kwlen = strlen(kw);
    size_t open, close;
    bool quoted = false;
    int rc;

    if (alen < kwlen || strncasecmp(a, kw, kwlen) != 0) {
        return HF_ESYNTAX;
    }
    open = kwlen;
    if (open < alen && a[open] == ' ') {
        open++;
    }
    if (open >= alen || a[open] != '<') {
        return HF_ESYNTAX;
    }
    /* The closing '>' is the first one outside a quoted local part ("a>b"@x is legal). */
    for (close = open + 1; close < alen; close++) {
        if (quoted && a[close] == '\\') {
            close++;
        } else if (a[close] == '"') {
            quoted = !quoted;
        } else if (a[close] == '>' && !quoted) {
            break;
        }
    }
    if (close >= alen) {
        return HF_ESYNTAX;
    }
    if (close + 1 < alen && a[close + 1] != ' ') {
        return HF_ESYNTAX;
    }
    /* Parameters first: SMTPUTF8 decides whether the path may hold UTF-8. */
    rc = cmd__parse_params(a + close + 1, alen - close - 1, out);
    if (rc != 0) {
        return rc;
    }
    /* RFC 5321 4.5.3.1.3: 256 octets for the path, brackets included. */
    if (close - open + 1 > SMTP_PATH_MAX) {
        return HF_EADDR;
    }
    return cmd__path(a + open + 1, close - open - 1, out);
}

/* ---- Verb arguments ---- */

static int cmd__arg_none(const char *a, size_t alen, struct smtp_cmd *out)
{
    (void)a;
    (void)out;
    return alen == 0 ? 0 : HF_ESYNTAX;
}

static int cmd__arg_opt(const char *a, size_t alen, struct smtp_cmd *out)
{
    (void)a;
    (void)alen;
    (void)out;
    return 0;
}

static int cmd__arg_req(const char *a, size_t alen, struct smtp_cmd *out)
{
    (void)a;
    (void)out;
    return alen > 0 ? 0 : HF_ESYNTAX;
}

/* HELO/EHLO name: a domain or an address literal (RFC 5321 4.1.1.1). Underscores and one
 * trailing dot are tolerated because real clients send them; spaces and junk are not. */
static int cmd__arg_helo(const char *a, size_t alen, struct smtp_cmd *out)
{
    size_t label = 0;

    (void)out;
    if (alen == 0 || alen > ADDR_DOMAIN_MAX || cmd__has_blank(a, alen)) {
        return HF_ESYNTAX;
    }
    if (a[0] == '[') {
        return addr_literal_is_valid(a, alen) ? 0 : HF_ESYNTAX;
    }
    for (size_t i = 0; i < alen; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c == '.') {
            if (label == 0) {
                return HF_ESYNTAX;
            }
            label = 0;
        } else if (cmd__is_alnum(c) || c == '-' || c == '_') {
            if (++label > 63) {
                return HF_ESYNTAX;
            }
        } else {
            return HF_ESYNTAX;
        }
    }
    return 0;
}

static int cmd__arg_mail(const char *a, size_t alen, struct smtp_cmd *out)
{
    return cmd__mail_rcpt(a, alen, "FROM:", out);
}

static int cmd__arg_rcpt(const char *a, size_t alen, struct smtp_cmd *out)
{
    return cmd__mail_rcpt(a, alen, "TO:", out);
}

/* RFC 1985 5: "ETRN" SP [ "@" / "#" ] domain; "#" names a queue (a configured group). */
static int cmd__arg_etrn(const char *a, size_t alen, struct smtp_cmd *out)
{
    (void)out;
    if (alen == 0 || cmd__has_blank(a, alen)) {
        return HF_ESYNTAX;
    }
    if (a[0] == '#') {
        if (alen == 1) {
            return HF_ESYNTAX;
        }
        for (size_t i = 1; i < alen; i++) {
            if ((unsigned char)a[i] < 33 || (unsigned char)a[i] > 126) {
                return HF_ESYNTAX;
            }
        }
        return 0;
    }
    if (a[0] == '@') {
        a++;
        alen--;
    }
    return addr_domain_is_valid(a, alen, false) ? 0 : HF_ESYNTAX;
}

/* RFC 2645 4.1: "ATRN" [ SP domain *( "," domain ) ]. */
static int cmd__arg_atrn(const char *a, size_t alen, struct smtp_cmd *out)
{
    size_t i = 0;

    (void)out;
    if (alen == 0) {
        return 0;
    }
    if (cmd__has_blank(a, alen)) {
        return HF_ESYNTAX;
    }
    while (i <= alen) {
        size_t start = i;
        while (i < alen && a[i] != ',') {
            i++;
        }
        if (!addr_domain_is_valid(a + start, i - start, false)) {
            return HF_ESYNTAX;
        }
        i++;
    }
    return 0;
}

/* RFC 3030 2: "BDAT" SP chunk-size [ SP end-marker ], end-marker = "LAST". */
static int cmd__arg_bdat(const char *a, size_t alen, struct smtp_cmd *out)
{
    const char *sp = memchr(a, ' ', alen);
    size_t nlen = sp != NULL ? (size_t)(sp - a) : alen;

    if (cmd__parse_u64(a, nlen, &out->size) != 0) {
        return HF_ESYNTAX;
    }
    out->has_size = true;
    if (sp != NULL) {
        if (!cmd__eq(sp + 1, alen - nlen - 1, "LAST")) {
            return HF_ESYNTAX;
        }
        out->bdat_last = true;
    }
    return 0;
}

/* RFC 4954 4: "AUTH" SP sasl-mech [ SP initial-response ]; initial-response is base64 or
 * "=". */
static int cmd__arg_auth(const char *a, size_t alen, struct smtp_cmd *out)
{
    const char *sp = memchr(a, ' ', alen);
    size_t mlen = sp != NULL ? (size_t)(sp - a) : alen;

    (void)out;
    if (mlen == 0 || mlen > CMD_SASL_MECH_MAX) {
        return HF_ESYNTAX;
    }
    for (size_t i = 0; i < mlen; i++) {
        if (!cmd__is_alnum((unsigned char)a[i]) && a[i] != '-' && a[i] != '_') {
            return HF_ESYNTAX;
        }
    }
    if (sp != NULL) {
        const char *r = sp + 1;
        size_t rlen = alen - mlen - 1;
        if (rlen == 0) {
            return HF_ESYNTAX;
        }
        for (size_t i = 0; i < rlen; i++) {
            unsigned char c = (unsigned char)r[i];
            if (!cmd__is_alnum(c) && c != '+' && c != '/' && c != '=') {
                return HF_ESYNTAX;
            }
        }
    }
    return 0;
}

static const struct cmd__verb cmd__verbs[] = {
    {"HELO", SMTP_V_HELO, cmd__arg_helo},
    {"EHLO", SMTP_V_EHLO, cmd__arg_helo},
    {"MAIL", SMTP_V_MAIL, cmd__arg_mail},
    {"RCPT", SMTP_V_RCPT, cmd__arg_rcpt},
    {"DATA", SMTP_V_DATA, cmd__arg_none},
    {"BDAT", SMTP_V_BDAT, cmd__arg_bdat},
    {"RSET", SMTP_V_RSET, cmd__arg_none},
    {"NOOP", SMTP_V_NOOP, cmd__arg_opt},
    {"QUIT", SMTP_V_QUIT, cmd__arg_none},
    {"VRFY", SMTP_V_VRFY, cmd__arg_req},
    {"EXPN", SMTP_V_EXPN, cmd__arg_req},
    {"HELP", SMTP_V_HELP, cmd__arg_opt},
    {"ETRN", SMTP_V_ETRN, cmd__arg_etrn},
    {"ATRN", SMTP_V_ATRN, cmd__arg_atrn},
    {"TURN", SMTP_V_TURN, cmd__arg_none},
    {"STARTTLS", SMTP_V_STARTTLS, cmd__arg_none},
    {"AUTH", SMTP_V_AUTH, cmd__arg_auth},
    /* RFC 821 3.5: SEND, SOML and SAML FROM:<path>. Recognised so that the session answers
     * "502 not implemented" instead of "500 unrecognized"; their argument is not judged. */
    {"SEND", SMTP_V_SEND, cmd__arg_opt},
    {"SOML", SMTP_V_SOML, cmd__arg_opt},
    {"SAML", SMTP_V_SAML, cmd__arg_opt},
};

#define CMD_NVERBS (sizeof(cmd__verbs) / sizeof(cmd__verbs[0]))

/* The longest line, CRLF included, a verb may come in (smtp_cmd.h). */
static size_t cmd__line_max(enum smtp_verb v)
{
    switch (v) {
    case SMTP_V_MAIL:
        return SMTP_MAIL_LINE_MAX;
    case SMTP_V_RCPT:
        return SMTP_RCPT_LINE_MAX;
    default:
        return SMTP_CMD_LINE_MAX;
    }
}

const char *smtp_cmd_verb_name(enum smtp_verb v)
{
    for (size_t i = 0; i < CMD_NVERBS; i++) {
        if (cmd__verbs[i].verb == v) {
            return cmd__verbs[i].name;
        }
    }
    return "?";
}

int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out)
{
    const struct cmd__verb *vt = NULL;
    size_t vlen, astart, aend;

    memset(out, 0, sizeof(*out));
    /* RFC 5321 4.5.3.1.4: 512 octets with the CRLF, more for MAIL and RCPT (smtp_cmd.h). */
    if (len + 2 > SMTP_CMD_LINE_LONGEST) {
        return HF_ELONGLINE;
    }
    for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++) {
    }
    for (size_t i = 0; i < CMD_NVERBS; i++) {
        if (cmd__eq(line, vlen, cmd__verbs[i].name)) {
            vt = &cmd__verbs[i];
            break;
        }
    }
    if (len + 2 > cmd__line_max(vt != NULL ? vt->verb : SMTP_V_UNKNOWN)) {
        return HF_ELONGLINE;
    }
    /* A CR or LF here means the peer ended a line some other way than CRLF. */
    if (memchr(line, '\r', len) != NULL || memchr(line, '\n', len) != NULL) {
        return HF_EBARELF;
    }
    if (vt == NULL) {
        return HF_EUNKNOWN;
    }
    out->verb = vt->verb;
    if (memchr(line, '\0', len) != NULL) {
        return HF_ESYNTAX;
    }
    astart = vlen < len ? vlen + 1 : len;
    aend = len;
    while (astart < aend && cmd__is_blank(line[astart])) {
        astart++;
    }
    while (aend > astart && cmd__is_blank(line[aend - 1])) {
        aend--;
    }
    memcpy(out->arg, line + astart, aend - astart);
    out->arg[aend - astart] = '\0';
    return vt->parse(out->arg, aend - astart, out);
}
