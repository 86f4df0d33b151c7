/* fetchd: options, configuration, daemon mode, the loop and the triggers; wires link.c,
 * runner.c and the resolver together.
 *
 *   fetchd -c FILE            daemon: release on link-up, every `interval`, on SIGUSR1
 *   fetchd -c FILE -f         the same in the foreground (systemd, tests)
 *   fetchd -c FILE --once     release once and exit: 0 all released, 1 some failed,
 *                             2 configuration or usage error
 *   fetchd -c FILE -t         check the configuration, print every error, exit 0 or 1
 *
 * A daemon also releases once when it starts: a link that came up before fetchd did gives
 * no event. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cfg.h"
#include "dns.h"
#include "hf_err.h"
#include "link.h"
#include "log.h"
#include "privdrop.h"
#include "runner.h"
#include "sdnotify.h"

#ifndef HF_VERSION
#define HF_VERSION "0"
#endif

#define FETCHD_DEFAULT_CONFIG "/etc/holdfast/fetchd.conf"

enum { FETCHD_EXIT_OK = 0, FETCHD_EXIT_FAILED = 1, FETCHD_EXIT_CONFIG = 2 };

struct fetchd {
    uv_loop_t loop;
    struct cfg cfg;
    struct dns *dns;
    struct runner *runner;
    struct link_watch *link;
    uv_signal_t sigusr1, sigterm, sigint, sighup;
    uv_timer_t interval;
    bool once;
    bool stopping;
    int exit_code;
    char hostname[256];
};

static void usage(FILE *f)
{
    fprintf(f, "usage: fetchd [-c FILE] [-f] [-d]\n"
               "       fetchd [-c FILE] --once [-d]\n"
               "       fetchd [-c FILE] -t\n"
               "       fetchd --help | --version\n"
               "\n"
               "holdfast fetchd: asks the relays that hold this site's mail to send it (ETRN,\n"
               "RFC 1985) the moment the link comes up, every `interval`, and on SIGUSR1.\n"
               "\n"
               "  -c, --config FILE   configuration file (default " FETCHD_DEFAULT_CONFIG ")\n"
               "  -t, --test          check the configuration, print every error, exit 0 or 1\n"
               "      --once          release once, wait for the answers and retries, exit:\n"
               "                        0 every relay started (250-253) for every domain,\n"
               "                        1 some domain failed (459, 5xx, retries exhausted),\n"
               "                        2 configuration or usage error\n"
               "  -f, --foreground    do not become a daemon (logs stay on stderr)\n"
               "  -d, --debug         log at debug level\n"
               "  -h, --help          this text\n"
               "  -V, --version       print the version\n"
               "\n"
               "Signals: SIGUSR1 releases now; SIGTERM and SIGINT stop.\n");
}

/* ---- shutdown ---------------------------------------------------------------------------- */

static void fetchd_stop(struct fetchd *f, int code)
{
    if (f->stopping)
        return;
    f->stopping = true;
    f->exit_code = code;
    sdnotify_stopping();
    uv_close((uv_handle_t *)&f->sigusr1, NULL);
    uv_close((uv_handle_t *)&f->sigterm, NULL);
    uv_close((uv_handle_t *)&f->sigint, NULL);
    uv_close((uv_handle_t *)&f->sighup, NULL);
    uv_close((uv_handle_t *)&f->interval, NULL);
    link_watch_close(f->link);
    f->link = NULL;
    /* The runner first: its steps are cancelled; freeing the resolver then ends their
     * pending lookups (-ECANCELED), and the loop runs until every handle is closed. */
    runner_close(f->runner);
    f->runner = NULL;
    dns_free(f->dns);
    f->dns = NULL;
}

/* ---- triggers ---------------------------------------------------------------------------- */

static void on_signal(uv_signal_t *h, int signum)
{
    struct fetchd *f = h->data;
    if (signum == SIGUSR1) {
        runner_trigger(f->runner, "signal");
    } else if (signum == SIGHUP) {
        log_info("SIGHUP ignored: restart fetchd to read a changed configuration");
    } else {
        log_info("stopping on signal %d", signum);
        fetchd_stop(f, f->once ? FETCHD_EXIT_FAILED : FETCHD_EXIT_OK);
    }
}

