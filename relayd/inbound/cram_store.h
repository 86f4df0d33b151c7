/* CRAM-MD5 secrets for ODMR clients (RFC 2645 names CRAM-MD5; fetchmail's ODMR mode speaks
 * nothing else). CRAM-MD5 needs the secret itself on the server, so these live apart from
 * auth_file's scrypt hashes, only for the users that need them, in cram_file:
 *
 *     # user : base64 of the secret          (made by relayd --cram-secret USER)
 *     branch:c2VjcmV0LWZvci1icmFuY2g=
 *
 * A user here must also be in auth_file: the domains it may release come from there. The
 * file must not be readable by group or others (it holds usable secrets): that is an error,
 * as an ssh key would be. Every bad line is reported as file:line. Pure apart from reading
 * the file and the terminal in cram_secret_main. */
#ifndef HF_CRAM_STORE_H
#define HF_CRAM_STORE_H

#include <stddef.h>

#include "cfg.h"

struct cram_entry {
    char *user;
    char *secret; /* decoded, NUL-terminated (no NUL inside), 1-255 octets */
    size_t len;
    int line;
};

struct cram_store {
    struct cram_entry *v;
    size_t n;
};

/* Parses text[0..len) from file into *out (zeroed first; free with cram_store_free also after
 * an error). Returns 0, HF_ECONFIG (errs holds the bad lines; *out the good ones), -ENOMEM. */
int cram_store_parse(const char *text, size_t len, const char *file, struct cram_store *out,
                     struct cfg_errors *errs);

/* Reads path (at most 1 MiB; refused when group or others may read it) and parses it. */
int cram_store_load(const char *path, struct cram_store *out, struct cfg_errors *errs);

/* The entry of user[0..ulen) (exact match), or NULL. */
const struct cram_entry *cram_store_find(const struct cram_store *s, const char *user,
                                         size_t ulen);

/* Frees and wipes everything s holds (not s itself). */
void cram_store_free(struct cram_store *s);

/* relayd --cram-secret USER: reads the secret from standard input (twice without echo on a
 * terminal) and prints the cram_file line "USER:BASE64". Returns the exit status: 0, 1
 * (failure), 2 (usage). argv[0] is the program name, argv[1] the user. */
int cram_secret_main(int argc, char **argv);

#endif
