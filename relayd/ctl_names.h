/* Names of the queue changes relayctl asks for, for log lines and replies. Pure. */
#ifndef HF_CTL_NAMES_H
#define HF_CTL_NAMES_H

#include "queue.h"

/* The action's name for the log: "delete", "hold", "release", "requeue", "bounce", else
 * "update". Static string. */
const char *ctl_action_name(enum queue_op op);
/* The past-tense word of relayctl's "ok WORD TARGET" reply. Static string. */
const char *ctl_done_word(enum queue_op op);

#endif
