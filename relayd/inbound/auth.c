/* AUTH building blocks: the credentials file parser, scrypt password hashes and the strict
 * decoding of AUTH PLAIN and AUTH LOGIN responses. Pure apart from OpenSSL's cryptographic
 * primitives (scrypt, the random salt, constant-time comparison) and auth_passwd_main(), the
 * operator's command, which reads standard input. When AUTH is offered and what it allows is
 * decided by smtpd.c and the policy code. */
#include "auth.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "addr.h"
#include "hf_err.h"

/* New hashes: N = 2^15, r = 8, p = 1 (RFC 7914 7's interactive-login setting; 32 MiB). */
enum { AUTH_LN = 15, AUTH_R = 8, AUTH_P = 1, AUTH_SALT_LEN = 16, AUTH_KEY_LEN = 32 };
/* What a stored hash may ask for: enough room to raise the cost, bounded so a hostile file
 * cannot make one login allocate gigabytes. */
enum { AUTH_LN_MIN = 10, AUTH_LN_MAX = 20, AUTH_R_MAX = 32, AUTH_P_MAX = 16 };
#define AUTH_MEM_MAX  (256u * 1024 * 1024)
#define AUTH_FILE_MAX (1024 * 1024)

/* A parsed "$scrypt$..." string. */
struct auth_hash {
    unsigned ln, r, p;
    unsigned char salt[64];
    size_t saltlen;
    unsigned char key[64];
    size_t keylen;
};

/* ---- base64 (RFC 4648 4), strict ---- */

static const char auth_b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int auth_b64_val(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Encodes len octets; padded with '=' or not. Returns 0 or -ENOSPC. */
static int auth_b64_enc(const unsigned char *in, size_t len, bool pad, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        size_t n = len - i >= 3 ? 3 : len - i;
        if (n > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (n > 2)
            v |= in[i + 2];
        char q[4] = {auth_b64_alpha[v >> 18 & 63], auth_b64_alpha[v >> 12 & 63],
                     n > 1 ? auth_b64_alpha[v >> 6 & 63] : '=',
                     n > 2 ? auth_b64_alpha[v & 63] : '='};
        size_t emit = pad ? 4 : n + 1;
        if (outsz - o <= emit)
            return -ENOSPC;
        memcpy(out + o, q, emit);
        o += emit;
    }
    if (o >= outsz)
        return -ENOSPC;
    out[o] = '\0';
    return 0;
}

int auth_b64_encode(const void *s, size_t len, char *out, size_t outsz)
{
    if (outsz == 0)
        return -ENOSPC;
    return auth_b64_enc(s, len, true, out, outsz);
}

/* Decodes in[0..len) into out (outsz octets). padded: the length is a multiple of 4 and a
 * short final group is filled with '='; otherwise no '=' at all. Either way the unused low
 * bits of the last character must be zero, so every octet string has exactly one encoding.
 * Returns 0 and *outlen, HF_ESYNTAX, HF_ETOOBIG (does not fit in outsz). */
static int auth_b64_dec(const char *in, size_t len, bool padded, unsigned char *out, size_t outsz,
                        size_t *outlen)
{
    size_t pad = 0;
    if (padded) {
        if (len % 4 != 0)
            return HF_ESYNTAX;
        if (len >= 1 && in[len - 1] == '=')
            pad++;
        if (len >= 2 && in[len - 2] == '=')
            pad++;
        len -= pad;
    } else if (len % 4 == 1) {
        return HF_ESYNTAX;
    }
    /* After removing the padding: a full group, or 3 characters with one '=', 2 with two. */
    if (padded && pad && len % 4 != 4 - pad)
        return HF_ESYNTAX;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > outsz)
        return HF_ETOOBIG;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = auth_b64_val(in[i]);
        if (v < 0)
            return HF_ESYNTAX; /* also '=' in the middle, whitespace, NUL */
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return HF_ESYNTAX; /* stray bits: not the canonical encoding */
    *outlen = o;
    return 0;
}

void auth_wipe(void *p, size_t n)
{
    OPENSSL_cleanse(p, n);
}

/* ---- AUTH PLAIN and LOGIN ---- */

