/* Names of control-socket actions (ctl_names.h): the log says "action=hold", never a
 * number, and relayctl's reply says what was done ("ok held ID"). */
#include "ctl_names.h"

/* The action's name in the log ("action=hold"), never its number. */
const char *ctl_action_name(enum queue_op op)
{
    switch (op) {
    case QUEUE_OP_DELETE_MSG:
        return "delete";
    case QUEUE_OP_HOLD_MSG:
    case QUEUE_OP_HOLD_DOMAIN:
        return "hold";
    case QUEUE_OP_RELEASE_MSG:
    case QUEUE_OP_RELEASE_DOMAIN:
        return "release";
    case QUEUE_OP_REQUEUE_MSG:
        return "requeue";
    case QUEUE_OP_BOUNCED:
        return "bounce";
    default:
        return "update";
    }
}

/* The word of the reply to relayctl ("ok held ID"). */
const char *ctl_done_word(enum queue_op op)
{
    switch (op) {
    case QUEUE_OP_DELIVERED:
        return "removed";
    case QUEUE_OP_DEFERRED:
        return "deferred";
    case QUEUE_OP_FAILED:
        return "failed";
    case QUEUE_OP_DELETE_MSG:
        return "deleted";
    case QUEUE_OP_HOLD_MSG:
    case QUEUE_OP_HOLD_DOMAIN:
        return "held";
    case QUEUE_OP_RELEASE_MSG:
    case QUEUE_OP_RELEASE_DOMAIN:
        return "released";
    case QUEUE_OP_REQUEUE_MSG:
        return "requeued";
    default:
        return "done";
    }
}
