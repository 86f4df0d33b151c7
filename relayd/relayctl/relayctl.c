/* relayctl: the operator's view of relayd's queue.
 *
 * relayctl opens the LMDB queue read-only (QUEUE_O_RDONLY), as a second process beside a
 * running relayd or while it is stopped, and prints it: a per-domain summary, a mailq-style
 * listing, one message's envelope and headers, or its stored bytes. It never writes the
 * queue; commands that change it (flush, hold, release, delete, requeue) will go through
 * relayd's control socket and get their own entries in ctl_cmds[] below.
 *
 * Exit codes:
 *   0  success (an empty queue or listing is a success)
 *   1  the message asked for is not in the queue
 *   2  usage: unknown command or option, bad queue id or domain syntax
 *   3  the queue cannot be opened: missing, no permission, damaged, wrong version, or the
 *      configuration file cannot be read
 *   4  an error while reading the queue or writing the output
 *
 * JSON output (--json): one object on one line, UTF-8, followed by a newline.
 * Strings are escaped per RFC 8259: '"' and '\' with a backslash, control characters as
 * \b \f \n \r \t or \u00XX, DEL as \u007f; a byte that is not part of a valid UTF-8
 * sequence is written as \u00XX (its value), so a consumer can tell it apart from text.
 * Times are unix seconds (integers); 0 means "never" (last_attempt), "now" (next_attempt)
 * or "none" (oldest).
 *
 *   relayctl queue --json
 *     {"domains": [ {"domain": "branch.test", "messages": 3, "rcpts": 4, "bytes": 12345,
 *                    "oldest": 1700000000, "held": false}, ... ],
 *      "totals": {"messages": 3, "rcpts": 4, "bytes": 12345,
 *                 "map_size": 268435456, "map_used": 81920}}
 *     "oldest" is the arrival time of the domain's oldest message.
 *
 *   relayctl list [DOMAIN|@DOMAIN] --json
 *     {"messages": [ MESSAGE, ... ]}   in queue id (arrival) order
 *   MESSAGE:
 *     {"id": "4F2A9C01D3E5A001", "size": 5120, "arrival": 1700000000,
 *      "sender": "a@x.test",                   ("" for the null reverse-path <>)
 *      "flags": ["8BITMIME", "SMTPUTF8", "HELD"],   (those set, in this order)
 *      "client_name": "mx.x.test", "client_addr": "127.0.0.1",
 *      "envid": "", "ret": null | "FULL" | "HDRS",
 *      "rcpts": [ {"addr": "b@branch.test", "domain": "branch.test",
 *                  "state": "pending" | "deferred" | "failed", "attempts": 0,
 *                  "next_attempt": 0, "last_attempt": 0, "last_error": "",
 *                  "orcpt": "", "notify": ["SUCCESS", "FAILURE", "DELAY"] | ["NEVER"] | []},
 *                ... ]}
 *     With DOMAIN only the recipients in that domain are listed (and only messages that
 *     have one); with @DOMAIN those in the domain and all its subdomains.
 *
 *   relayctl mailq [DOMAIN|@DOMAIN] --json
 *     Not this schema: one object per line per message with the field names and meanings
 *     of Postfix's "postqueue -j" (see relayctl_postq.c).
 *
 *   relayctl show ID --json
 *     MESSAGE plus "headers": the stored header block as one string, from the first octet
 *     up to (not including) the first empty line, line ends as stored (CRLF); at most
 *     CTL_HDR_MAX octets, with "headers_truncated": true when cut.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "hf_err.h"
#include "queue.h"
#include "relayctl.h"

#define CTL_OPT_JSON 0x1u
#define CTL_OPT_BODY 0x2u

struct ctl_cmd {
    const char *name;
    const char *usage;
    const char *help;
    int min_args, max_args;
    unsigned opts; /* CTL_OPT_* the command accepts */
    int (*check)(int argc, char **argv, struct relayctl_args *a);
    int (*run)(struct queue *q, const struct relayctl_opts *o, const struct relayctl_args *a);
    /* Commands that act go through relayd's control socket instead of the queue. */
    int (*act)(const struct relayctl_opts *o, int argc, char **argv);
};

/* ---- argument checks --------------------------------------------------------------- */

static int ctl_check_none(int argc, char **argv, struct relayctl_args *a)
{
    (void)argc;
    (void)argv;
    (void)a;
    return 0;
}

