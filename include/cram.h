/* CRAM-MD5 (RFC 2195), the SASL mechanism RFC 2645 names for ODMR and the only one
 * fetchmail's ODMR mode speaks: the server sends a challenge "<unique@host>", the client
 * answers "user SP hex(HMAC-MD5(secret, challenge))", both base64 on the wire.
 *
 * Both sides need the secret itself (not a one-way hash), which is why relayd keeps CRAM
 * secrets in their own file, only for users that need them, and calls it the weaker choice.
 * HMAC-MD5 is OpenSSL's (EVP_MAC or HMAC()); nothing here is hand-written crypto. */
#ifndef HF_CRAM_H
#define HF_CRAM_H

#include <stdbool.h>
#include <stddef.h>

/* Lower-case hex of the 16-octet digest, with its NUL. */
#define CRAM_HEX_LEN 33

/* Writes hex(HMAC-MD5(secret[0..slen), chal[0..clen))) to out. Returns 0, or -EIO when
 * OpenSSL refuses (e.g. MD5 disabled by a FIPS provider). */
int cram_md5_hex(const void *secret, size_t slen, const void *chal, size_t clen,
                 char out[CRAM_HEX_LEN]);

/* The client's response "user SP digest" for challenge chal, in out (outsz octets, NUL
 * ended; not yet base64). Returns 0, -ENOSPC, -EINVAL (user empty or with a space or a
 * control octet), -EIO. */
int cram_md5_response(const char *user, const void *secret, size_t slen, const void *chal,
                      size_t clen, char *out, size_t outsz);

/* Splits a decoded client response resp[0..len) at its last space into the user
 * (*user, *ulen, pointing into resp) and the 32 hex digits, and checks the digits against
 * the one computed from secret in constant time. Returns true only when they match.
 * cram_md5_split alone gives the user, so the caller can find that user's secret first:
 * returns 0 or -EINVAL (no space, empty user, digest not 32 hex digits). */
int cram_md5_split(const char *resp, size_t len, const char **user, size_t *ulen,
                   const char **hex);
bool cram_md5_check(const char *hex, const void *secret, size_t slen, const void *chal,
                    size_t clen);

#endif
