/* SIGHUP reload: load and check the configuration files again, keep what can only change
 * at start, and swap the snapshot. What can change: domains and groups, recipients files,
 * credentials, the TLS certificate pair, limits and timeouts of new sessions, ETRN networks
 * and rates, per-domain delivery settings of new queue runs. What cannot (listeners, the
 * queue, the control socket, the user, the resolver...) is named in the key table with
 * cfg_key_is_restart(); a change to one is logged and left for the next start. */
#include "reload.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "etrn_io.h"
#include "expire_reload.h"
#include "hf_err.h"
#include "log.h"
#include "probe.h"
#include "snap.h"
#include "tls.h"

static void reload_warn(void *arg, const char *text)
{
    (void)arg;
    log_warn("reload: %s", text);
}

void relayd_snap_install(struct relayd *rd, struct relayd_snap *s)
{
    struct relayd_snap *old = rd->snap;
    relayd_snap_params(s, rd->prm.hostname, &rd->data_mem, rd->tls_server != NULL);
    /* Accept only while the primary is down: RCPT asks the probes (probe.h). */
    s->prm.primary_up = probe_primary_up;
    s->prm.primary_arg = rd;
    rd->snap = s;
    rd->cfg = &s->cfg;
    rd->policy = s->policy;
    rd->auth = &s->auth;
    rd->auth_loaded = s->auth_loaded;
    rd->prm = s->prm;
    relayd_snap_unref(old);
}

static bool reload_has(const char *s)
{
    return s && s[0];
}

/* Copies the running value of every read-at-start key into nc, logging each that the new
 * file changed. Returns 0 or -ENOMEM. */
static int reload_keep_restart_keys(const struct cfg *oc, struct cfg *nc)
{
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        if (k->section != CFG_SEC_GLOBAL || !(cfg_key_is_restart(k)))
            continue;
        const char *of = (const char *)oc + k->offset;
        char *nf = (char *)nc + k->offset;
        switch (k->type) {
        case CFG_T_STR:
        case CFG_T_PATH:
        case CFG_T_ENUM: {
            const char *ov = *(char *const *)(const void *)of;
            char **nv = (char **)(void *)nf;
            if (strcmp(ov ? ov : "", *nv ? *nv : "") == 0)
                continue;
            log_warn("reload: %s changed from '%s' to '%s'; it is read at start only, the "
                     "running value stays until relayd is restarted",
                     k->name, ov ? ov : "", *nv ? *nv : "");
            char *copy = ov ? strdup(ov) : NULL;
            if (ov && !copy)
                return -ENOMEM;
            free(*nv);
            *nv = copy;
            break;
        }
        case CFG_T_U64:
        case CFG_T_SIZE:
        case CFG_T_SECONDS: {
            uint64_t ov, nv;
            memcpy(&ov, of, sizeof(ov));
            memcpy(&nv, nf, sizeof(nv));
            if (ov == nv)
                continue;
            log_warn("reload: %s changed from %" PRIu64 " to %" PRIu64 "; it is read at start "
                     "only, the running value stays until relayd is restarted",
                     k->name, ov, nv);
            memcpy(nf, &ov, sizeof(ov));
            break;
        }
        case CFG_T_BOOL: {
            bool ov, nv;
            memcpy(&ov, of, sizeof(ov));
            memcpy(&nv, nf, sizeof(nv));
            if (ov == nv)
                continue;
            log_warn("reload: %s changed from %s to %s; it is read at start only, the running "
                     "value stays until relayd is restarted",
                     k->name, ov ? "yes" : "no", nv ? "yes" : "no");
            memcpy(nf, &ov, sizeof(ov));
            break;
        }
        }
    }
    return 0;
}

/* TLS on or off changes what listen_tls ports and EHLO offer: that waits for a restart.
 * Returns 0 or -ENOMEM. */
