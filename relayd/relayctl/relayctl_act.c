/* relayctl's commands that change the queue: they go through relayd's control socket
 * (ctl.h gives the protocol); with relayd stopped they say so and change nothing. */
#include "relayctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlclient.h"
#include "hf_err.h"

/* ---- actions through relayd's control socket ------------------------------------------ */

void relayctl_act_line(const char *line, void *arg)
{
    struct relayctl_act_out *o = arg;
    if (strncmp(line, "ok ", 3) == 0) {
        relayctl_text_str(stdout, line + 3);
        putc('\n', stdout);
    } else if (strncmp(line, "event ", 6) == 0) {
        relayctl_text_str(stdout, line + 6);
        putc('\n', stdout);
    } else if (strncmp(line, "err ", 4) == 0) {
        o->any_err = true;
        fputs("relayctl: ", stderr);
        relayctl_text_str(stderr, line + 4);
        putc('\n', stderr);
    } else if (strncmp(line, "stat ", 5) == 0) {
        const char *name = line + 5;
        const char *sp = strchr(name, ' ');
        if (!sp)
            return;
        if (o->json) {
            fputs(o->nstat ? "," : "{", stdout);
            relayctl_json_strn(stdout, name, (size_t)(sp - name));
            printf(":%s", sp + 1);
        } else {
            printf("%-24.*s %s\n", (int)(sp - name), name, sp + 1);
        }
        o->nstat++;
    } else if (strncmp(line, "probe ", 6) == 0) {
        if (o->nprobe < 64)
            snprintf(o->probe[o->nprobe++], sizeof(o->probe[0]), "%s", line + 6);
    } else if (strncmp(line, "running ", 8) == 0) {
        if (o->nrun < 64)
            snprintf(o->running[o->nrun++], 256, "%s", line + 8);
    }
}

/* Sends one request; maps "relayd is not running" and socket errors to clear messages. */
static int ctl_act_send(const struct relayctl_opts *o, const char *req, int timeout_s,
                        struct relayctl_act_out *out)
{
    if (!o->sock || !*o->sock) {
        fprintf(stderr, "relayctl: no control socket: give -c FILE (control_socket) or -s PATH\n");
        return CTL_EX_USAGE;
    }
    int rc = ctlclient_request(o->sock, req, timeout_s, relayctl_act_line, out);
    if (rc == -ENOENT || rc == -ECONNREFUSED) {
        fprintf(stderr,
                "relayctl: relayd is not running (no control socket at %s); changes need a "
                "running relayd, read commands (queue, list, show) work without it\n",
                o->sock);
        return CTL_EX_NORELAYD;
    }
    if (rc == -EACCES || rc == -EPERM) {
        fprintf(stderr,
                "relayctl: no permission to use the control socket %s (run as relayd's "
                "user or root)\n",
                o->sock);
        return CTL_EX_NORELAYD;
    }
    if (rc < 0) {
        fprintf(stderr, "relayctl: control socket %s: %s\n", o->sock, hf_strerror(rc));
        return CTL_EX_ERROR;
    }
    return out->any_err ? CTL_EX_NOTFOUND : CTL_EX_OK;
}

/* Builds "VERB arg arg ..." from argv, refusing arguments with spaces or newlines. */
static int ctl_act_join(char *buf, size_t sz, const char *verb, int argc, char **argv)
{
    size_t o = (size_t)snprintf(buf, sz, "%s", verb);
    for (int i = 0; i < argc; i++) {
        if (strpbrk(argv[i], " \t\r\n") || o + strlen(argv[i]) + 2 >= sz) {
            fprintf(stderr, "relayctl: bad argument '");
            relayctl_text_str(stderr, argv[i]);
            fprintf(stderr, "'\n");
            return CTL_EX_USAGE;
        }
        o += (size_t)snprintf(buf + o, sz - o, " %s", argv[i]);
    }
    return 0;
}

int relayctl_act_flush(const struct relayctl_opts *o, int argc, char **argv)
{
    if ((o->all && argc != 0) || (!o->all && argc != 1)) {
        fprintf(stderr, "relayctl: usage: relayctl flush DOMAIN|@DOMAIN|--all [--wait]\n");
        return CTL_EX_USAGE;
    }
    if (!o->all) {
        struct relayctl_args a = {0};
        int ex = relayctl_check_domain(1, argv, &a);
        if (ex)
            return ex;
    }
    char req[1024];
    snprintf(req, sizeof(req), "FLUSH %s%s", o->all ? "--all" : argv[0], o->wait ? " WAIT" : "");
    if (!o->all && strpbrk(argv[0], " \t\r\n"))
        return CTL_EX_USAGE;
    struct relayctl_act_out out = {0};
    return ctl_act_send(o, req, o->wait ? 0 : 30, &out);
}

static int ctl_act_simple(const struct relayctl_opts *o, const char *verb, int argc, char **argv)
{
    char req[8192];
    int ex = ctl_act_join(req, sizeof(req), verb, argc, argv);
    if (ex)
        return ex;
    struct relayctl_act_out out = {0};
    return ctl_act_send(o, req, 30, &out);
}