/* mailq prints Postfix's listing, or with --json what postqueue -j prints. */
static int ctl_mailq(struct queue *q, const struct relayctl_opts *o, const struct relayctl_args *a)
{
    return o->json ? relayctl_cmd_postq(q, o, a) : relayctl_cmd_mailq(q, o, a);
}

/* Commands. Those that change the queue (flush, hold, release, delete, requeue) belong
 * here too once relayd's control socket exists; they will connect to it instead of
 * opening the queue, so they get a run function of their own kind (see main()). */
static const struct ctl_cmd ctl_cmds[] = {
    {"queue", "queue [--json]",
     "per-domain summary: messages, recipients, size, oldest, policy, last attempt and its "
     "result, running flush; and totals",
     0, 0, CTL_OPT_JSON, ctl_check_none, relayctl_cmd_queue, NULL},
    {"mailq", "mailq [DOMAIN|@DOMAIN] [--json]",
     "Sendmail/Postfix-compatible listing (also when run as 'mailq' through a symlink); "
     "--json: one object per message with postqueue -j's fields",
     0, 1, CTL_OPT_JSON, relayctl_check_domain, ctl_mailq, NULL},
    {"list", "list [DOMAIN|@DOMAIN] [--json]",
     "every queued message with its recipients (@DOMAIN: with subdomains)", 0, 1, CTL_OPT_JSON,
     relayctl_check_domain, relayctl_cmd_list, NULL},
    {"show", "show ID [--body] [--json]",
     "one message: envelope, recipients and headers; --body: the stored message, byte-exact", 1, 1,
     CTL_OPT_JSON | CTL_OPT_BODY, relayctl_check_id, relayctl_cmd_show, NULL},
    {"flush", "flush DOMAIN|@DOMAIN|--all [--wait]",
     "deliver now (the same queue run ETRN starts); --wait follows it and prints each "
     "recipient's outcome",
     0, 1, 0, NULL, NULL, relayctl_act_flush},
    {"hold", "hold DOMAIN|ID", "stop delivering a domain or a message until released", 1, 64, 0,
     NULL, NULL, relayctl_act_hold},
    {"release", "release DOMAIN|ID", "undo hold", 1, 64, 0, NULL, NULL, relayctl_act_release},
    {"delete", "delete ID...|--domain DOMAIN [--yes]",
     "remove messages (or a domain's recipients) for good; asks on a terminal unless --yes", 0, 256,
     0, NULL, NULL, relayctl_act_delete},
    {"bounce", "bounce ID...|--domain DOMAIN [--reason TEXT]",
     "return messages (or a domain's recipients) to their senders now, with a DSN", 0, 256, 0, NULL,
     NULL, relayctl_act_bounce},
    {"test-clock-advance", "test-clock-advance SECONDS",
     "TEST ONLY: move relayd's lifecycle clock forward (relayd started with "
     "HF_TEST_TIME_OFFSET)",
     1, 1, 0, NULL, NULL, relayctl_act_clock},
    {"requeue", "requeue ID...", "make messages due now (retry schedule reset)", 1, 256, 0, NULL,
     NULL, relayctl_act_requeue},
    {"stats", "stats [--json]",
     "counters since relayd started: accepted, refused, delivered, deferred, failed, ETRN "
     "replies, connections",
     0, 0, CTL_OPT_JSON, NULL, NULL, relayctl_act_stats},
};