static int reload_keep_tls_state(struct relayd *rd, struct relayd_snap *ns)
{
    bool was = rd->tls_server != NULL, now = ns->tls_server != NULL;
    if (was == now)
        return 0;
    log_warn("reload: TLS %s (tls_cert/tls_key); turning TLS on or off needs a restart, so "
             "TLS stays %s",
             now ? "configured" : "removed", was ? "on with the running certificate" : "off");
    tls_ctx_free(ns->tls_server);
    ns->tls_server = NULL;
    char *c = reload_has(rd->cfg->tls_cert) ? strdup(rd->cfg->tls_cert) : NULL;
    char *k = reload_has(rd->cfg->tls_key) ? strdup(rd->cfg->tls_key) : NULL;
    if ((was && (!c || !k))) {
        free(c);
        free(k);
        return -ENOMEM;
    }
    free(ns->cfg.tls_cert);
    free(ns->cfg.tls_key);
    ns->cfg.tls_cert = c ? c : strdup("");
    ns->cfg.tls_key = k ? k : strdup("");
    return ns->cfg.tls_cert && ns->cfg.tls_key ? 0 : -ENOMEM;
}

static void reload_log_errors(const struct cfg_errors *e)
{
    for (size_t i = 0; i < e->n; i++) {
        if (e->v[i].line > 0)
            log_err("reload: %s:%d: %s", e->v[i].file, e->v[i].line, e->v[i].msg);
        else
            log_err("reload: %s: %s", e->v[i].file, e->v[i].msg);
    }
}

int relayd_reload(struct relayd *rd, const char *path)
{
    struct cfg_errors errs = {0};
    struct relayd_snap *ns = NULL;
    int tls_rc = 0;
    int rc = relayd_snap_load(path, &errs, &tls_rc, &ns);
    if (rc < 0) {
        reload_log_errors(&errs);
        if (tls_rc < 0)
            log_err("signal HUP received: reload of tls_cert=%s failed err=%s; the old "
                    "certificate stays in use",
                    rd->cfg->tls_cert, hf_errname(tls_rc));
        log_err("signal HUP received: %s has %zu error%s; reload refused, the running "
                "configuration stays",
                path, errs.n, errs.n == 1 ? "" : "s");
        cfg_errors_free(&errs);
        return rc == -ENOMEM ? rc : HF_ECONFIG;
    }
    cfg_errors_free(&errs);
    rc = reload_keep_restart_keys(rd->cfg, &ns->cfg);
    if (rc == 0)
        rc = reload_keep_tls_state(rd, ns);
    if (rc == 0)
        rc = etrn_io_reload(rd, &ns->cfg);
    if (rc < 0) {
        log_err("signal HUP received: reload refused err=%s; the running configuration stays",
                hf_errname(rc));
        relayd_snap_unref(ns);
        return rc;
    }
    /* New handshakes use the new pair; sessions already in TLS hold their own reference to
     * the old context (tls.c), so it is freed with the last of them. */
    if (ns->tls_server) {
        tls_ctx_free(rd->tls_server);
        rd->tls_server = ns->tls_server;
        ns->tls_server = NULL;
        log_info("signal HUP received: reloaded tls_cert=%s tls_key=%s", ns->cfg.tls_cert,
                 ns->cfg.tls_key);
    }
    size_t held = rd->snap ? rd->snap->refs - 1 : 0;
    struct relayd_snap *prev = rd->snap ? relayd_snap_ref(rd->snap) : NULL;
    relayd_snap_install(rd, ns);
    relayd_snap_warnings(ns, reload_warn, NULL);
    log_info("signal HUP received: reloaded %s domains=%zu groups=%zu auth_users=%zu; the "
             "previous configuration stays with %zu session%s, AUTH check%s or queue run%s "
             "until they end",
             path, ns->cfg.ndomains, ns->cfg.ngroups, ns->auth.n, held, held == 1 ? "" : "s",
             held == 1 ? "" : "s", held == 1 ? "" : "s");
    /* Mail already queued follows new lifetimes and retry settings too. */
    if (prev)
        expire_reload(rd, &prev->cfg);
    relayd_snap_unref(prev);
    return 0;
}
