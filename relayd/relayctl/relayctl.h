/* relayctl's pieces shared between its files: options, exit codes, output helpers
 * (relayctl_out.c), argument checks (relayctl_args.c), the read commands
 * (relayctl_read.c) and the commands that act through relayd's control socket
 * (relayctl_act.c). relayctl.c holds the command table and main(), and is the only file
 * that calls the commands. */
#ifndef HF_RELAYCTL_H
#define HF_RELAYCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cfg.h"
#include "queue.h"

enum ctl_exit {
    CTL_EX_OK = 0,
    CTL_EX_NOTFOUND = 1,
    CTL_EX_USAGE = 2,
    CTL_EX_NOQUEUE = 3,
    CTL_EX_ERROR = 4,
    CTL_EX_NORELAYD = 5,
};

#define CTL_DEFAULT_CONF "/etc/holdfast/relayd.conf"
#define CTL_HDR_MAX      (256u * 1024u)

/* Options given on the command line, in any position (GNU getopt permutes). */
struct relayctl_opts {
    const char *conf;
    const char *qdir;
    const char *sock;      /* control socket (-s, or control_socket from the configuration) */
    const struct cfg *cfg; /* the configuration when one was loaded (policy column) */
    bool json;
    bool body;
    bool wait;
    bool yes;
    bool all;
    const char *domain; /* delete/bounce --domain */
    const char *reason; /* bounce --reason */
};

/* Arguments of a command, validated before the queue is opened. */
struct relayctl_args {
    uint64_t id;
    char idstr[QUEUE_ID_STR];
    bool has_domain;
    bool subdomains;
    char domain[256];
};

struct relayctl_act_out {
    bool json;
    bool any_err;
    size_t nstat;
    size_t nrun;
    char running[64][256]; /* RUNNING answers */
    size_t nprobe;
    char probe[64][320]; /* RUNNING's "probe DOMAIN STATE SINCE" answers, after "probe " */
};

/* ---- output (relayctl_out.c) ---- */

/* One recipient found by a scan; sorted by (id, idx) to group them per message. */
struct relayctl_ref {
    uint64_t id;
    uint32_t idx;
};

/* Recipients collected by relayctl_refs_load (v malloc'd: the caller frees it). */
struct relayctl_refs {
    struct relayctl_ref *v;
    size_t n, cap;
};

struct relayctl_args;
/* The recipients a listing asks for (a domain, @domain or all), sorted by message id and
 * index, appended to *refs (zeroed by the caller). Returns 0, or an error already printed
 * (refs->v freed). relayctl_read.c; list, show and mailq --json share it. */
int relayctl_refs_load(struct queue *q, const struct relayctl_args *a, struct relayctl_refs *refs);

/* Prints one message: the envelope, then the recipients whose idx is in want[0..nwant)
 * (every recipient when want is NULL). */
struct relayctl_msg_out {
    FILE *f;
    bool json;
    int64_t now;
    const struct relayctl_ref *want;
    size_t nwant;
    size_t printed; /* recipients printed so far */
};

/* Prints one recipient of o's message (struct relayctl_msg_out as arg; a queue_rcpt_cb). */
int relayctl_print_rcpt(const struct queue_rcpt *r, void *arg);
/* "FULL", "HDRS", or NULL for no RET. */
const char *relayctl_ret_name(int ret);
/* Writes the envelope part of MESSAGE in JSON, up to and including "rcpts":[ . */
void relayctl_json_env(FILE *f, const struct queue_env *e);
/* " 8BITMIME SMTPUTF8 HELD" (those set). */
void relayctl_text_flags(FILE *f, unsigned flags);

/* Writes s[0..n) as a JSON string (quotes included), escaping per RFC 8259; bytes that are
 * not valid UTF-8 become \u00XX. */
void relayctl_json_strn(FILE *f, const char *s, size_t n);
void relayctl_json_str(FILE *f, const char *s);
/* Writes s[0..n) for a terminal: control bytes escaped (newlines kept when keep_lines). */
void relayctl_text_strn(FILE *f, const char *s, size_t n, bool keep_lines);
void relayctl_text_str(FILE *f, const char *s);
/* "1.2K", "3.4M"... into buf; returns buf. */
const char *relayctl_human_bytes(uint64_t n, char *buf, size_t bufsz);
/* "5s", "3m", "2h", "4d" since when (or "-" when 0); returns buf. */
const char *relayctl_human_age(int64_t when, int64_t now, char *buf, size_t bufsz);
/* Local time "YYYY-MM-DD HH:MM:SS"; returns buf. */
const char *relayctl_time(int64_t t, char *buf, size_t bufsz);
/* "pending", "deferred", "failed". */
const char *relayctl_state_name(int state);

/* ---- argument checks (relayctl_args.c) ---- */

int relayctl_check_id(int argc, char **argv, struct relayctl_args *a);
int relayctl_check_domain(int argc, char **argv, struct relayctl_args *a);

/* ---- read commands (relayctl_read.c): the queue opened read-only ---- */

/* Each returns relayctl's exit code. */
int relayctl_cmd_queue(struct queue *q, const struct relayctl_opts *opt,
                       const struct relayctl_args *a);
int relayctl_cmd_list(struct queue *q, const struct relayctl_opts *opt,
                      const struct relayctl_args *a);
int relayctl_cmd_show(struct queue *q, const struct relayctl_opts *opt,
                      const struct relayctl_args *a);
int relayctl_cmd_mailq(struct queue *q, const struct relayctl_opts *opt,
                       const struct relayctl_args *a);

/* mailq --json (relayctl_postq.c): postqueue -j's objects, one line per message. */
int relayctl_cmd_postq(struct queue *q, const struct relayctl_opts *opt,
                       const struct relayctl_args *a);

/* ---- actions through the control socket (relayctl_act.c) ---- */

/* Prints one answer line of relayd (ok/err/event/stat/running) and records it in arg
 * (struct relayctl_act_out). */
void relayctl_act_line(const char *line, void *arg);
/* Each returns relayctl's exit code. */
int relayctl_act_flush(const struct relayctl_opts *o, int argc, char **argv);
int relayctl_act_hold(const struct relayctl_opts *o, int argc, char **argv);
int relayctl_act_release(const struct relayctl_opts *o, int argc, char **argv);
int relayctl_act_delete(const struct relayctl_opts *o, int argc, char **argv);
int relayctl_act_requeue(const struct relayctl_opts *o, int argc, char **argv);
int relayctl_act_bounce(const struct relayctl_opts *o, int argc, char **argv);
int relayctl_act_clock(const struct relayctl_opts *o, int argc, char **argv);
int relayctl_act_stats(const struct relayctl_opts *o, int argc, char **argv);

#endif