int auth_plain_decode(const char *b64, size_t len, struct auth_plain *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 1 && b64[0] == '*')
        return -ECANCELED;
    /* Three 255-octet fields and two NULs encode in 4 * ceil(767 / 3) = 1024 characters. */
    unsigned char msg[3 * AUTH_FIELD_MAX + 2];
    size_t n = 0;
    if (len > 1024)
        return HF_ETOOBIG;
    int rc = auth_b64_dec(b64, len, true, msg, sizeof(msg), &n);
    if (rc < 0)
        return rc;
    unsigned char *nul1 = memchr(msg, 0, n);
    unsigned char *nul2 = nul1 ? memchr(nul1 + 1, 0, n - (size_t)(nul1 + 1 - msg)) : NULL;
    rc = HF_ESYNTAX;
    if (!nul1 || !nul2 || memchr(nul2 + 1, 0, n - (size_t)(nul2 + 1 - msg)))
        goto out;
    size_t zl = (size_t)(nul1 - msg);
    size_t cl = (size_t)(nul2 - nul1 - 1);
    size_t pl = n - (size_t)(nul2 + 1 - msg);
    if (cl == 0 || pl == 0)
        goto out;
    rc = HF_ETOOBIG;
    if (zl > AUTH_FIELD_MAX || cl > AUTH_FIELD_MAX || pl > AUTH_FIELD_MAX)
        goto out;
    memcpy(out->authzid, msg, zl);
    memcpy(out->authcid, nul1 + 1, cl);
    memcpy(out->passwd, nul2 + 1, pl);
    rc = 0;
out:
    auth_wipe(msg, sizeof(msg));
    return rc;
}

int auth_login_decode(const char *b64, size_t len, char *out, size_t outsz)
{
    if (outsz)
        out[0] = '\0';
    if (len == 1 && b64[0] == '*')
        return -ECANCELED;
    if (len > 4 * ((AUTH_FIELD_MAX + 2) / 3))
        return HF_ETOOBIG;
    unsigned char buf[AUTH_FIELD_MAX + 2];
    size_t n = 0;
    int rc = auth_b64_dec(b64, len, true, buf, sizeof(buf), &n);
    if (rc < 0)
        goto out;
    rc = HF_ESYNTAX;
    if (n == 0 || memchr(buf, 0, n))
        goto out;
    rc = HF_ETOOBIG;
    if (n > AUTH_FIELD_MAX || n >= outsz)
        goto out;
    memcpy(out, buf, n);
    out[n] = '\0';
    rc = 0;
out:
    auth_wipe(buf, sizeof(buf));
    return rc;
}

int auth_plain_encode(const char *authcid, const char *passwd, char *out, size_t outsz)
{
    size_t cl = strlen(authcid), pl = strlen(passwd);
    if (cl == 0 || pl == 0 || cl > AUTH_FIELD_MAX || pl > AUTH_FIELD_MAX)
        return -EINVAL;
    unsigned char msg[2 * AUTH_FIELD_MAX + 2];
    msg[0] = 0;
    memcpy(msg + 1, authcid, cl);
    msg[1 + cl] = 0;
    memcpy(msg + 2 + cl, passwd, pl);
    int rc = outsz ? auth_b64_enc(msg, cl + pl + 2, true, out, outsz) : -ENOSPC;
    auth_wipe(msg, sizeof(msg));
    return rc;
}

/* ---- scrypt hashes ---- */

static int auth_parse_uint(const char **p, const char *prefix, unsigned max, unsigned *out)
{
    size_t pl = strlen(prefix);
    if (strncmp(*p, prefix, pl) != 0)
        return -EINVAL;
    const char *s = *p + pl;
    unsigned v = 0;
    if (*s < '0' || *s > '9' || (*s == '0' && s[1] >= '0' && s[1] <= '9'))
        return -EINVAL;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (unsigned)(*s - '0');
        if (v > max)
            return -EINVAL;
        s++;
    }
    *p = s;
    *out = v;
    return 0;
}

