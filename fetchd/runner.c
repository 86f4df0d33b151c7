/* The runner (see runner.h): per relay a small state machine
 *
 *   IDLE --trigger, MTA ready--> RUNNING --step done, domains to retry--> RETRY_WAIT
 *     ^                             |                                        |
 *     +-------- series ended -------+<-------------- timer: RUNNING ---------+
 *
 * plus a "wanted" flag per relay for triggers that arrive while it is busy. Memory: the
 * runner counts its open handles (one retry timer per relay) and running steps, and is
 * freed when runner_close() has been called and both are gone. */
#include "runner.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "backoff.h"
#include "hf_err.h"
#include "log.h"
#include "mta.h"
#include "release.h"
#include "secret.h"
#include "tls.h"

#define RUNNER_REPLY_TIMEOUT_MS 300000 /* RFC 5321 4.5.3.2: five minutes per reply */

enum runner_rstate { RUNNER_R_IDLE = 0, RUNNER_R_RUNNING, RUNNER_R_RETRY_WAIT };

struct runner_relay {
    struct runner *r;
    const struct cfg_relay *cfg;
    char **domains;
    size_t ndomains;
    bool usable;
    enum runner_rstate state;
    bool wanted;                /* triggered; starts when idle and the MTA is ready */
    unsigned attempt;           /* retries done in the current series */
    bool *todo;                 /* domains still to ask in the current series */
    size_t *step_map;           /* the running step's domain i is domains[step_map[i]] */
    const char **step_doms;     /* the running step's domain list (borrowed from domains) */
    enum release_verdict *last; /* the current series' verdict per domain */
    struct release_step *step;
    uv_timer_t retry_timer;
    bool has_password;
    char password[SECRET_BUF]; /* auth_password_file's first line, wiped when freed */
};

struct runner {
    uv_loop_t *loop;
    const struct cfg *cfg;
    struct dns *dns;
    char *helo;
    runner_idle_cb on_idle;
    void *arg;
    uint32_t rng;
    struct backoff backoff;
    struct runner_relay *relays;
    size_t nrelays;
    struct mta_wait *mta;
    struct tls_ctx *tls; /* one client context for every relay with tls != no */
    bool worked;         /* something ran since the last on_idle */
    bool failed;         /* some domain was not DONE since the last on_idle */
    bool skipped;        /* some relay cannot run */
    bool closing;
    int refs; /* open retry timers + running steps */
};

static void runner_kick(struct runner *r);

/* ---- configuration checks ------------------------------------------------------------------ */

/* The relay's TLS and AUTH keys: a combination that does not go together, or a password file
 * that cannot be used (loaded into pw, sz >= SECRET_BUF, when there is one). Returns true
 * and a sentence in why when the relay cannot run. */
static bool runner_relay_problem(const struct cfg_relay *rel, char *pw, size_t sz, bool *has_pw,
                                 char *why, size_t whysz)
{
    *has_pw = false;
    const char *p = release_tls_problem(rel);
    if (p) {
        snprintf(why, whysz, "%s", p);
        return true;
    }
    if (!rel->auth_password_file || !rel->auth_password_file[0])
        return false;
    char reason[256];
    if (secret_load(rel->auth_password_file, pw, sz, reason, sizeof(reason)) < 0) {
        snprintf(why, whysz, "auth_password_file %s: %s", rel->auth_password_file, reason);
        return true;
    }
    *has_pw = true;
    return false;
}

