/* Hands one message taken from the relay (ATRN server role) to the local MTA (local_mta,
 * host:port) over SMTP: its own connection, smtpc in SMTPC_MODE_DELIVER, QUIT. The local
 * MTA's answers per recipient are mapped to the one reply the relay gets (handoff_map.h).
 *
 * Glue over dns.h, conn.h and smtpc.h. */
#ifndef HF_FETCHD_HANDOFF_H
#define HF_FETCHD_HANDOFF_H

#include <stdint.h>

#include <uv.h>

#include "atrn_srv.h"
#include "dns.h"
#include "handoff_map.h"

struct handoff;

/* The mapped reply (borrowed, valid during the call) and the first recipient's local
 * code (0: no answer) for the log line. */
typedef void (*handoff_cb)(const struct handoff_reply *rep, int local_code, void *arg);

struct handoff_params {
    uv_loop_t *loop;
    struct dns *dns;       /* borrowed; outlives the handoff */
    const char *local_mta; /* "host:port" (parsed at once) */
    const char *helo;      /* our EHLO name (copied) */
    const char *log_id;    /* for log lines (copied) */
    uint64_t timeout_ms;   /* connect and reply timeout */
};

/* Starts handing msg (borrowed until the callback or handoff_cancel) over. Returns 0 and
 * *out: cb runs exactly once, from the loop, unless handoff_cancel() comes first; or
 * -EINVAL (local_mta does not parse), -ENOMEM: then nothing runs. */
int handoff_start(const struct handoff_params *p, const struct atrn_srv_msg *msg, handoff_cb cb,
                  void *arg, struct handoff **out);

/* The relay went away: abort the local connection (before its end of data the local MTA
 * takes nothing) and never call cb. The handoff frees itself once its handles are closed. */
void handoff_cancel(struct handoff *h);

#endif