/* Parses "$scrypt$ln=N,r=R,p=P$salt$key". Returns 0, -EINVAL (with *why set). */
static int auth_hash_parse(const char *s, struct auth_hash *h, const char **why)
{
    *why = "not a \"$scrypt$ln=N,r=R,p=P$salt$key\" hash";
    if (strncmp(s, "$scrypt$", 8) != 0)
        return -EINVAL;
    const char *p = s + 8;
    if (auth_parse_uint(&p, "ln=", 99, &h->ln) < 0 || *p++ != ',' ||
        auth_parse_uint(&p, "r=", 9999, &h->r) < 0 || *p++ != ',' ||
        auth_parse_uint(&p, "p=", 9999, &h->p) < 0 || *p++ != '$')
        return -EINVAL;
    if (h->ln < AUTH_LN_MIN || h->ln > AUTH_LN_MAX || h->r < 1 || h->r > AUTH_R_MAX || h->p < 1 ||
        h->p > AUTH_P_MAX || 128ull * h->r * ((1ull << h->ln) + h->p + 2) > AUTH_MEM_MAX) {
        *why = "scrypt parameters out of range (ln 10-20, r 1-32, p 1-16, at most 256 MiB)";
        return -EINVAL;
    }
    const char *dollar = strchr(p, '$');
    if (!dollar)
        return -EINVAL;
    *why = "bad base64 in the salt or key of the hash";
    if (auth_b64_dec(p, (size_t)(dollar - p), false, h->salt, sizeof(h->salt), &h->saltlen) < 0 ||
        auth_b64_dec(dollar + 1, strlen(dollar + 1), false, h->key, sizeof(h->key), &h->keylen) < 0)
        return -EINVAL;
    if (h->saltlen < 8 || h->keylen < 16) {
        *why = "hash salt shorter than 8 octets or key shorter than 16";
        return -EINVAL;
    }
    return 0;
}

static int auth_scrypt(const char *password, const struct auth_hash *h, unsigned char *key,
                       size_t keylen)
{
    uint64_t n = 1ull << h->ln;
    uint64_t maxmem = 128ull * h->r * (n + h->p + 2) + 65536;
    if (EVP_PBE_scrypt(password, strlen(password), h->salt, h->saltlen, n, h->r, h->p, maxmem, key,
                       keylen) != 1) {
        ERR_clear_error(); /* nothing to log here: the caller reports -EIO */
        return -EIO;
    }
    return 0;
}

int auth_hash_password(const char *password, char *out, size_t outsz)
{
    size_t pl = strlen(password);
    if (pl == 0 || pl > AUTH_FIELD_MAX)
        return -EINVAL;
    struct auth_hash h = {.ln = AUTH_LN, .r = AUTH_R, .p = AUTH_P, .saltlen = AUTH_SALT_LEN};
    if (RAND_bytes(h.salt, AUTH_SALT_LEN) != 1) {
        ERR_clear_error();
        return -EIO;
    }
    unsigned char key[AUTH_KEY_LEN];
    int rc = auth_scrypt(password, &h, key, sizeof(key));
    if (rc < 0)
        return rc;
    char salt64[32], key64[64];
    if (auth_b64_enc(h.salt, AUTH_SALT_LEN, false, salt64, sizeof(salt64)) < 0 ||
        auth_b64_enc(key, sizeof(key), false, key64, sizeof(key64)) < 0)
        return -ENOSPC;
    auth_wipe(key, sizeof(key));
    int n = snprintf(out, outsz, "$scrypt$ln=%u,r=%u,p=%u$%s$%s", h.ln, h.r, h.p, salt64, key64);
    return (n < 0 || (size_t)n >= outsz) ? -ENOSPC : 0;
}

const struct auth_user *auth_user_find(const struct auth_store *s, const char *user)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, user) == 0)
            return &s->v[i];
    return NULL;
}

bool auth_user_may_release(const struct auth_user *u, const char *domain)
{
    if (u->all_domains)
        return true;
    for (size_t i = 0; i < u->ndomains; i++)
        if (strcasecmp(u->domains[i], domain) == 0)
            return true;
    return false;
}