int runner_check(const struct cfg *c, struct cfg_errors *errs)
{
    int n = 0;
    const char *file = c->path;
    if (c->nrelays == 0) {
        if (cfg_errors_add(errs, file, 0, "no [relay NAME] section: fetchd has nothing to ask") < 0)
            return -ENOMEM;
        n++;
    }
    if (c->local_mta && c->local_mta[0]) {
        char host[256];
        int port;
        if (mta_parse(c->local_mta, host, sizeof(host), &port) < 0) {
            if (cfg_errors_add(errs, file, 0,
                               "'local_mta = %s': must be host:port, [v6addr]:port or host",
                               c->local_mta) < 0)
                return -ENOMEM;
            n++;
        }
    }
    if (c->retry_delay_max < c->retry_delay) {
        if (cfg_errors_add(errs, file, 0,
                           "retry_delay_max (%" PRIu64 ") is smaller than retry_delay (%" PRIu64
                           ")",
                           c->retry_delay_max, c->retry_delay) < 0)
            return -ENOMEM;
        n++;
    }
    if (c->tls_ca_file && c->tls_ca_file[0] && access(c->tls_ca_file, R_OK) < 0) {
        int e = errno;
        if (cfg_errors_add(errs, file, 0, "tls_ca_file %s cannot be read: %s", c->tls_ca_file,
                           strerror(e)) < 0)
            return -ENOMEM;
        n++;
    }
    for (size_t i = 0; i < c->nrelays; i++) {
        const char *why = NULL;
        char buf[512];
        char pw[SECRET_BUF];
        bool has_pw;
        if (runner_relay_problem(&c->relays[i], pw, sizeof(pw), &has_pw, buf, sizeof(buf)))
            why = buf;
        explicit_bzero(pw, sizeof(pw));
        if (!why)
            continue;
        if (cfg_errors_add(errs, file, c->relays[i].line, "relay %s: %s", c->relays[i].name, why) <
            0)
            return -ENOMEM;
        n++;
    }
    return n;
}

/* ---- series and steps ---------------------------------------------------------------------- */

static uint32_t runner_rand(struct runner *r)
{
    /* xorshift32: jitter only needs to spread offices apart, not to be secret. */
    uint32_t x = r->rng ? r->rng : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    r->rng = x;
    return x;
}

/* Frees r and what it owns (the password buffers wiped); its handles are closed already. */
static void runner_free(struct runner *r)
{
    for (size_t i = 0; i < r->nrelays; i++) {
        struct runner_relay *rr = &r->relays[i];
        for (size_t d = 0; d < rr->ndomains; d++)
            free(rr->domains[d]);
        free(rr->domains);
        free(rr->todo);
        free(rr->step_map);
        free(rr->step_doms);
        free(rr->last);
        explicit_bzero(rr->password, sizeof(rr->password));
    }
    tls_ctx_free(r->tls);
    free(r->relays);
    free(r->helo);
    free(r);
}

static void runner_unref(struct runner *r)
{
    if (--r->refs > 0 || !r->closing)
        return;
    runner_free(r);
}

/* Called after any state change: reports idleness once the work is over. */
static void runner_check_idle(struct runner *r)
{
    if (r->closing || !r->worked || r->mta)
        return;
    for (size_t i = 0; i < r->nrelays; i++)
        if (r->relays[i].state != RUNNER_R_IDLE || r->relays[i].wanted)
            return;
    bool ok = !r->failed && !r->skipped;
    r->worked = false;
    r->failed = false;
    if (r->on_idle)
        r->on_idle(ok, r->arg);
}

static void runner_series_end(struct runner_relay *rr)
{
    size_t done = 0, fatal = 0, retry = 0;
    for (size_t d = 0; d < rr->ndomains; d++) {
        if (rr->last[d] == RELEASE_DONE)
            done++;
        else if (rr->last[d] == RELEASE_FATAL)
            fatal++;
        else
            retry++;
    }
    if (fatal || retry)
        rr->r->failed = true;
    log_info("relay=%s %s domains=%zu done=%zu fatal=%zu retry_exhausted=%zu retries=%u",
             rr->cfg->name, fatal || retry ? "release incomplete" : "released", rr->ndomains, done,
             fatal, retry, rr->attempt);
    rr->state = RUNNER_R_IDLE;
    if (rr->wanted)
        runner_kick(rr->r);
    runner_check_idle(rr->r);
}

static void runner_step_start(struct runner_relay *rr);

static void runner_on_retry_timer(uv_timer_t *t)
{
    struct runner_relay *rr = t->data;
    if (rr->r->closing || rr->state != RUNNER_R_RETRY_WAIT)
        return;
    runner_step_start(rr);
}

