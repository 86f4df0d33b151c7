/* Which domains an ATRN asks to release (RFC 2645 4.2), decided from the authenticated
 * user's entry in auth_file. Pure: no queue, no loop; flush_atrn.c adds what only the queue
 * and the running releases know (busy, held, nothing waiting).
 *
 *   "ATRN"            every domain the user may release: the domains listed for it, or for
 *                     a "*" user every served domain that has mail waiting (queued[]);
 *   "ATRN a.test,b"   exactly those, each one the user's (and, for "*", one we serve);
 *                     one that is not makes the whole request 450, naming it. */
#ifndef HF_ATRN_H
#define HF_ATRN_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"

#define ATRN_DOMAINS_MAX 64

struct atrn_ask {
    char domains[ATRN_DOMAINS_MAX][256]; /* lower case, each once, in the order asked */
    size_t n;
    bool named; /* the client named them (not "every domain of mine") */
};

/* Fills *out for user u (NULL: a user with no auth_file entry, who may release nothing) and
 * the argument arg ("" or a comma list the grammar already checked). serves(arg, d) tells
 * whether this relay serves d (only asked for "*" users); queued[0..nqueued) are the domains
 * with mail waiting. Returns 0 (out->n may be 0: nothing of the user's), 450 (a named
 * domain is not the user's: why says which), 501 (more than ATRN_DOMAINS_MAX domains, an
 * empty or over-long name). */
int atrn_ask_domains(const struct auth_user *u, const char *arg,
                     bool (*serves)(void *sarg, const char *domain), void *sarg,
                     const char *const *queued, size_t nqueued, struct atrn_ask *out, char *why,
                     size_t whysz);

#endif