static void ctl_usage(FILE *f)
{
    fprintf(f, "usage: relayctl [-c FILE | -q DIR] [-s SOCKET] COMMAND [ARGS]\n"
               "\n"
               "Inspects relayd's queue (read-only, works while relayd runs or not) and acts\n"
               "on it through relayd's control socket (flush, hold, release, delete, requeue).\n"
               "\n"
               "  -c, --config FILE  use the queue_dir of relayd's configuration FILE\n"
               "                     (default " CTL_DEFAULT_CONF ")\n"
               "  -q, --queue DIR    use the queue in DIR\n"
               "  -s, --socket PATH  relayd's control socket (default: control_socket)\n"
               "      --json         machine-readable output (schema: see relayctl.c)\n"
               "      --body         show: write the stored message only\n"
               "  -h, --help         this text\n"
               "  -V, --version      version\n"
               "\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
        fprintf(f, "  %s\n      %s\n", ctl_cmds[i].usage, ctl_cmds[i].help);
    fprintf(f, "\n"
               "exit status: 0 ok, 1 no such message, 2 usage error, 3 queue or config\n"
               "cannot be opened, 4 error while reading the queue or writing output,\n"
               "5 relayd not running or its control socket not usable\n");
}

/* ---- configuration: queue_dir ------------------------------------------------------ */

/* Loads relayd's configuration (lib/cfg.c: the same parser, defaults and relative-path
 * rules as relayd) into *c. Returns true, or false after printing every error with
 * file:line (*ex gets the exit code then; *c is freed). */
static bool ctl_conf_load(const char *path, struct cfg *c, int *ex)
{
    struct cfg_errors errs = {0};
    int rc = cfg_load(path, c, &errs);
    if (rc == -ENOMEM) {
        fprintf(stderr, "relayctl: out of memory\n");
        *ex = CTL_EX_ERROR;
    } else if (rc < 0 || errs.n > 0) {
        cfg_errors_print(&errs, stderr, "relayctl: ");
        if (errs.n == 0)
            fprintf(stderr, "relayctl: cannot load configuration %s: %s\n", path, hf_strerror(rc));
        *ex = CTL_EX_NOQUEUE;
    } else {
        cfg_errors_free(&errs);
        return true;
    }
    cfg_errors_free(&errs);
    cfg_free(c);
    return false;
}

/* ---- main -------------------------------------------------------------------------- */

static int ctl_open_error(const char *dir, int rc)
{
    switch (rc) {
    case -ENOENT:
    case -ENOTDIR:
        fprintf(stderr, "relayctl: no queue at %s: %s\n", dir, hf_strerror(rc));
        break;
    case -EACCES:
    case -EPERM:
        fprintf(stderr, "relayctl: cannot open the queue at %s: %s\n", dir, hf_strerror(rc));
        break;
    case HF_ECORRUPT:
        fprintf(stderr, "relayctl: the queue at %s is damaged or not a holdfast queue: %s\n", dir,
                hf_strerror(rc));
        break;
    case HF_EVERSION:
        fprintf(stderr,
                "relayctl: the queue at %s was written by an incompatible version of relayd:"
                " %s\n",
                dir, hf_strerror(rc));
        break;
    default:
        fprintf(stderr, "relayctl: cannot open the queue at %s: %s\n", dir, hf_strerror(rc));
        break;
    }
    return CTL_EX_NOQUEUE;
}

int main(int argc, char **argv)
{
    enum { OPT_JSON = 256, OPT_BODY, OPT_WAIT, OPT_YES, OPT_ALL, OPT_DOMAIN, OPT_REASON };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"queue", required_argument, NULL, 'q'},
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, OPT_JSON},
        {"body", no_argument, NULL, OPT_BODY},
        {"wait", no_argument, NULL, OPT_WAIT},
        {"yes", no_argument, NULL, OPT_YES},
        {"all", no_argument, NULL, OPT_ALL},
        {"domain", required_argument, NULL, OPT_DOMAIN},
        {"reason", required_argument, NULL, OPT_REASON},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct relayctl_opts opt = {0};
    int c;
    /* Run as "mailq" (a symlink): the Sendmail/Postfix listing. */
    char *argv0 = strdup(argv[0]);
    bool as_mailq = argv0 && strcmp(basename(argv0), "mailq") == 0;
    free(argv0);
    while ((c = getopt_long(argc, argv, as_mailq ? "+c:q:s:hV" : "c:q:s:hV", longopts, NULL)) !=
           -1) {
        switch (c) {
        case 's':
            opt.sock = optarg;
            break;
        case OPT_REASON:
            opt.reason = optarg;
            break;
        case OPT_WAIT:
            opt.wait = true;
            break;
        case OPT_YES:
            opt.yes = true;
            break;
        case OPT_ALL:
            opt.all = true;
            break;
        case OPT_DOMAIN:
            opt.domain = optarg;
            break;
        case 'c':
            opt.conf = optarg;
            break;
        case 'q':
            opt.qdir = optarg;
            break;
        case OPT_JSON:
            opt.json = true;
            break;
        case OPT_BODY:
            opt.body = true;
            break;
        case 'h':
            ctl_usage(stdout);
            return CTL_EX_OK;
        case 'V':
            printf("relayctl (holdfast) %s\n", HF_VERSION);
            return CTL_EX_OK;
        default:
            fprintf(stderr, "Try 'relayctl --help'.\n");
            return CTL_EX_USAGE;
        }
    }
    if (optind >= argc && !as_mailq) {
        ctl_usage(stderr);
        return CTL_EX_USAGE;
    }
    const char *name = as_mailq ? "mailq" : argv[optind++];
    const struct ctl_cmd *cmd = NULL;
    for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
        if (strcmp(ctl_cmds[i].name, name) == 0)
            cmd = &ctl_cmds[i];
    if (cmd == NULL) {
        fprintf(stderr, "relayctl: unknown command '");
        relayctl_text_str(stderr, name);
        fprintf(stderr, "'. Try 'relayctl --help'.\n");
        return CTL_EX_USAGE;
    }
    int nargs = argc - optind;
    if (nargs < cmd->min_args || nargs > cmd->max_args) {
        fprintf(stderr, "relayctl: usage: relayctl %s\n", cmd->usage);
        return CTL_EX_USAGE;
    }
    if ((opt.json && !(cmd->opts & CTL_OPT_JSON)) || (opt.body && !(cmd->opts & CTL_OPT_BODY))) {
        fprintf(stderr, "relayctl: %s does not take %s\n", cmd->name,
                opt.body ? "--body" : "--json");
        return CTL_EX_USAGE;
    }
    if (opt.body && opt.json) {
        fprintf(stderr, "relayctl: --body writes the raw message; it cannot be combined with"
                        " --json\n");
        return CTL_EX_USAGE;
    }
    if (opt.conf && opt.qdir) {
        fprintf(stderr, "relayctl: give either -c FILE or -q DIR, not both\n");
        return CTL_EX_USAGE;
    }
    if (opt.reason && cmd->act != relayctl_act_bounce) {
        fprintf(stderr, "relayctl: --reason goes with bounce\n");
        return CTL_EX_USAGE;
    }
    if ((opt.wait || opt.all) && cmd->act != relayctl_act_flush) {
        fprintf(stderr, "relayctl: --wait and --all go with flush\n");
        return CTL_EX_USAGE;
    }
    if ((opt.yes && cmd->act != relayctl_act_delete) ||
        (opt.domain && cmd->act != relayctl_act_delete && cmd->act != relayctl_act_bounce)) {
        fprintf(stderr, "relayctl: --yes goes with delete, --domain with delete and bounce\n");
        return CTL_EX_USAGE;
    }
    struct relayctl_args args = {0};
    int ex = cmd->check ? cmd->check(nargs, argv + optind, &args) : 0;
    if (ex != 0)
        return ex;

    /* The configuration names the queue and the control socket; -q and -s override. */
    static struct cfg cfg;
    bool have_cfg = false;
    char *qdir = NULL;
    if (opt.qdir) {
        qdir = strdup(opt.qdir);
        if (opt.conf)
            have_cfg = ctl_conf_load(opt.conf, &cfg, &ex);
    } else {
        have_cfg = ctl_conf_load(opt.conf ? opt.conf : CTL_DEFAULT_CONF, &cfg, &ex);
        if (!have_cfg)
            return ex;
        if (!cfg.queue_dir || !cfg.queue_dir[0]) {
            fprintf(stderr, "relayctl: %s: no queue_dir set\n", cfg.path);
            cfg_free(&cfg);
            return CTL_EX_NOQUEUE;
        }
        qdir = strdup(cfg.queue_dir);
    }
    if (have_cfg) {
        opt.cfg = &cfg;
        if (!opt.sock && cfg.control_socket && cfg.control_socket[0])
            opt.sock = cfg.control_socket;
    }
    if (cmd->act) {
        ex = cmd->act(&opt, nargs, argv + optind);
        free(qdir);
        if (have_cfg)
            cfg_free(&cfg);
        fflush(stdout);
        return ex;
    }
    if (qdir == NULL) {
        fprintf(stderr, "relayctl: out of memory\n");
        if (have_cfg)
            cfg_free(&cfg);
        return CTL_EX_ERROR;
    }
    struct queue *q = NULL;
    int rc = queue_open(qdir, QUEUE_O_RDONLY, 0, 0, &q);
    if (rc < 0) {
        ex = ctl_open_error(qdir, rc);
        free(qdir);
        if (have_cfg)
            cfg_free(&cfg);
        return ex;
    }
    ex = cmd->run(q, &opt, &args);
    queue_close(q);
    free(qdir);
    if (have_cfg)
        cfg_free(&cfg);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "relayctl: cannot write the output: %s\n", strerror(errno));
        return ex == CTL_EX_OK ? CTL_EX_ERROR : ex;
    }
    return ex;
}