static void runner_on_step(const enum release_verdict *res, size_t n, bool cancelled, void *arg)
{
    struct runner_relay *rr = arg;
    struct runner *r = rr->r;
    rr->step = NULL;
    if (cancelled || r->closing) {
        rr->state = RUNNER_R_IDLE;
        runner_unref(r);
        return;
    }
    size_t left = 0;
    for (size_t i = 0; i < n; i++) {
        size_t d = rr->step_map[i];
        rr->last[d] = res[i];
        if (res[i] != RELEASE_RETRY)
            rr->todo[d] = false;
    }
    char list[1024];
    size_t o = 0;
    list[0] = '\0';
    for (size_t d = 0; d < rr->ndomains; d++) {
        if (!rr->todo[d])
            continue;
        left++;
        int k = snprintf(list + o, sizeof(list) - o, "%s%s", o ? "," : "", rr->domains[d]);
        if (k > 0 && (size_t)k < sizeof(list) - o)
            o += (size_t)k;
    }
    if (left && rr->attempt < r->cfg->retry_limit) {
        rr->attempt++;
        uint64_t ms = backoff_delay_ms(&r->backoff, rr->attempt, runner_rand(r));
        log_info("relay=%s retry=%u/%" PRIu64 " in=%" PRIu64 ".%03us domains=%s", rr->cfg->name,
                 rr->attempt, r->cfg->retry_limit, ms / 1000, (unsigned)(ms % 1000), list);
        rr->state = RUNNER_R_RETRY_WAIT;
        uv_timer_start(&rr->retry_timer, runner_on_retry_timer, ms, 0);
    } else {
        if (left)
            log_warn("relay=%s giving up after %u retries domains=%s", rr->cfg->name, rr->attempt,
                     list);
        runner_series_end(rr);
    }
    runner_unref(r);
}

/* Starts one step for the domains still to do. */
static void runner_step_start(struct runner_relay *rr)
{
    struct runner *r = rr->r;
    const char **doms = rr->step_doms;
    size_t n = 0;
    for (size_t d = 0; d < rr->ndomains; d++)
        if (rr->todo[d]) {
            rr->step_map[n] = d;
            doms[n++] = rr->domains[d];
        }
    if (n == 0) {
        runner_series_end(rr);
        return;
    }
    struct release_params p = {
        .loop = r->loop,
        .dns = r->dns,
        .relay = rr->cfg,
        .domains = doms,
        .ndomains = n,
        .helo = r->helo,
        .connect_timeout_ms = r->cfg->timeout_connect * 1000,
        .reply_timeout_ms = RUNNER_REPLY_TIMEOUT_MS,
        .tls_ctx = r->tls,
        .auth_password = rr->has_password ? rr->password : NULL,
        .local_mta = r->cfg->local_mta && r->cfg->local_mta[0] ? r->cfg->local_mta : "127.0.0.1:25",
        .local_lmtp = r->cfg->local_mta_protocol && strcmp(r->cfg->local_mta_protocol, "lmtp") == 0,
    };
    rr->state = RUNNER_R_RUNNING;
    int rc = release_step_start(&p, runner_on_step, rr, &rr->step);
    if (rc < 0) {
        log_err("relay=%s cannot start the release err=%s (%s)", rr->cfg->name, hf_errname(rc),
                hf_strerror(rc));
        for (size_t d = 0; d < rr->ndomains; d++)
            if (rr->todo[d])
                rr->last[d] = RELEASE_RETRY;
        runner_series_end(rr);
        return;
    }
    r->refs++;
}

static void runner_series_start(struct runner_relay *rr)
{
    rr->wanted = false;
    rr->attempt = 0;
    for (size_t d = 0; d < rr->ndomains; d++) {
        rr->todo[d] = true;
        rr->last[d] = RELEASE_PENDING;
    }
    rr->r->worked = true;
    runner_step_start(rr);
}

static void runner_start_wanted(struct runner *r)
{
    for (size_t i = 0; i < r->nrelays; i++) {
        struct runner_relay *rr = &r->relays[i];
        if (rr->usable && rr->wanted && rr->state == RUNNER_R_IDLE)
            runner_series_start(rr);
    }
}

