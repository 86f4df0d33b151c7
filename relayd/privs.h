/* relayd's privilege drop (privdrop.h does the switch): after the listeners, the queue, the
 * TLS keys and the control socket are open, become `user` (and `group`). */
#ifndef HF_RELAYD_PRIVS_H
#define HF_RELAYD_PRIVS_H

#include "relayd.h"

/* Checks the control socket's directory (nobody but root or relayd's user may write it),
 * and with `user` set: hands the queue directory and its files and the control socket to
 * that user (refusing files that belong to a third user), then switches for good.
 * Policy for root: with `user` unset, running as root is accepted with a warning (no
 * warning with allow_root = yes); `user` naming uid 0 is refused unless allow_root = yes.
 * Returns 0, or a negative code with one log line that says what to fix. */
int relayd_privs_drop(struct relayd *rd);

#endif
