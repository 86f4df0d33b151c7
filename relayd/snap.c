/* Configuration snapshots (snap.h): loading one the way `relayd -t` checks a configuration,
 * the session parameters it implies, and its reference count. Loading reads files (config,
 * recipients, credentials, certificate) but touches no socket and no daemon state, so the
 * same function serves start-up, -t and SIGHUP. */
#include "snap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_err.h"
#include "privdrop.h"
#include "tls.h"

static bool snap_set(const char *s)
{
    return s && s[0];
}

int relayd_snap_load(const char *path, struct cfg_errors *errs, int *tls_rc,
                     struct relayd_snap **out)
{
    *out = NULL;
    *tls_rc = 0;
    struct relayd_snap *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->refs = 1;
    struct cfg *c = &s->cfg;
    int rc = cfg_load(path, c, errs);
    if (rc == 0)
        rc = policy_new(c, errs, &s->policy);
    if (rc == 0 && snap_set(c->auth_file)) {
        rc = auth_store_load(c->auth_file, &s->auth, errs);
        s->auth_loaded = rc == 0;
    }
    bool odmr = snap_set(c->listen_odmr) || snap_set(c->listen_odmr_tls);
    if (rc == 0 && odmr && !snap_set(c->auth_file))
        rc = cfg_errors_add(errs, path, 0,
                            "listen_odmr needs auth_file: it names the domains each user may "
                            "release with ATRN") < 0
                 ? -ENOMEM
                 : HF_ECONFIG;
    if (rc == 0 && snap_set(c->cram_file) && !odmr)
        rc = cfg_errors_add(errs, path, 0,
                            "cram_file is only used on ODMR listeners: set listen_odmr") < 0
                 ? -ENOMEM
                 : HF_ECONFIG;
    if (rc == 0 && snap_set(c->cram_file)) {
        rc = cram_store_load(c->cram_file, &s->cram, errs);
        s->cram_loaded = rc == 0;
    }
    if (rc == 0 && snap_set(c->listen_odmr_tls) && !snap_set(c->tls_cert))
        rc = cfg_errors_add(errs, path, 0, "listen_odmr_tls needs tls_cert and tls_key") < 0
                 ? -ENOMEM
                 : HF_ECONFIG;
    if (rc == 0 && snap_set(c->user)) {
        /* -t tells about a user that does not exist now, not only the start. */
        struct privdrop p;
        char why[256];
        if (privdrop_resolve(c->user, c->group, &p, why, sizeof(why)) < 0)
            rc = cfg_errors_add(errs, path, 0, "user = %s: %s", c->user, why) < 0 ? -ENOMEM
                                                                                  : HF_ECONFIG;
    }
    if (rc == 0 && snap_set(c->tls_cert) != snap_set(c->tls_key))
        rc = cfg_errors_add(errs, path, 0, "tls_cert and tls_key go together") < 0 ? -ENOMEM
                                                                                   : HF_ECONFIG;
    if (rc == 0 && snap_set(c->tls_cert)) {
        rc = tls_ctx_server_new(c->tls_cert, c->tls_key, &s->tls_server);
        *tls_rc = rc;
        if (rc < 0)
            rc = cfg_errors_add(errs, path, 0, "cannot load tls_cert=%s tls_key=%s (%s)",
                                c->tls_cert, c->tls_key, hf_strerror(rc)) < 0
                     ? -ENOMEM
                     : HF_ECONFIG;
    }
    if (rc < 0 || errs->n) {
        relayd_snap_unref(s);
        return rc == -ENOMEM ? rc : HF_ECONFIG;
    }
    *out = s;
    return 0;
}

void relayd_snap_params(struct relayd_snap *s, const char *hostname, size_t *mem_used,
                        bool tls_available)
{
    const struct cfg *c = &s->cfg;
    struct smtpd_params *p = &s->prm;
    memset(p, 0, sizeof(*p));
    p->hostname = hostname;
    p->max_size = c->max_message_size;
    p->max_rcpts = (unsigned)c->max_recipients;
    p->max_bad = (unsigned)c->max_bad_commands;
    p->bare_normalise = strcmp(c->bare_lf, "normalise") == 0;
    p->etrn = c->etrn_enable;
    p->tls_available = tls_available;
    p->auth_available = s->auth_loaded && tls_available;
    p->submission = c->submission;
    p->submission_users = c->submission_users;
    p->mem_used = mem_used;
    p->mem_limit = (size_t)c->max_data_memory;
    /* The SMTP port's ATRN reply names where ATRN is served. */
    const char *ol = snap_set(c->listen_odmr) ? c->listen_odmr : c->listen_odmr_tls;
    s->atrn_where[0] = '\0';
    if (snap_set(ol)) {
        size_t wl = strcspn(ol, " ");
        snprintf(s->atrn_where, sizeof(s->atrn_where), "%.*s", (int)wl, ol);
        p->atrn_where = s->atrn_where;
    }
    s->prm_odmr = *p;
    s->prm_odmr.odmr = true;
    s->prm_odmr.atrn_where = NULL;
    s->prm_odmr.etrn = false;
    s->prm_odmr.submission = false;
    s->prm_odmr.cram_available = s->cram_loaded && s->cram.n > 0;
}

int relayd_snap_warnings(const struct relayd_snap *s, void (*warn)(void *arg, const char *text),
                         void *arg)
{
    const struct cfg *c = &s->cfg;
    const char *list = c->submission_users;
    int n = 0;
    char text[400];
    for (size_t i = 0; s->auth_loaded && i < s->cram.n; i++) {
        if (!auth_user_find(&s->auth, s->cram.v[i].user)) {
            snprintf(text, sizeof(text),
                     "cram_file %s line %d: %s is not in auth_file %s, so ATRN releases "
                     "nothing for it",
                     c->cram_file, s->cram.v[i].line, s->cram.v[i].user, c->auth_file);
            warn(arg, text);
            n++;
        }
    }
    if (!s->auth_loaded || !c->submission || !list)
        return n;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t wl = strcspn(p, " ,");
        if (wl == 1 && *p == '*') {
            snprintf(text, sizeof(text),
                     "submission_users = *: every user in auth_file %s may relay to any domain "
                     "(an authenticated open relay for each account); list the users instead",
                     c->auth_file);
            warn(arg, text);
            n++;
        } else if (wl) {
            char user[256];
            snprintf(user, sizeof(user), "%.*s", (int)wl, p);
            if (!auth_user_find(&s->auth, user)) {
                snprintf(text, sizeof(text), "submission_users names %s, who is not in %s",
                         user, c->auth_file);
                warn(arg, text);
                n++;
            }
        }
        p += wl;
    }
    return n;
}

struct relayd_snap *relayd_snap_ref(struct relayd_snap *s)
{
    s->refs++;
    return s;
}

void relayd_snap_unref(struct relayd_snap *s)
{
    if (!s || --s->refs > 0)
        return;
    policy_free(s->policy);
    auth_store_free(&s->auth);
    cram_store_free(&s->cram);
    tls_ctx_free(s->tls_server);
    cfg_free(&s->cfg);
    free(s);
}