static void runner_on_mta(int status, void *arg)
{
    struct runner *r = arg;
    r->mta = NULL;
    if (status == -ECANCELED || r->closing)
        return;
    if (status == 0) {
        runner_start_wanted(r);
    } else {
        /* The wait was bounded already; the next trigger tries again. */
        for (size_t i = 0; i < r->nrelays; i++) {
            struct runner_relay *rr = &r->relays[i];
            if (rr->wanted && rr->state == RUNNER_R_IDLE) {
                rr->wanted = false;
                r->failed = true;
                log_err("relay=%s not released: local_mta=%s does not accept connections",
                        rr->cfg->name, r->cfg->local_mta);
            }
        }
    }
    runner_check_idle(r);
}

/* Starts the wanted idle relays, through the local MTA wait when one is configured. */
static void runner_kick(struct runner *r)
{
    if (r->closing || r->mta)
        return;
    bool any = false;
    for (size_t i = 0; i < r->nrelays; i++)
        any = any || (r->relays[i].wanted && r->relays[i].state == RUNNER_R_IDLE);
    if (!any)
        return;
    r->worked = true;
    const char *mta = r->cfg->local_mta;
    if (!mta || !mta[0] || r->cfg->local_mta_wait == 0) {
        runner_start_wanted(r);
        return;
    }
    int rc = mta_wait_start(r->loop, r->dns, mta, r->cfg->local_mta_wait * 1000, runner_on_mta, r,
                            &r->mta);
    if (rc < 0) {
        log_err("local_mta=%s cannot be checked err=%s; releasing anyway", mta, hf_errname(rc));
        r->mta = NULL;
        runner_start_wanted(r);
    }
}

void runner_trigger(struct runner *r, const char *reason)
{
    if (r->closing)
        return;
    log_info("release reason=%s", reason);
    for (size_t i = 0; i < r->nrelays; i++) {
        struct runner_relay *rr = &r->relays[i];
        if (!rr->usable)
            continue;
        rr->wanted = true;
        if (rr->state == RUNNER_R_RETRY_WAIT) {
            /* A fresh trigger is the best moment to ask: do not sit out the backoff. */
            uv_timer_stop(&rr->retry_timer);
            rr->state = RUNNER_R_IDLE;
        } else if (rr->state == RUNNER_R_RUNNING) {
            log_info("relay=%s release running; will run once more after it", rr->cfg->name);
        }
    }
    r->worked = true;
    runner_kick(r);
    runner_check_idle(r);
}

bool runner_busy(const struct runner *r)
{
    if (r->mta)
        return true;
    for (size_t i = 0; i < r->nrelays; i++)
        if (r->relays[i].state != RUNNER_R_IDLE || r->relays[i].wanted)
            return true;
    return false;
}

/* ---- setup and teardown -------------------------------------------------------------------- */

static int runner_split_domains(struct runner_relay *rr)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", rr->cfg->domains ? rr->cfg->domains : "");
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
        addr_lower(w);
        bool dup = false;
        for (size_t d = 0; d < rr->ndomains && !dup; d++)
            dup = strcmp(rr->domains[d], w) == 0;
        if (dup)
            continue;
        char **v = realloc(rr->domains, (rr->ndomains + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        rr->domains = v;
        if (!(v[rr->ndomains] = strdup(w)))
            return -ENOMEM;
        rr->ndomains++;
    }
    size_t n = rr->ndomains ? rr->ndomains : 1;
    rr->todo = calloc(n, sizeof(*rr->todo));
    rr->step_map = calloc(n, sizeof(*rr->step_map));
    rr->step_doms = calloc(n, sizeof(*rr->step_doms));
    rr->last = calloc(n, sizeof(*rr->last));
    return rr->todo && rr->step_map && rr->step_doms && rr->last ? 0 : -ENOMEM;
}

static void runner_timer_closed(uv_handle_t *h)
{
    struct runner_relay *rr = h->data;
    runner_unref(rr->r);
}

