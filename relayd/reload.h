/* SIGHUP: reload the configuration into a new snapshot (snap.h) and put it in place. */
#ifndef HF_RELAYD_RELOAD_H
#define HF_RELAYD_RELOAD_H

#include "relayd.h"

/* Installs snapshot s (takes its reference) as the running configuration: rd->cfg, policy,
 * credentials and session parameters point into it from now on; the previous snapshot is
 * released (it lives on while sessions or runs still hold it). Used at start and on reload. */
void relayd_snap_install(struct relayd *rd, struct relayd_snap *s);

/* Reloads path the way `relayd -t` checks it. A configuration with errors is refused, every
 * error logged, and the running one kept. Keys read at start only (listen, queue_dir, user,
 * ...: cfg_key_is_restart()) keep their running values, and each that changed is
 * logged. Sessions and queue runs already going keep the snapshot they started with.
 * Returns 0 (reloaded), HF_ECONFIG (refused), -ENOMEM. */
int relayd_reload(struct relayd *rd, const char *path);

#endif
