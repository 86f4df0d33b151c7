/* relayd: options, configuration, the loop, signals; wires the modules together.
 *
 *   relayd -c FILE          run in the foreground (logs to stderr or syslog as configured)
 *   relayd -c FILE -t       check the configuration, print every error with file:line
 *   relayd --config-reference   print the configuration reference table (README's)
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "auth.h"
#include "cfg.h"
#include "clock.h"
#include "ctl.h"
#include "etrn_io.h"
#include "expire.h"
#include "cram_store.h"
#include "flush.h"
#include "flush_atrn.h"
#include "hf_err.h"
#include "log.h"
#include "policy.h"
#include "probe.h"
#include "queue.h"
#include "privs.h"
#include "queue_wr.h"
#include "relayd.h"
#include "reload.h"
#include "sdnotify.h"
#include "snap.h"
#include "tls.h"

#ifndef HF_VERSION
#define HF_VERSION "0"
#endif

struct relayd_main {
    struct relayd rd;
    const char *path; /* the configuration file, read again on SIGHUP */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t housekeeping;
    uv_timer_t drain;
    uv_timer_t watchdog; /* WATCHDOG=1 to systemd (WatchdogSec=), when asked for */
    bool watchdog_on;
    uint64_t drain_started;
    char hostname[256];
};

static void usage(FILE *f)
{
    fprintf(f, "usage: relayd -c FILE [-t] [-d]\n"
               "       relayd --config-reference | --help | --version\n"
               "\n"
               "holdfast relay daemon: accepts mail for its relay domains into a durable\n"
               "LMDB queue and releases it on ETRN, ATRN or relayctl flush.\n"
               "\n"
               "  -c, --config FILE   configuration file (default /etc/holdfast/relayd.conf)\n"
               "  -t, --test          check the configuration and exit (0 if good)\n"
               "  -d, --debug         log at debug level\n"
               "      --config-reference  print every configuration key with its default\n"
               "      --hash-password [USER [DOMAINS]]  read a password on stdin and print\n"
               "                      a credentials line for auth_file (scrypt)\n"
               "      --cram-secret USER  read a secret on stdin and print a cram_file line\n"
               "                      (CRAM-MD5 for ODMR clients such as fetchmail)\n"
               "  -h, --help          this text\n"
               "  -V, --version       print the version\n");
}

static void on_drain(uv_timer_t *t)
{
    struct relayd_main *m = t->data;
    uint64_t waited = uv_now(t->loop) - m->drain_started;
    if (m->rd.nsessions > 0 && waited < 10000)
        return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    uv_close((uv_handle_t *)&m->housekeeping, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sighup, NULL);
    if (m->watchdog_on)
        uv_close((uv_handle_t *)&m->watchdog, NULL);
    if (m->rd.wr) {
        queue_wr_stop(m->rd.wr);
        m->rd.wr = NULL;
    }
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct relayd_main *m = h->data;
    if (m->rd.stopping)
        return;
    log_info("signal %s received, shutting down", signum == SIGTERM ? "TERM" : "INT");
    sdnotify_stopping();
    smtpd_io_shutdown(&m->rd);
    etrn_io_shutdown(&m->rd);
    flush_shutdown(&m->rd);
    expire_shutdown(&m->rd);
    probe_shutdown(&m->rd);
    ctl_shutdown(&m->rd);
    uv_signal_stop(&m->sighup);
    m->drain_started = uv_now(h->loop);
    uv_timer_start(&m->drain, on_drain, 0, 50);
}

/* SIGHUP: the whole configuration is read again (reload.c); systemd hears RELOADING=1
 * before and READY=1 after, whether the new configuration was taken or refused. */
static void on_hup(uv_signal_t *h, int signum)
{
    struct relayd_main *m = h->data;
    (void)signum;
    sdnotify_reloading();
    log_info("signal HUP received: reloading %s", m->path);
    int rc = relayd_reload(&m->rd, m->path);
    sdnotify_ready(rc == 0 ? "running; configuration reloaded"
                           : "running; the last reload was refused (see the log)");
}

