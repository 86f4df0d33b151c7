/* A configuration snapshot: everything relayd builds from its configuration files (the
 * parsed config, the relay policy with its recipients files, the credentials, the session
 * parameters), reference-counted so that a SIGHUP reload can swap in a new one while the
 * sessions, AUTH checks and queue runs that started under the old one keep theirs until they
 * end. Only the loop thread takes and drops references; an AUTH job in the thread pool reads
 * a snapshot it holds a reference to, and nothing in a snapshot changes after it is built. */
#ifndef HF_RELAYD_SNAP_H
#define HF_RELAYD_SNAP_H

#include <stdbool.h>

#include "auth.h"
#include "cfg.h"
#include "cram_store.h"
#include "policy.h"
#include "smtpd.h"

struct tls_ctx;

struct relayd_snap {
    unsigned refs;
    struct cfg cfg;
    struct policy *policy; /* borrows cfg */
    struct auth_store auth;
    bool auth_loaded;
    struct cram_store cram; /* cram_file's CRAM-MD5 secrets (ODMR) */
    bool cram_loaded;
    struct smtpd_params prm; /* hostname and mem_used point into relayd (set by main) */
    struct smtpd_params prm_odmr; /* the same for sessions on ODMR listeners */
    char atrn_where[160];         /* the first ODMR listener, for the SMTP port's ATRN reply */
    /* The server certificate loaded while checking (what -t checks); the caller takes it
     * (sets it NULL) or it is freed with the snapshot. */
    struct tls_ctx *tls_server;
};

/* Loads path and everything it names (recipients files, auth_file, the TLS pair), as
 * `relayd -t` checks it. Every problem goes to *errs (file:line); problems outside a file's
 * lines are printed there with line 0. Returns 0 and *out (owned: one reference, drop it
 * with relayd_snap_unref), HF_ECONFIG (errs filled, *out NULL), or -ENOMEM. *tls_rc is the
 * result of loading the certificate pair (0 also when none is configured). */
int relayd_snap_load(const char *path, struct cfg_errors *errs, int *tls_rc,
                     struct relayd_snap **out);

/* Fills s->prm from s->cfg; hostname and mem_used are borrowed pointers (they outlive every
 * snapshot), tls_available tells whether relayd has a server certificate. */
void relayd_snap_params(struct relayd_snap *s, const char *hostname, size_t *mem_used,
                        bool tls_available);

/* Calls warn(arg, text) for each setting of s that is allowed but probably not meant:
 * submission granted to every user of auth_file (submission_users = *), a user listed in
 * submission_users who is not in auth_file, a cram_file user who is not in auth_file (it
 * could authenticate but release nothing). Returns how many. */
int relayd_snap_warnings(const struct relayd_snap *s, void (*warn)(void *arg, const char *text),
                         void *arg);

/* Takes one more reference; returns s. */
struct relayd_snap *relayd_snap_ref(struct relayd_snap *s);
/* Drops one reference; the last frees everything. NULL is ignored. */
void relayd_snap_unref(struct relayd_snap *s);

#endif