static void on_interval(uv_timer_t *t)
{
    struct fetchd *f = t->data;
    runner_trigger(f->runner, "timer");
}

static void on_link_up(const char *why, void *arg)
{
    struct fetchd *f = arg;
    char reason[160];
    snprintf(reason, sizeof(reason), "%s", why);
    runner_trigger(f->runner, reason);
}

static void on_idle(bool ok, void *arg)
{
    struct fetchd *f = arg;
    if (f->once) {
        log_info("once: %s", ok ? "every domain released" : "some domains not released");
        fetchd_stop(f, ok ? FETCHD_EXIT_OK : FETCHD_EXIT_FAILED);
    } else {
        log_info("release %s; waiting for the next trigger", ok ? "complete" : "incomplete");
    }
}

/* ---- daemon ------------------------------------------------------------------------------ */

/* Double fork and setsid (the daemon is no session leader, so it never gets a controlling
 * terminal again); stdin and stdout go to /dev/null, stderr too unless the log goes there.
 * Returns 0 in the daemon; the parents exit. */
static int fetchd_daemonize(bool keep_stderr)
{
    pid_t p = fork();
    if (p < 0)
        return -errno;
    if (p > 0)
        _exit(0);
    if (setsid() < 0)
        return -errno;
    p = fork();
    if (p < 0)
        return -errno;
    if (p > 0)
        _exit(0);
    umask(022);
    if (chdir("/") < 0)
        return -errno;
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    dup2(fd, 0);
    dup2(fd, 1);
    if (!keep_stderr)
        dup2(fd, 2);
    if (fd > 2)
        close(fd);
    return 0;
}

/* Writes our pid to path, refusing when another live fetchd holds it. */
static int fetchd_pidfile_write(const char *path)
{
    FILE *in = fopen(path, "r");
    if (in) {
        long old = 0;
        bool live = fscanf(in, "%ld", &old) == 1 && old > 0 && (pid_t)old != getpid() &&
                    (kill((pid_t)old, 0) == 0 || errno == EPERM);
        fclose(in);
        if (live) {
            log_err("pid_file=%s names running process %ld: already running?", path, old);
            return -EEXIST;
        }
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        log_err("pid_file=%s cannot be written err=%s", path, hf_errname(-e));
        return -e;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    bool ok = write(fd, buf, (size_t)n) == n;
    close(fd);
    return ok ? 0 : -EIO;
}

static void fetchd_pidfile_remove(const char *path)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return;
    long pid = 0;
    bool ours = fscanf(in, "%ld", &pid) == 1 && (pid_t)pid == getpid();
    fclose(in);
    if (ours)
        unlink(path);
}

/* ---- privileges -------------------------------------------------------------------------- */

/* fetchd needs no privilege of its own (netlink link events are open to every user), so its
 * unit runs it as holdfast from the start; started as root with `user` set, it switches once
 * the netlink socket and the pid file are open. Same policy as relayd's: root without `user`
 * is a warning (unless allow_root = yes), `user` naming root needs allow_root = yes. */
static int fetchd_drop_privileges(const struct cfg *c)
{
    char why[512];
    struct privdrop p;
    if (!c->user || !c->user[0]) {
        if (geteuid() == 0 && !c->allow_root)
            log_warn("running as root: set user = holdfast (or allow_root = yes to say root is "
                     "meant)");
        return 0;
    }
    if (privdrop_resolve(c->user, c->group, &p, why, sizeof(why)) < 0) {
        log_err("user = %s: %s", c->user, why);
        return HF_ECONFIG;
    }
    if (p.uid == 0 && !c->allow_root) {
        log_err("user = %s is root: fetchd refuses to keep running as root; name an "
                "unprivileged user, or set allow_root = yes",
                c->user);
        return -EPERM;
    }
    if (p.uid == geteuid())
        return 0;
    if (geteuid() != 0) {
        log_err("user = %s: fetchd runs as uid %u, not root, so it cannot become uid %u", c->user,
                (unsigned)geteuid(), (unsigned)p.uid);
        return -EPERM;
    }
    if (privdrop_apply(&p, why, sizeof(why)) < 0) {
        log_err("cannot become user=%s: %s", p.user, why);
        return -EPERM;
    }
    log_info("running as user=%s uid=%u group=%s gid=%u", p.user, (unsigned)p.uid, p.group,
             (unsigned)p.gid);
    return 0;
}