int auth_verify(const struct auth_store *s, const char *user, const char *password,
                const struct auth_user **out)
{
    /* An unknown user is checked against this dummy, with the parameters of the first entry
     * (the same cost as a real check in a file whose hashes share parameters). */
    static const struct auth_hash dummy = {.ln = AUTH_LN,
                                           .r = AUTH_R,
                                           .p = AUTH_P,
                                           .saltlen = 16,
                                           .keylen = AUTH_KEY_LEN,
                                           .salt = "holdfast-dummy!",
                                           .key = {0}};
    const struct auth_user *u = auth_user_find(s, user);
    struct auth_hash h = dummy;
    const char *why;
    if (u) {
        if (auth_hash_parse(u->hash, &h, &why) < 0) /* checked at load: cannot happen */
            return -EACCES;
    } else if (s->n > 0 && auth_hash_parse(s->v[0].hash, &h, &why) == 0) {
        memcpy(h.salt, dummy.salt, dummy.saltlen);
        h.saltlen = dummy.saltlen;
        memset(h.key, 0, sizeof(h.key));
    } else {
        h = dummy;
    }
    unsigned char key[sizeof(h.key)];
    int rc = auth_scrypt(password, &h, key, h.keylen);
    if (rc < 0)
        return rc;
    bool same = CRYPTO_memcmp(key, h.key, h.keylen) == 0;
    auth_wipe(key, sizeof(key));
    if (!u || !same)
        return -EACCES;
    if (out)
        *out = u;
    return 0;
}

/* ---- the credentials file ---- */

/* Checks a user name: 1-255 octets, no ':', space or control character, valid UTF-8.
 * Returns NULL or what is wrong. */
const char *auth_name_problem(const char *s, size_t len)
{
    if (len == 0)
        return "empty user name";
    if (len > AUTH_FIELD_MAX)
        return "user name longer than 255 octets";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= ' ' || ch == 0x7f || ch == ':')
            return "user name contains a space, ':' or a control character";
    }
    if (!addr_utf8_is_valid(s, len))
        return "user name is not valid UTF-8";
    return NULL;
}

static void auth_user_free(struct auth_user *u)
{
    free(u->name);
    free(u->hash);
    for (size_t i = 0; i < u->ndomains; i++)
        free(u->domains[i]);
    free(u->domains);
    memset(u, 0, sizeof(*u));
}

/* Parses the domain field ("a.test, b.test", "*" or empty) into u. Returns 0, -EINVAL with
 * *why (and the bad name in bad), -ENOMEM. */
