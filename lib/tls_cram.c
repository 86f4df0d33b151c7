/* CRAM-MD5 digests and responses (see cram.h), on OpenSSL's HMAC. */
#include "cram.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int cram_md5_hex(const void *secret, size_t slen, const void *chal, size_t clen,
                 char out[CRAM_HEX_LEN])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (slen > (size_t)INT32_MAX)
        return -EINVAL;
    /* An empty key is legal in HMAC; OpenSSL wants a non-NULL pointer for it. */
    if (!HMAC(EVP_md5(), slen ? secret : (const void *)"", (int)slen,
              clen ? chal : (const void *)"", clen, md, &mdlen) ||
        mdlen != 16)
        return -EIO;
    for (unsigned i = 0; i < 16; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[32] = '\0';
    OPENSSL_cleanse(md, sizeof(md));
    return 0;
}

int cram_md5_response(const char *user, const void *secret, size_t slen, const void *chal,
                      size_t clen, char *out, size_t outsz)
{
    size_t ulen = strlen(user);
    char hex[CRAM_HEX_LEN];

    if (ulen == 0)
        return -EINVAL;
    for (size_t i = 0; i < ulen; i++)
        if ((unsigned char)user[i] <= 0x20 || user[i] == 0x7f)
            return -EINVAL;
    if (ulen + 1 + 32 + 1 > outsz)
        return -ENOSPC;
    int rc = cram_md5_hex(secret, slen, chal, clen, hex);
    if (rc)
        return rc;
    memcpy(out, user, ulen);
    out[ulen] = ' ';
    memcpy(out + ulen + 1, hex, CRAM_HEX_LEN);
    OPENSSL_cleanse(hex, sizeof(hex));
    return 0;
}

int cram_md5_split(const char *resp, size_t len, const char **user, size_t *ulen,
                   const char **hex)
{
    size_t sp = len;
    while (sp > 0 && resp[sp - 1] != ' ')
        sp--;
    /* sp is one past the last space; the digest is what follows it. */
    if (sp < 2 || len - sp != 32)
        return -EINVAL;
    for (size_t i = sp; i < len; i++) {
        char c = resp[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return -EINVAL;
    }
    for (size_t i = 0; i < sp - 1; i++)
        if ((unsigned char)resp[i] < 0x20 || resp[i] == 0x7f)
            return -EINVAL;
    *user = resp;
    *ulen = sp - 1;
    *hex = resp + sp;
    return 0;
}

bool cram_md5_check(const char *hex, const void *secret, size_t slen, const void *chal,
                    size_t clen)
{
    char want[CRAM_HEX_LEN];
    char got[32];

    if (cram_md5_hex(secret, slen, chal, clen, want))
        return false;
    /* RFC 2195 writes the digest in lower case; accept upper case hex as well. */
    for (int i = 0; i < 32; i++) {
        char c = hex[i];
        got[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    bool ok = CRYPTO_memcmp(got, want, 32) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    return ok;
}