/* ---- main -------------------------------------------------------------------------------- */

static int fetchd_run(struct fetchd *f, bool foreground)
{
    struct cfg *c = &f->cfg;
    bool daemon = !foreground && !f->once;
    bool pidfile = false;
    int rc;
    if (daemon) {
        rc = fetchd_daemonize(strcmp(c->log, "stderr") == 0);
        if (rc < 0) {
            log_err("cannot become a daemon err=%s", hf_errname(rc));
            return FETCHD_EXIT_FAILED;
        }
        if (c->pid_file && c->pid_file[0]) {
            if (fetchd_pidfile_write(c->pid_file) < 0)
                return FETCHD_EXIT_FAILED;
            pidfile = true;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&f->loop);
    f->exit_code = FETCHD_EXIT_FAILED;
    rc = dns_new(&f->loop, c->dns_servers && c->dns_servers[0] ? c->dns_servers : NULL,
                 (unsigned)(c->dns_timeout * 1000), 0, &f->dns);
    if (rc < 0) {
        log_err("cannot start the resolver err=%s (%s)", hf_errname(rc), hf_strerror(rc));
        goto out;
    }
    struct runner_opts ro = {
        .cfg = c,
        .dns = f->dns,
        .helo = f->hostname,
        .on_idle = on_idle,
        .arg = f,
        .seed = (uint32_t)getpid() ^ (uint32_t)time(NULL),
    };
    rc = runner_new(&f->loop, &ro, &f->runner);
    if (rc < 0) {
        f->exit_code = rc == HF_ECONFIG ? FETCHD_EXIT_CONFIG : FETCHD_EXIT_FAILED;
        dns_free(f->dns);
        f->dns = NULL;
        goto out;
    }
    uv_signal_init(&f->loop, &f->sigusr1);
    uv_signal_init(&f->loop, &f->sigterm);
    uv_signal_init(&f->loop, &f->sigint);
    uv_signal_init(&f->loop, &f->sighup);
    f->sigusr1.data = f->sigterm.data = f->sigint.data = f->sighup.data = f;
    uv_signal_start(&f->sigusr1, on_signal, SIGUSR1);
    uv_signal_start(&f->sigterm, on_signal, SIGTERM);
    uv_signal_start(&f->sigint, on_signal, SIGINT);
    uv_signal_start(&f->sighup, on_signal, SIGHUP);
    uv_timer_init(&f->loop, &f->interval);
    f->interval.data = f;
    if (f->once) {
        log_info("fetchd %s once relays=%zu", HF_VERSION, c->nrelays);
        runner_trigger(f->runner, "once");
    } else {
        rc = link_watch_start(&f->loop, c->debounce * 1000, on_link_up, f, &f->link);
        if (rc < 0)
            log_warn("link detection off: netlink socket refused err=%s (%s); interval and "
                     "SIGUSR1 still release",
                     hf_errname(rc), hf_strerror(rc));
        if (fetchd_drop_privileges(c) < 0) {
            f->exit_code = FETCHD_EXIT_CONFIG;
            fetchd_stop(f, FETCHD_EXIT_CONFIG);
            uv_run(&f->loop, UV_RUN_DEFAULT);
            goto out;
        }
        if (c->interval)
            uv_timer_start(&f->interval, on_interval, c->interval * 1000, c->interval * 1000);
        log_info("fetchd %s started relays=%zu link=%s debounce=%llus interval=%llus pid=%ld",
                 HF_VERSION, c->nrelays, f->link ? "netlink" : "off",
                 (unsigned long long)c->debounce, (unsigned long long)c->interval, (long)getpid());
        sdnotify_ready("watching links");
        runner_trigger(f->runner, "startup");
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
out:
    if (!f->stopping && f->dns) {
        dns_free(f->dns);
        f->dns = NULL;
        uv_run(&f->loop, UV_RUN_DEFAULT);
    }
    if (uv_loop_close(&f->loop) == UV_EBUSY) {
        uv_run(&f->loop, UV_RUN_DEFAULT);
        uv_loop_close(&f->loop);
    }
    if (pidfile)
        fetchd_pidfile_remove(c->pid_file);
    log_info("fetchd exiting status=%d", f->exit_code);
    return f->exit_code;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"test", no_argument, NULL, 't'},
        {"once", no_argument, NULL, 'o'},         {"foreground", no_argument, NULL, 'f'},
        {"debug", no_argument, NULL, 'd'},        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    static struct fetchd f;
    const char *conf = FETCHD_DEFAULT_CONFIG;
    bool test = false, foreground = false, debug = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:tfdhV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            conf = optarg;
            break;
        case 't':
            test = true;
            break;
        case 'o':
            f.once = true;
            break;
        case 'f':
            foreground = true;
            break;
        case 'd':
            debug = true;
            break;
        case 'h':
            usage(stdout);
            return FETCHD_EXIT_OK;
        case 'V':
            printf("fetchd (holdfast) %s\n", HF_VERSION);
            return FETCHD_EXIT_OK;
        default:
            usage(stderr);
            return FETCHD_EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fetchd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return FETCHD_EXIT_CONFIG;
    }

    struct cfg_errors errs = {0};
    int rc = cfg_load(conf, &f.cfg, &errs);
    if (rc == -ENOMEM) {
        fprintf(stderr, "fetchd: out of memory reading %s\n", conf);
        return FETCHD_EXIT_FAILED;
    }
    if (rc == 0 && runner_check(&f.cfg, &errs) < 0) {
        fprintf(stderr, "fetchd: out of memory checking %s\n", conf);
        return FETCHD_EXIT_FAILED;
    }
    if (test) {
        cfg_errors_print(&errs, stderr, "");
        int code = errs.n ? 1 : 0;
        if (!errs.n)
            printf("%s: configuration ok (%zu relay%s)\n", conf, f.cfg.nrelays,
                   f.cfg.nrelays == 1 ? "" : "s");
        cfg_errors_free(&errs);
        cfg_free(&f.cfg);
        return code;
    }
    if (rc < 0) {
        cfg_errors_print(&errs, stderr, "");
        cfg_errors_free(&errs);
        cfg_free(&f.cfg);
        return FETCHD_EXIT_CONFIG;
    }

    enum log_level lvl = LOG_LVL_INFO;
    if (f.cfg.log_level)
        log_level_parse(f.cfg.log_level, &lvl);
    if (debug)
        lvl = LOG_LVL_DEBUG;
    log_init("fetchd", strcmp(f.cfg.log, "syslog") == 0, lvl);
    /* Problems runner_check found with single relays (not global ones, which stop us
     * below) are logged again by the runner, which skips those relays. */
    bool global_err = false;
    for (size_t i = 0; i < errs.n; i++)
        global_err = global_err || errs.v[i].line == 0;
    if (global_err) {
        cfg_errors_print(&errs, stderr, "");
        cfg_errors_free(&errs);
        cfg_free(&f.cfg);
        return FETCHD_EXIT_CONFIG;
    }
    cfg_errors_free(&errs);

    if (f.cfg.hostname && f.cfg.hostname[0]) {
        snprintf(f.hostname, sizeof(f.hostname), "%s", f.cfg.hostname);
    } else if (gethostname(f.hostname, sizeof(f.hostname) - 1) < 0 || !f.hostname[0]) {
        snprintf(f.hostname, sizeof(f.hostname), "localhost");
    }
    int code = fetchd_run(&f, foreground);
    cfg_free(&f.cfg);
    return code;
}
