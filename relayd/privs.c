/* relayd's privilege drop: the policy (who may run as root), the ownership checks of the
 * queue and the control socket, and the call to privdrop_apply(). Called once by main.c,
 * after every listener, the queue and the control socket are open and before READY=1. */
#include "privs.h"

#include <errno.h>
#include <unistd.h>

#include "hf_err.h"
#include "log.h"
#include "privdrop.h"

static bool privs_set(const char *s)
{
    return s && s[0];
}

int relayd_privs_drop(struct relayd *rd)
{
    const struct cfg *c = rd->cfg;
    char why[768];
    bool root = geteuid() == 0;
    struct privdrop p;
    int rc = 0;
    if (privs_set(c->user)) {
        rc = privdrop_resolve(c->user, c->group, &p, why, sizeof(why));
        if (rc < 0) {
            log_err("user = %s: %s: create it (adduser --system --group %s) or fix the "
                    "configuration",
                    c->user, why, c->user);
            return HF_ECONFIG;
        }
    }
    bool drop = privs_set(c->user) && p.uid != geteuid();
    if (privs_set(c->control_socket)) {
        rc = privdrop_check_dir(drop ? &p : NULL, c->control_socket, why, sizeof(why));
        if (rc < 0) {
            log_err("control_socket %s: %s", c->control_socket, why);
            return rc;
        }
    }
    if (!root) {
        /* Started unprivileged (systemd: User=holdfast with CAP_NET_BIND_SERVICE): the ports
         * are bound, so the capability goes. */
        rc = privdrop_clear_caps(why, sizeof(why));
        if (rc < 0) {
            log_err("%s", why);
            return rc;
        }
    }
    if (!privs_set(c->user)) {
        if (root && !c->allow_root)
            log_warn("running as root: set user = holdfast so relayd drops root once its ports "
                     "and queue are open (or allow_root = yes to say root is meant)");
        return 0;
    }
    if (p.uid == 0) {
        if (!c->allow_root) {
            log_err("user = %s is root: relayd refuses to keep running as root; name an "
                    "unprivileged user, or set allow_root = yes",
                    c->user);
            return -EPERM;
        }
        log_info("running as root (user = %s, allow_root = yes)", c->user);
        return 0;
    }
    if (!drop) {
        log_info("running as user=%s uid=%u already", p.user, (unsigned)p.uid);
        return 0;
    }
    if (!root) {
        log_err("user = %s: relayd runs as uid %u, not root, so it cannot become uid %u; start "
                "it as root or as that user",
                c->user, (unsigned)geteuid(), (unsigned)p.uid);
        return -EPERM;
    }
    /* The queue was opened (and maybe created) as root: its directory and files become the
     * user's, so the writer, map growth and relayctl's readers keep working after the switch.
     * A queue that belongs to a third user is someone else's: refused. */
    rc = privdrop_own(&p, c->queue_dir, true, why, sizeof(why));
    if (rc < 0) {
        log_err("queue_dir %s: %s", c->queue_dir, why);
        return rc;
    }
    if (privs_set(c->control_socket)) {
        rc = privdrop_own(&p, c->control_socket, false, why, sizeof(why));
        if (rc < 0) {
            log_err("control_socket %s: %s", c->control_socket, why);
            return rc;
        }
    }
    rc = privdrop_apply(&p, why, sizeof(why));
    if (rc < 0) {
        log_err("cannot become user=%s: %s", p.user, why);
        return rc;
    }
    log_info("running as user=%s uid=%u group=%s gid=%u", p.user, (unsigned)p.uid, p.group,
             (unsigned)p.gid);
    return 0;
}