static int auth_parse_domains(const char *s, size_t len, struct auth_user *u, char *bad,
                              size_t badsz, const char **why)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        size_t start = i;
        while (i < len && s[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
            end--;
        if (i < len)
            i++; /* the comma */
        size_t dl = end - start;
        snprintf(bad, badsz, "%.*s", (int)(dl > 255 ? 255 : dl), s + start);
        if (dl == 1 && s[start] == '*') {
            u->all_domains = true;
            continue;
        }
        if (dl == 0) {
            *why = "empty domain in the list";
            return -EINVAL;
        }
        if (!addr_domain_is_valid(s + start, dl, false)) {
            *why = "bad domain";
            return -EINVAL;
        }
        char **v = realloc(u->domains, (u->ndomains + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        u->domains = v;
        if (!(v[u->ndomains] = strndup(s + start, dl)))
            return -ENOMEM;
        addr_lower(v[u->ndomains]);
        u->ndomains++;
    }
    if (u->all_domains && u->ndomains) {
        *why = "'*' stands for every domain and cannot be combined with names";
        bad[0] = '\0';
        return -EINVAL;
    }
    return 0;
}

/* Parses one line (no line end) into u. Returns 0, 1 for a blank or comment line,
 * -EINVAL (an error was appended to errs), -ENOMEM. */
static int auth_parse_line(const char *s, size_t len, const char *file, int line,
                           struct auth_user *u, struct cfg_errors *errs)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
        len--;
    if (len == 0 || s[0] == '#')
        return 1;
    int rc;
    if (memchr(s, '\0', len)) {
        rc = cfg_errors_add(errs, file, line, "NUL octet in line");
        return rc < 0 ? rc : -EINVAL;
    }
    const char *c1 = memchr(s, ':', len);
    if (!c1) {
        rc = cfg_errors_add(errs, file, line, "expected user:hash[:domains]");
        return rc < 0 ? rc : -EINVAL;
    }
    const char *why = auth_name_problem(s, (size_t)(c1 - s));
    if (why) {
        rc = cfg_errors_add(errs, file, line, "%s", why);
        return rc < 0 ? rc : -EINVAL;
    }
    const char *hs = c1 + 1;
    const char *end = s + len;
    const char *c2 = memchr(hs, ':', (size_t)(end - hs));
    const char *he = c2 ? c2 : end;
    if (c2 && memchr(c2 + 1, ':', (size_t)(end - c2 - 1))) {
        rc = cfg_errors_add(errs, file, line, "too many ':' fields (expected user:hash[:domains])");
        return rc < 0 ? rc : -EINVAL;
    }
    char hash[512];
    if ((size_t)(he - hs) >= sizeof(hash)) {
        rc = cfg_errors_add(errs, file, line, "password hash too long");
        return rc < 0 ? rc : -EINVAL;
    }
    memcpy(hash, hs, (size_t)(he - hs));
    hash[he - hs] = '\0';
    struct auth_hash h;
    if (auth_hash_parse(hash, &h, &why) < 0) {
        rc = cfg_errors_add(errs, file, line, "%s", why);
        return rc < 0 ? rc : -EINVAL;
    }
    memset(u, 0, sizeof(*u));
    u->line = line;
    u->name = strndup(s, (size_t)(c1 - s));
    u->hash = strdup(hash);
    if (!u->name || !u->hash) {
        auth_user_free(u);
        return -ENOMEM;
    }
    if (c2) {
        char bad[256];
        rc = auth_parse_domains(c2 + 1, (size_t)(end - c2 - 1), u, bad, sizeof(bad), &why);
        if (rc == -EINVAL) {
            auth_user_free(u);
            rc = bad[0] ? cfg_errors_add(errs, file, line, "%s '%s'", why, bad)
                        : cfg_errors_add(errs, file, line, "%s", why);
            return rc < 0 ? rc : -EINVAL;
        }
        if (rc < 0) {
            auth_user_free(u);
            return rc;
        }
    }
    return 0;
}

int auth_store_parse(const char *text, size_t len, const char *file, struct auth_store *out,
                     struct cfg_errors *errs)
{
    memset(out, 0, sizeof(*out));
    size_t cap = 0;
    int line = 0;
    bool bad = false;
    size_t pos = 0;
    while (pos < len) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + (nl ? 1 : 0);
        line++;
        struct auth_user u;
        int rc = auth_parse_line(s, l, file, line, &u, errs);
        if (rc == 1)
            continue;
        if (rc == -EINVAL) {
            bad = true;
            continue;
        }
        if (rc < 0)
            return rc;
        const struct auth_user *dup = auth_user_find(out, u.name);
        if (dup) {
            rc = cfg_errors_add(errs, file, line, "duplicate user '%s' (first on line %d)", u.name,
                                dup->line);
            auth_user_free(&u);
            if (rc < 0)
                return rc;
            bad = true;
            continue;
        }
        if (out->n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct auth_user *v = realloc(out->v, ncap * sizeof(*v));
            if (!v) {
                auth_user_free(&u);
                return -ENOMEM;
            }
            out->v = v;
            cap = ncap;
        }
        out->v[out->n++] = u;
    }
    return bad ? HF_ECONFIG : 0;
}

int auth_file_read(const char *path, bool private_only, char **text, size_t *len,
                   struct cfg_errors *errs)
{
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        int rc = cfg_errors_add(errs, path, 0, "cannot read: %s", strerror(e));
        return rc < 0 ? rc : HF_ECONFIG;
    }
    struct stat st;
    if (private_only && fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO))) {
        fclose(f);
        int rc = cfg_errors_add(errs, path, 0,
                                "mode %04o lets group or others read the secrets; chmod 600 it",
                                (unsigned)(st.st_mode & 07777));
        return rc < 0 ? rc : HF_ECONFIG;
    }
    char *buf = malloc(AUTH_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, AUTH_FILE_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n > AUTH_FILE_MAX) {
        auth_wipe(buf, n);
        free(buf);
        int rc = cfg_errors_add(errs, path, 0, "%s",
                                rerr ? "read error" : "file larger than 1 MiB");
        return rc < 0 ? rc : HF_ECONFIG;
    }
    *text = buf;
    *len = n;
    return 0;
}

