/* SMTP AUTH (RFC 4954) building blocks: the credentials file, password hashes, and the
 * decoding of AUTH PLAIN (RFC 4616) and AUTH LOGIN responses. No sockets, loop or clock;
 * the SMTP dialogue (when AUTH is offered: only over TLS; rate limits; replies) belongs to
 * smtpd.c and its glue.
 *
 * Credentials file: one user a line, "#" starts a comment line, blank lines are ignored.
 *
 *     # user : password hash                                  : domains it may release
 *     alice:$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$...:branch.test,backup.test
 *     bob:$scrypt$ln=15,r=8,p=1$...$...
 *     ops:$scrypt$ln=15,r=8,p=1$...$...:*
 *
 * The user name is 1-255 octets without ':', spaces or control characters (UTF-8 allowed)
 * and is compared exactly (case matters, as in SASL). The third field lists the domains the
 * user may release with ETRN/ATRN, comma-separated; missing or empty means none (the user
 * may still authenticate, e.g. to submit mail); "*" alone means every domain the relay
 * serves. Every bad line is reported as file:line (struct cfg_errors), not only the first.
 *
 * Password hash: scrypt (RFC 7914) from OpenSSL (EVP_PBE_scrypt), in the self-describing
 * form "$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<key>", salt and key in standard base64
 * without padding (as in the PHC string format). New hashes use N=2^15, r=8, p=1 (32 MiB,
 * about 0.1 s), a 16-octet random salt and a 32-octet key. Why scrypt: it is memory-hard
 * (a GPU or ASIC attacker pays in memory for every guess, unlike PBKDF2), it is salted and
 * tunable in the hash itself, and OpenSSL already provides it, so no new dependency (libcrypt's
 * yescrypt would be one, and its availability varies by libc). */
#ifndef HF_AUTH_H
#define HF_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"

/* The longest field RFC 4616 allows (authzid, authcid, passwd), and what LOGIN accepts. */
#define AUTH_FIELD_MAX 255
/* Buffer size for a hash made by auth_hash_password() (with its NUL). */
#define AUTH_HASH_MAX 128
/* AUTH LOGIN's two challenges, "Username:" and "Password:" in base64. */
#define AUTH_LOGIN_USER_PROMPT "VXNlcm5hbWU6"
#define AUTH_LOGIN_PASS_PROMPT "UGFzc3dvcmQ6"

struct auth_user {
    char *name;
    char *hash;     /* "$scrypt$..." as in the file (checked when loaded) */
    char **domains; /* lower-case domain names the user may release */
    size_t ndomains;
    bool all_domains; /* "*": every domain */
    int line;
};

struct auth_store {
    struct auth_user *v;
    size_t n;
};

/* Parses the credentials text[0..len) that came from file (borrowed; used in errors) into
 * *out (zeroed first; free with auth_store_free, also after an error). Every bad line is
 * appended to *errs with its line number and parsing goes on. Returns 0, HF_ECONFIG when
 * errs holds at least one error (then *out holds the good lines), -ENOMEM. */
int auth_store_parse(const char *text, size_t len, const char *file, struct auth_store *out,
                     struct cfg_errors *errs);

/* Reads a credentials or secrets file whole into *text (malloc'd; the caller wipes and frees
 * it) and *len: at most 1 MiB; with private_only refused when group or others may read it.
 * A problem is one error with line 0. Returns 0, HF_ECONFIG, -ENOMEM. */
int auth_file_read(const char *path, bool private_only, char **text, size_t *len,
                   struct cfg_errors *errs);

/* Reads path (at most 1 MiB) and parses it. An unreadable file is one error with line 0.
 * Returns as auth_store_parse. */
int auth_store_load(const char *path, struct auth_store *out, struct cfg_errors *errs);

/* Frees everything s holds (not s itself) and zeroes it. */
void auth_store_free(struct auth_store *s);

/* Finds user (exact match). Returns the entry (valid while the store lives) or NULL. */
const struct auth_user *auth_user_find(const struct auth_store *s, const char *user);

/* True when u may release domain (exact, case-insensitive match, or "*"). */
bool auth_user_may_release(const struct auth_user *u, const char *domain);