/* Loads the configuration the way -t checks it: the snapshot (config, policy, credentials,
 * certificate) and the outbound TLS context. Prints every problem to stderr. Returns 0 with
 * *snap (owned) and m->rd.tls_server / tls_client set, or 1 (the exit status). */
static int relayd_load(struct relayd_main *m, struct relayd_snap **snap)
{
    struct cfg_errors errs = {0};
    int tls_rc;
    int rc = relayd_snap_load(m->path, &errs, &tls_rc, snap);
    if (rc == 0) {
        m->rd.tls_server = (*snap)->tls_server;
        (*snap)->tls_server = NULL;
        const struct cfg *c = &(*snap)->cfg;
        const char *ca = c->tls_ca_file && c->tls_ca_file[0] ? c->tls_ca_file : NULL;
        rc = tls_ctx_client_new(ca, &m->rd.tls_client);
        if (rc < 0)
            cfg_errors_add(&errs, m->path, 0, "cannot load tls_ca_file=%s", ca ? ca : "(system)");
    }
    if (rc < 0 || errs.n) {
        cfg_errors_print(&errs, stderr, "");
        fprintf(stderr, "relayd: %s: configuration has %zu error%s\n", m->path, errs.n,
                errs.n == 1 ? "" : "s");
        cfg_errors_free(&errs);
        relayd_snap_unref(*snap);
        *snap = NULL;
        tls_ctx_free(m->rd.tls_server);
        tls_ctx_free(m->rd.tls_client);
        m->rd.tls_server = m->rd.tls_client = NULL;
        return 1;
    }
    cfg_errors_free(&errs);
    return 0;
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    sdnotify_watchdog();
}

/* With WatchdogSec= in the unit, the loop says WATCHDOG=1 twice per interval: a loop that
 * hangs (a bug, a blocked call) stops saying it, and systemd restarts relayd. */
static void relayd_watchdog_start(struct relayd_main *m)
{
    unsigned long long usec;
    if (!sdnotify_watchdog_usec(&usec) || usec < 2000)
        return;
    uint64_t ms = usec / 2000;
    uv_timer_init(m->rd.loop, &m->watchdog);
    m->watchdog.data = m;
    m->watchdog_on = true;
    uv_timer_start(&m->watchdog, on_watchdog, 0, ms);
    log_info("systemd watchdog: WATCHDOG=1 every %llu ms", (unsigned long long)ms);
}

/* relayd -t: a setting that is allowed but probably not meant. */
static void warn_stderr(void *arg, const char *text)
{
    fprintf(stderr, "relayd: %s: warning: %s\n", (const char *)arg, text);
}

/* At start-up and after a reload: the same warnings in the log. */
static void warn_log(void *arg, const char *text)
{
    (void)arg;
    log_warn("%s", text);
}

/* Creates the parents of path (like mkdir -p, mode 0755) so a fresh checkout's ./var works;
 * the queue directory itself is created 0700 by queue_open(). */
static int make_parents(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return 0;
}