/* hold/release take queue ids or plain domains (no @DOMAIN: a hold is per domain). */
static int ctl_check_ids_or_domains(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        uint64_t id;
        if (strlen(argv[i]) == QUEUE_ID_STR - 1 && queue_id_parse(argv[i], &id) == 0)
            continue;
        struct relayctl_args a = {0};
        int ex = relayctl_check_domain(1, argv + i, &a);
        if (ex)
            return ex;
        if (a.subdomains) {
            fprintf(stderr, "relayctl: hold and release take DOMAIN or ID, not @DOMAIN\n");
            return CTL_EX_USAGE;
        }
    }
    return 0;
}

int relayctl_act_hold(const struct relayctl_opts *o, int argc, char **argv)
{
    int ex = ctl_check_ids_or_domains(argc, argv);
    return ex ? ex : ctl_act_simple(o, "HOLD", argc, argv);
}

int relayctl_act_release(const struct relayctl_opts *o, int argc, char **argv)
{
    int ex = ctl_check_ids_or_domains(argc, argv);
    return ex ? ex : ctl_act_simple(o, "RELEASE", argc, argv);
}

int relayctl_act_requeue(const struct relayctl_opts *o, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        struct relayctl_args a;
        int ex = relayctl_check_id(1, argv + i, &a);
        if (ex)
            return ex;
    }
    return ctl_act_simple(o, "REQUEUE", argc, argv);
}

int relayctl_act_delete(const struct relayctl_opts *o, int argc, char **argv)
{
    if ((o->domain && argc) || (!o->domain && !argc)) {
        fprintf(stderr, "relayctl: usage: relayctl delete ID... | --domain DOMAIN [--yes]\n");
        return CTL_EX_USAGE;
    }
    for (int i = 0; i < argc; i++) {
        struct relayctl_args a;
        int ex = relayctl_check_id(1, argv + i, &a);
        if (ex)
            return ex;
    }
    if (!o->yes && isatty(STDIN_FILENO)) {
        if (o->domain)
            fprintf(stderr, "Delete every queued recipient of %s? This cannot be undone [y/N] ",
                    o->domain);
        else
            fprintf(stderr, "Delete %d message%s? This cannot be undone [y/N] ", argc,
                    argc == 1 ? "" : "s");
        char ans[16];
        if (!fgets(ans, sizeof(ans), stdin) || (ans[0] != 'y' && ans[0] != 'Y')) {
            fprintf(stderr, "relayctl: nothing deleted\n");
            return CTL_EX_OK;
        }
    }
    if (o->domain) {
        char *d[1] = {(char *)o->domain};
        return ctl_act_simple(o, "DELETE-DOMAIN", 1, d);
    }
    return ctl_act_simple(o, "DELETE", argc, argv);
}

int relayctl_act_stats(const struct relayctl_opts *o, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct relayctl_act_out out = {.json = o->json};
    int ex = ctl_act_send(o, "STATS", 30, &out);
    if (o->json && out.nstat)
        fputs("}\n", stdout);
    return ex;
}

int relayctl_act_bounce(const struct relayctl_opts *o, int argc, char **argv)
{
    if ((o->domain && argc) || (!o->domain && !argc)) {
        fprintf(stderr,
                "relayctl: usage: relayctl bounce ID... | --domain DOMAIN [--reason TEXT]\n");
        return CTL_EX_USAGE;
    }
    for (int i = 0; i < argc; i++) {
        struct relayctl_args a;
        int ex = relayctl_check_id(1, argv + i, &a);
        if (ex)
            return ex;
    }
    if (o->domain) {
        struct relayctl_args a = {0};
        char *d[1] = {(char *)o->domain};
        int ex = relayctl_check_domain(1, d, &a);
        if (ex)
            return ex;
        if (a.subdomains) {
            fprintf(stderr, "relayctl: bounce --domain takes DOMAIN, not @DOMAIN\n");
            return CTL_EX_USAGE;
        }
    }
    /* The reason is the rest of the line: printable text, no line breaks. */
    const char *reason = o->reason ? o->reason : "";
    for (const char *p = reason; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            fprintf(stderr, "relayctl: --reason must be one line of printable text\n");
            return CTL_EX_USAGE;
        }
    if (strlen(reason) > 300) {
        fprintf(stderr, "relayctl: --reason is longer than 300 characters\n");
        return CTL_EX_USAGE;
    }
    char req[8192];
    int ex = o->domain ? ctl_act_join(req, sizeof(req), "BOUNCE-DOMAIN", 1, (char **)&o->domain)
                       : ctl_act_join(req, sizeof(req), "BOUNCE", argc, argv);
    if (ex)
        return ex;
    size_t l = strlen(req);
    if (*reason) {
        if (l + strlen(reason) + 4 >= sizeof(req))
            return CTL_EX_USAGE;
        snprintf(req + l, sizeof(req) - l, " -- %s", reason);
    }
    struct relayctl_act_out out = {0};
    return ctl_act_send(o, req, 30, &out);
}

int relayctl_act_clock(const struct relayctl_opts *o, int argc, char **argv)
{
    char *end;
    long long v = argc == 1 ? strtoll(argv[0], &end, 10) : -1;
    if (argc != 1 || *end || v < 0) {
        fprintf(stderr, "relayctl: usage: relayctl test-clock-advance SECONDS\n");
        return CTL_EX_USAGE;
    }
    return ctl_act_simple(o, "TEST-CLOCK-ADVANCE", argc, argv);
}