int auth_store_load(const char *path, struct auth_store *out, struct cfg_errors *errs)
{
    memset(out, 0, sizeof(*out));
    char *text;
    size_t len;
    int rc = auth_file_read(path, false, &text, &len, errs);
    if (rc < 0)
        return rc;
    rc = auth_store_parse(text, len, path, out, errs);
    auth_wipe(text, len);
    free(text);
    return rc;
}

void auth_store_free(struct auth_store *s)
{
    for (size_t i = 0; i < s->n; i++)
        auth_user_free(&s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* ---- relayd --hash-password ---- */

/* Reads one line of at most AUTH_FIELD_MAX octets from stdin into buf (line end removed).
 * Returns its length, -1 at EOF or error, -2 when too long or containing NUL. */
static int auth_read_line(char *buf, size_t sz)
{
    size_t n = 0;
    int ch;
    bool bad = false;
    while ((ch = getchar()) != EOF && ch != '\n') {
        if (ch == '\0' || n + 1 >= sz)
            bad = true;
        else
            buf[n++] = (char)ch;
    }
    if (ch == EOF && n == 0 && !bad)
        return -1;
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return bad ? -2 : (int)n;
}

/* Reads the password, asking twice without echo on a terminal. Returns 0 or 1 (reported). */
int auth_read_password(char *pw, size_t sz)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty && tcgetattr(STDIN_FILENO, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    } else {
        tty = false;
    }
    char again[AUTH_FIELD_MAX + 2];
    int status = 0;
    if (tty)
        fputs("Password: ", stderr);
    int n = auth_read_line(pw, sz);
    if (tty && n >= 0) {
        fputs("\nAgain: ", stderr);
        int m = auth_read_line(again, sizeof(again));
        if (m != n || strcmp(pw, again) != 0) {
            fputs("\npasswords do not match\n", stderr);
            status = 1;
        }
    }
    if (tty) {
        fputs("\n", stderr);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    }
    auth_wipe(again, sizeof(again));
    if (status)
        return status;
    if (n == -2) {
        fprintf(stderr, "password longer than %d octets or containing NUL\n", AUTH_FIELD_MAX);
        return 1;
    }
    if (n <= 0) {
        fputs("empty password (or none on standard input)\n", stderr);
        return 1;
    }
    return 0;
}

int auth_passwd_main(int argc, char **argv)
{
    const char *prog = argc > 0 && argv[0] ? argv[0] : "relayd";
    if (argc > 3 || (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
        fprintf(stderr,
                "usage: %s --hash-password [USER [DOMAINS]]\n"
                "reads a password from standard input and prints its scrypt hash, or the\n"
                "credentials line USER:HASH:DOMAINS (DOMAINS: a.test,b.test or *)\n",
                prog);
        return 2;
    }
    const char *user = argc > 1 ? argv[1] : NULL;
    const char *domains = argc > 2 ? argv[2] : "";
    if (user) {
        const char *why = auth_name_problem(user, strlen(user));
        struct auth_user u = {0};
        char bad[256];
        int rc = why ? -EINVAL
                     : auth_parse_domains(domains, strlen(domains), &u, bad, sizeof(bad), &why);
        auth_user_free(&u);
        if (rc < 0) {
            fprintf(stderr, "%s: %s\n", prog, why ? why : hf_strerror(rc));
            return 2;
        }
    }
    char pw[AUTH_FIELD_MAX + 2];
    if (auth_read_password(pw, sizeof(pw)) != 0) {
        auth_wipe(pw, sizeof(pw));
        return 1;
    }
    char hash[AUTH_HASH_MAX];
    int rc = auth_hash_password(pw, hash, sizeof(hash));
    auth_wipe(pw, sizeof(pw));
    if (rc < 0) {
        fprintf(stderr, "%s: hashing failed: %s\n", prog, hf_strerror(rc));
        return 1;
    }
    if (user)
        printf("%s:%s:%s\n", user, hash, domains);
    else
        printf("%s\n", hash);
    return fflush(stdout) == 0 ? 0 : 1;
}