static void on_housekeeping(uv_timer_t *t)
{
    struct relayd_main *m = t->data;
    (void)m;
    /* Stale reader slots of crashed relayctl processes would pin old pages forever. */
    int n = queue_reader_check(m->rd.q);
    if (n > 0)
        log_info("cleared stale queue readers count=%d", n);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"test", no_argument, NULL, 't'},
        {"debug", no_argument, NULL, 'd'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {"config-reference", no_argument, NULL, 'R'},
        {"hash-password", no_argument, NULL, 'P'}, {"cram-secret", no_argument, NULL, 'C'},
        {NULL, 0, NULL, 0},
    };
    const char *path = "/etc/holdfast/relayd.conf";
    bool test_only = false, debug = false;
    int o;
    while ((o = getopt_long(argc, argv, "c:tdhV", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'd':
            debug = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("relayd (holdfast) %s\n", HF_VERSION);
            return 0;
        case 'P':
            /* relayd --hash-password [USER [DOMAINS]]: a credentials line for auth_file. */
            return auth_passwd_main(argc - optind + 1, argv + optind - 1);
        case 'C':
            /* relayd --cram-secret USER: a line for cram_file. */
            return cram_secret_main(argc - optind + 1, argv + optind - 1);
        case 'R': {
            static char buf[65536];
            int n = cfg_reference_md(buf, sizeof(buf));
            if (n < 0)
                return 1;
            fwrite(buf, 1, (size_t)n, stdout);
            return 0;
        }
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "relayd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    static struct relayd_main m;
    struct relayd *rd = &m.rd;
    m.path = path;
    struct relayd_snap *snap = NULL;
    if (relayd_load(&m, &snap) != 0)
        return 1;
    const struct cfg *cfgp = &snap->cfg;
    if (test_only) {
        relayd_snap_warnings(snap, warn_stderr, (void *)m.path);
        bool odmr = (cfgp->listen_odmr && cfgp->listen_odmr[0]) ||
                    (cfgp->listen_odmr_tls && cfgp->listen_odmr_tls[0]);
        printf("relayd: %s: configuration ok (%zu domain%s%s%s%s%s)\n", path, cfgp->ndomains,
               cfgp->ndomains == 1 ? "" : "s", m.rd.tls_server ? ", TLS" : "",
               snap->auth_loaded ? ", AUTH" : "", odmr ? ", ODMR" : "",
               snap->cram_loaded ? ", CRAM-MD5" : "");
        tls_ctx_free(m.rd.tls_server);
        tls_ctx_free(m.rd.tls_client);
        relayd_snap_unref(snap);
        return 0;
    }

    enum log_level lvl = LOG_LVL_INFO;
    log_level_parse(cfgp->log_level, &lvl);
    if (debug)
        lvl = LOG_LVL_DEBUG;
    log_init("relayd", strcmp(cfgp->log, "syslog") == 0, lvl);
    signal(SIGPIPE, SIG_IGN);
    if (clock_init_from_env() < 0) {
        log_err("HF_TEST_TIME_OFFSET is not a number of seconds");
        tls_ctx_free(m.rd.tls_server);
        tls_ctx_free(m.rd.tls_client);
        relayd_snap_unref(snap);
        return 1;
    }
    if (clock_is_test())
        log_warn("test clock on (HF_TEST_TIME_OFFSET): lifecycle times are shifted; never in "
                 "production");

    if (cfgp->hostname && cfgp->hostname[0])
        snprintf(m.hostname, sizeof(m.hostname), "%s", cfgp->hostname);
    else if (gethostname(m.hostname, sizeof(m.hostname) - 1) < 0)
        snprintf(m.hostname, sizeof(m.hostname), "localhost");

    rd->loop = uv_default_loop();
    rd->prm.hostname = m.hostname;
    relayd_snap_install(rd, snap); /* rd->cfg, policy, auth and prm point into it from here */
    const struct cfg *cfg = rd->cfg;
    relayd_snap_warnings(snap, warn_log, NULL);
    if (rd->auth_loaded && !rd->tls_server)
        log_warn("auth_file is set but TLS is not: AUTH is offered only over TLS, so never");
    if (rate_init(&rd->auth_fail, 4096) < 0) {
        log_err("out of memory");
        return 1;
    }
    idmap_init(&rd->sessions);
    idmap_init(&rd->per_ip);

    int rc = make_parents(cfg->queue_dir);
    if (rc < 0)
        log_warn("cannot create the parents of queue_dir=%s err=%s", cfg->queue_dir,
                 hf_errname(rc));
    rc = queue_open(cfg->queue_dir, 0, cfg->map_size, cfg->max_map_size, &rd->q);
    if (rc < 0) {
        log_err("cannot open queue dir=%s err=%s (%s)%s", cfg->queue_dir, hf_errname(rc),
                hf_strerror(rc),
                rc == HF_ECORRUPT   ? ": the directory holds a file that is not a holdfast "
                                      "queue; move it away or point queue_dir elsewhere"
                : rc == HF_EVERSION ? ": the queue was written by another holdfast version"
                : rc == -EACCES     ? ": the directory or its files belong to another user; "
                                      "start relayd as root with user = its owner, or chown it"
                                    : "");
        goto out_noqueue;
    }
    struct queue_totals tot;
    if (queue_totals(rd->q, &tot) == 0)
        log_info("queue opened dir=%s messages=%llu rcpts=%llu bytes=%llu", cfg->queue_dir,
                 (unsigned long long)tot.messages, (unsigned long long)tot.rcpts,
                 (unsigned long long)tot.bytes);
    /* Expiry, warnings and the due index's order: set up before the writer thread runs. */
    rc = expire_init(rd);
    if (rc < 0) {
        log_err("out of memory");
        goto out;
    }
    rc = queue_wr_new(rd->loop, rd->q, &rd->wr);
    if (rc < 0) {
        log_err("cannot start queue writer err=%s", hf_errname(rc));
        goto out;
    }
    rc = flush_init(rd);
    if (rc == 0)
        flush_atrn_install(rd);
    if (rc == 0)
        rc = probe_init(rd);
    if (rc == 0)
        rc = etrn_io_init(rd);
    if (rc < 0)
        goto out_listen;
    rc = ctl_init(rd);
    if (rc < 0)
        goto out_listen;
    rc = smtpd_io_listen(rd);
    if (rc < 0)
        goto out_listen;
    /* Everything that needs root is open: become the configured user (privs.c). */
    rc = relayd_privs_drop(rd);
    if (rc < 0)
        goto out_listen;

    uv_signal_init(rd->loop, &m.sigterm);
    uv_signal_init(rd->loop, &m.sigint);
    uv_signal_init(rd->loop, &m.sighup);
    m.sigterm.data = m.sigint.data = m.sighup.data = &m;
    uv_signal_start(&m.sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_stop_signal, SIGINT);
    uv_signal_start(&m.sighup, on_hup, SIGHUP);
    uv_timer_init(rd->loop, &m.housekeeping);
    uv_timer_init(rd->loop, &m.drain);
    m.housekeeping.data = m.drain.data = &m;
    uv_timer_start(&m.housekeeping, on_housekeeping, 60000, 60000);

    log_info("relayd %s started hostname=%s domains=%zu queue=%s", HF_VERSION, m.hostname,
             cfg->ndomains, cfg->queue_dir);
    /* Listeners, queue and control socket are up: systemd may start what needs us. */
    sdnotify_ready("accepting mail");
    relayd_watchdog_start(&m);
    uv_run(rd->loop, UV_RUN_DEFAULT);
    log_info("relayd stopped");
    rc = 0;
    goto out;

out_listen:
    smtpd_io_shutdown(rd);
    etrn_io_shutdown(rd);
    flush_shutdown(rd);
    expire_shutdown(rd);
    probe_shutdown(rd);
    ctl_shutdown(rd);
    queue_wr_stop(rd->wr);
    rd->wr = NULL;
    uv_run(rd->loop, UV_RUN_DEFAULT);
out:
    flush_free_all(rd);
    expire_free(rd);
    probe_free(rd);
    etrn_io_free(rd);
    ctl_free(rd);
    uv_loop_close(rd->loop);
    queue_close(rd->q);
out_noqueue:
    free(rd->listeners);
    free(rd->listener_kind);
    idmap_close(&rd->sessions);
    idmap_close(&rd->per_ip);
    relayd_snap_unref(rd->snap);
    tls_ctx_free(rd->tls_server);
    tls_ctx_free(rd->tls_client);
    rate_close(&rd->auth_fail);
    return rc < 0 ? 1 : 0;
}
