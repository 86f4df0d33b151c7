/* The control module's state: the listeners and one struct per control client. Only
 * ctl.c includes it (it lives apart to keep ctl.c to its logic, under the size limit);
 * handlers in other files answer through ctl.h's ctl_reply and ctl_reply_wait. */
#ifndef HF_CTL_INT_H
#define HF_CTL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "idmap.h"
#include "relayd.h"

#define CTL_LINE_MAX 4096

struct ctl {
    struct relayd *rd;
    uv_pipe_t pipe;
    bool pipe_open;
    uv_tcp_t metrics;
    bool metrics_open;
    struct idmap clients;
    uint64_t next_id;
    char *path;
};

struct ctl_client {
    struct ctl *ctl;
    uint64_t id;
    uv_stream_t *stream; /* a uv_pipe_t or uv_tcp_t */
    bool http;
    char line[CTL_LINE_MAX];
    size_t len;
    bool got_line;
    bool closing;
    size_t waiting_runs;    /* FLUSH WAIT: runs not yet ended */
    size_t waiting_updates; /* queue updates not yet committed */
    uint64_t sent, deferred, bounced;
};

struct ctl_wreq {
    uv_write_t req;
    char buf[];
};

#endif