/* Checks password (NUL-terminated, borrowed) for user. An unknown user costs the same scrypt
 * computation as a known one (against a dummy hash with the store's parameters) and gets the
 * same code as a wrong password, so neither replies nor timing tell them apart; the key
 * comparison is constant-time (CRYPTO_memcmp). Returns 0 and *out (the entry, may be NULL
 * when not wanted), -EACCES (unknown user or wrong password), -ENOMEM or -EIO (the scrypt
 * computation failed: answer 454 4.7.0, temporary). */
int auth_verify(const struct auth_store *s, const char *user, const char *password,
                const struct auth_user **out);

/* Hashes password (NUL-terminated, 1-255 octets) with a fresh random salt into out (outsz at
 * least AUTH_HASH_MAX). Returns 0, -EINVAL (empty or too long password), -ENOSPC, -EIO (no
 * randomness or scrypt failed). */
int auth_hash_password(const char *password, char *out, size_t outsz);

/* A decoded AUTH PLAIN message (RFC 4616: [authzid] NUL authcid NUL passwd). */
struct auth_plain {
    char authzid[AUTH_FIELD_MAX + 1]; /* "" when not given */
    char authcid[AUTH_FIELD_MAX + 1];
    char passwd[AUTH_FIELD_MAX + 1];
};

/* Decodes the base64 response b64[0..len) (the initial response or the line after 334;
 * CRLF removed) of AUTH PLAIN. Base64 is strict (RFC 4648: padding required, no whitespace,
 * no stray bits). Returns 0 and *out; -ECANCELED for "*" (the client cancels, RFC 4954 4:
 * answer 501); HF_ESYNTAX for bad base64, a missing or extra NUL, an empty authcid or an
 * empty password (answer 501 5.5.2); HF_ETOOBIG when a field is over 255 octets or the input
 * could not hold three such fields (answer 500 5.5.6). The caller refuses an authzid that
 * differs from authcid (we do not act for others) and wipes *out (auth_wipe) after use. */
int auth_plain_decode(const char *b64, size_t len, struct auth_plain *out);

/* Decodes one AUTH LOGIN response (the user name or the password) into out (outsz octets,
 * NUL-terminated). Returns 0, -ECANCELED ("*"), HF_ESYNTAX (bad base64, empty, contains
 * NUL), HF_ETOOBIG (over 255 octets or over outsz - 1). */
int auth_login_decode(const char *b64, size_t len, char *out, size_t outsz);

/* For clients (fetchd): the AUTH PLAIN initial response for authcid and passwd (no authzid),
 * base64 into out (NUL-terminated). Returns 0, -EINVAL (empty or over 255 octets), -ENOSPC. */
int auth_plain_encode(const char *authcid, const char *passwd, char *out, size_t outsz);

/* Base64 (padded) of s into out (NUL-terminated), e.g. for AUTH LOGIN responses.
 * Returns 0 or -ENOSPC. */
int auth_b64_encode(const void *s, size_t len, char *out, size_t outsz);

/* Overwrites n octets at p with zeros in a way the compiler keeps (OPENSSL_cleanse). */
void auth_wipe(void *p, size_t n);

/* Why s[0..len) cannot be a user name (1-255 octets, no ':', space or control octet), as a
 * static sentence, or NULL when it can. */
const char *auth_name_problem(const char *s, size_t len);

/* Reads a password from standard input into pw (sz octets, NUL-terminated): asks twice
 * without echo on a terminal, otherwise takes the first line. Returns 0, or 1 after
 * printing why not (empty, too long, NUL, the two differ). */
int auth_read_password(char *pw, size_t sz);

/* The operator's password hashing command, meant for `relayd --hash-password [USER
 * [DOMAINS]]`: argv[0] is the program name, argv[1] an optional user name, argv[2] optional
 * domains ("a.test,b.test" or "*"). Reads the password from standard input (asks twice
 * without echo when it is a terminal; otherwise takes the first line) and prints the hash,
 * or, with USER, a complete credentials line "USER:HASH:DOMAINS". Messages go to stderr.
 * Returns the exit status: 0, 1 (failure), 2 (usage). */
int auth_passwd_main(int argc, char **argv);

#endif