int runner_new(uv_loop_t *loop, const struct runner_opts *o, struct runner **out)
{
    const struct cfg *c = o->cfg;
    struct runner *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->cfg = c;
    r->dns = o->dns;
    r->on_idle = o->on_idle;
    r->arg = o->arg;
    r->rng = o->seed;
    r->backoff.base_ms = c->retry_delay * 1000;
    r->backoff.max_ms = c->retry_delay_max * 1000;
    r->backoff.jitter_pct = BACKOFF_JITTER_PCT;
    r->helo = strdup(o->helo);
    r->relays = calloc(c->nrelays ? c->nrelays : 1, sizeof(*r->relays));
    if (!r->helo || !r->relays)
        goto nomem;
    r->nrelays = c->nrelays;
    size_t usable = 0;
    for (size_t i = 0; i < c->nrelays; i++) {
        struct runner_relay *rr = &r->relays[i];
        rr->r = r;
        rr->cfg = &c->relays[i];
        if (runner_split_domains(rr) < 0)
            goto nomem;
        const char *why = NULL;
        char buf[512];
        if (runner_relay_problem(rr->cfg, rr->password, sizeof(rr->password),
                                         &rr->has_password, buf, sizeof(buf)))
            why = buf;
        if (why) {
            log_err("relay=%s not started: %s", rr->cfg->name, why);
            r->skipped = true;
        } else if (rr->ndomains == 0) {
            log_err("relay=%s not started: no domains", rr->cfg->name);
            r->skipped = true;
        } else {
            rr->usable = true;
            usable++;
            log_debug("relay=%s tls=%s tls_verify=%s auth=%s", rr->cfg->name,
                      release_tls_policy(rr->cfg) == SMTPC_TLS_NEVER           ? "no"
                      : release_tls_policy(rr->cfg) == SMTPC_TLS_OPPORTUNISTIC ? "may"
                                                                               : "require",
                      release_tls_verify(rr->cfg) ? "yes" : "no",
                      rr->has_password ? rr->cfg->auth_user : "-");
        }
    }
    /* One client context (the CA store is read once) for every relay that may use TLS. */
    for (size_t i = 0; i < r->nrelays; i++) {
        struct runner_relay *rr = &r->relays[i];
        if (!rr->usable || release_tls_policy(rr->cfg) == SMTPC_TLS_NEVER)
            continue;
        if (!r->tls) {
            const char *ca = c->tls_ca_file && c->tls_ca_file[0] ? c->tls_ca_file : NULL;
            int rc = tls_ctx_client_new(ca, &r->tls);
            if (rc < 0) {
                r->tls = NULL;
                log_err("relay=%s not started: no TLS client context (tls_ca_file=%s) err=%s",
                        rr->cfg->name, ca ? ca : "system store", hf_errname(rc));
                rr->usable = false;
                r->skipped = true;
                usable--;
                continue;
            }
        }
    }
    for (size_t i = 0; i < r->nrelays; i++) {
        uv_timer_init(loop, &r->relays[i].retry_timer);
        r->relays[i].retry_timer.data = &r->relays[i];
        r->refs++;
    }
    if (usable == 0) {
        log_err("no relay can run");
        r->closing = true;
        r->refs++; /* released just below, after the timers are closing */
        for (size_t i = 0; i < r->nrelays; i++)
            uv_close((uv_handle_t *)&r->relays[i].retry_timer, runner_timer_closed);
        runner_unref(r);
        return HF_ECONFIG;
    }
    *out = r;
    return 0;
nomem:
    runner_free(r);
    return -ENOMEM;
}

void runner_close(struct runner *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    r->refs++; /* held until every close below has been issued */
    if (r->mta) {
        struct mta_wait *w = r->mta;
        r->mta = NULL;
        mta_wait_cancel(w);
    }
    for (size_t i = 0; i < r->nrelays; i++) {
        struct runner_relay *rr = &r->relays[i];
        if (rr->step)
            release_step_cancel(rr->step);
        uv_timer_stop(&rr->retry_timer);
        uv_close((uv_handle_t *)&rr->retry_timer, runner_timer_closed);
    }
    runner_unref(r);
}
