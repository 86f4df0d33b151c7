/* The expiry warning to a domain's postmaster (see pmwarn.h): one summary message per
 * domain per period, never one per message, built from the domain's counters (no scan of
 * its recipients) and stored with the domain's "warned at" in one transaction, so a
 * restart neither loses nor repeats it. */
#include "pmwarn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "clock.h"
#include "dsn.h"
#include "hf_err.h"
#include "log.h"
#include "relayd.h"
#include "retry.h"

#define PMWARN_INFLIGHT_MAX 64

struct pmwarn_job {
    struct relayd *rd;
    struct queue_new_msg *msg; /* handed to the writer by pmwarn_build */
    char domain[256];
    char to_domain[256];
};

/* Domains whose warning is being committed (loop thread only). */
static char pmwarn_inflight[PMWARN_INFLIGHT_MAX][256];

static bool pmwarn_busy(const char *d)
{
    for (size_t i = 0; i < PMWARN_INFLIGHT_MAX; i++)
        if (strcmp(pmwarn_inflight[i], d) == 0)
            return true;
    return false;
}

static bool pmwarn_mark(const char *d, bool on)
{
    for (size_t i = 0; i < PMWARN_INFLIGHT_MAX; i++) {
        if (on && !pmwarn_inflight[i][0]) {
            snprintf(pmwarn_inflight[i], sizeof(pmwarn_inflight[i]), "%s", d);
            return true;
        }
        if (!on && strcmp(pmwarn_inflight[i], d) == 0) {
            pmwarn_inflight[i][0] = '\0';
            return true;
        }
    }
    return false;
}

static void pmwarn_span(int64_t s, char *out, size_t outsz)
{
    if (s % 86400 == 0 && s >= 86400)
        snprintf(out, outsz, "%lld day%s", (long long)(s / 86400), s == 86400 ? "" : "s");
    else if (s % 3600 == 0 && s >= 3600)
        snprintf(out, outsz, "%lld hour%s", (long long)(s / 3600), s == 3600 ? "" : "s");
    else
        snprintf(out, outsz, "%lld seconds", (long long)s);
}

int pmwarn_text(const struct pmwarn_facts *f, char *out, size_t outsz)
{
    char d1[40], d2[40], d3[40], life[32], per[32];
    pmwarn_span(f->lifetime, life, sizeof(life));
    pmwarn_span(f->period, per, sizeof(per));
    int n =
        snprintf(out, outsz,
                 "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
                 "To: <%s>\r\n"
                 "Subject: Mail for %s held at %s expires %s\r\n"
                 "Date: %s\r\n"
                 "Message-ID: %s\r\n"
                 "Auto-Submitted: auto-generated\r\n"
                 "MIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=us-ascii\r\n"
                 "\r\n"
                 "This is the mail system at host %s, a relay that holds mail for %s.\r\n"
                 "\r\n"
                 "Mail for %s has not been delivered or released:\r\n"
                 "\r\n"
                 "    messages:   %llu (%llu recipients, %llu octets)\r\n"
                 "    oldest:     arrived %s\r\n"
                 "    expires:    %s\r\n"
                 "\r\n"
                 "Held mail is kept for %s. After that it is returned to its senders\r\n"
                 "and is lost to you. Mail that arrived before %s expires\r\n"
                 "within the next %s.\r\n"
                 "\r\n"
                 "To receive it before then, release it to your mail server:\r\n"
                 "\r\n"
                 "  - send \"ETRN %s\" to %s on the SMTP port (fetchd does this when\r\n"
                 "    your link comes up; fetchmail's ETRN mode, or any SMTP client, can too);\r\n"
                 "  - or ask the operator of %s to run: relayctl flush %s\r\n"
                 "\r\n"
                 "This warning is sent at most once every %s for %s.\r\n",
                 f->host, f->to, f->domain, f->host, f->expires <= f->now ? "now" : "soon",
                 dsn_date(f->now, d1), f->message_id, f->host, f->domain, f->domain,
                 (unsigned long long)f->messages, (unsigned long long)f->rcpts,
                 (unsigned long long)f->bytes, dsn_date(f->oldest, d2), dsn_date(f->expires, d3),
                 life, dsn_date(f->now + f->period - f->lifetime, d1), per, f->domain, f->host,
                 f->host, f->domain, per, f->domain);
    if (n < 0 || (size_t)n >= outsz)
        return -ENOSPC;
    return n;
}

/* ---- the writer's side ------------------------------------------------------------------- */

static int pmwarn_build(struct queue *q, const struct queue_update *ups, size_t n, void *arg,
                        struct queue_new_msg ***msgs, size_t *nmsgs)
{
    (void)q;
    (void)ups;
    (void)n;
    struct pmwarn_job *job = arg;
    struct queue_new_msg **v = malloc(sizeof(*v));
    if (!v)
        return -ENOMEM;
    v[0] = job->msg;
    job->msg = NULL; /* the writer frees it */
    *msgs = v;
    *nmsgs = 1;
    return 0;
}

static void pmwarn_committed(int status, uint64_t token, struct queue_update *ups, size_t n,
                             void *arg)
{
    (void)token;
    (void)ups;
    (void)n;
    struct pmwarn_job *job = arg;
    pmwarn_mark(job->domain, false);
    if (status < 0) {
        log_err("domain=%s expiry warning not queued err=%s; tried again next tick", job->domain,
                hf_errname(status));
    } else if (job->rd->flush_due) {
        int rc = job->rd->flush_due(job->rd, job->to_domain);
        if (rc < 0 && rc != -EBUSY && rc != -ENOENT && rc != -EPERM && rc != -ESHUTDOWN)
            log_warn("domain=%s expiry warning: queue run for %s not started err=%s", job->domain,
                     job->to_domain, hf_errname(rc));
    }
    queue_new_msg_free(job->msg);
    free(job);
}

/* ---- the tick ---------------------------------------------------------------------------- */

static void pmwarn_domain(struct relayd *rd, const struct cfg_domain *cd, int64_t now)
{
    const struct cfg *c = rd->cfg;
    int64_t period = (int64_t)(cd->expiry_warning_time != CFG_INHERIT ? cd->expiry_warning_time
                                                                      : c->expiry_warning_time);
    int64_t lifetime = (int64_t)(cd->max_queue_lifetime != CFG_INHERIT ? cd->max_queue_lifetime
                                                                       : c->max_queue_lifetime);
    if (period <= 0 || pmwarn_busy(cd->name))
        return;
    struct queue_domain_stats st;
    if (queue_domain_stats(rd->q, cd->name, &st) < 0 || st.messages == 0)
        return;
    struct retry_policy pol = {lifetime, 0};
    if (!retry_expiry_warning_due(st.oldest, &pol, period, st.warned_at, now))
        return; /* nothing expires within the warning time, or warned this period */
    int64_t expires = st.oldest + lifetime;

    char to[SMTP_PATH_MAX + 1], to_domain[256];
    if (cd->expiry_warning_to && *cd->expiry_warning_to)
        snprintf(to, sizeof(to), "%s", cd->expiry_warning_to);
    else
        snprintf(to, sizeof(to), "postmaster@%s", cd->name);
    const char *at = strrchr(to, '@');
    snprintf(to_domain, sizeof(to_domain), "%s", at ? at + 1 : "");
    addr_lower(to_domain);
    if (!at || !addr_domain_is_valid(to_domain, strlen(to_domain), true)) {
        log_warn("domain=%s expiry_warning_to=%s is not an address; no warning sent", cd->name, to);
        return;
    }
    struct pmwarn_job *job = calloc(1, sizeof(*job));
    struct queue_new_msg *m = calloc(1, sizeof(*m));
    struct queue_update *u = calloc(1, sizeof(*u));
    char *body = malloc(8192);
    if (m)
        m->rcpts = calloc(1, sizeof(*m->rcpts));
    if (!job || !m || !m->rcpts || !u || !body) {
        free(job);
        queue_new_msg_free(m);
        free(u);
        free(body);
        log_err("domain=%s out of memory for its expiry warning", cd->name);
        return;
    }
    m->env.id = queue_id_next(rd->q);
    char wid[QUEUE_ID_STR], msgid[320];
    queue_id_str(m->env.id, wid);
    snprintf(msgid, sizeof(msgid), "<%s.expiry-warning@%s>", wid, rd->prm.hostname);
    struct pmwarn_facts f = {
        .host = rd->prm.hostname,
        .domain = cd->name,
        .to = to,
        .message_id = msgid,
        .messages = st.messages,
        .rcpts = st.rcpts,
        .bytes = st.bytes,
        .oldest = st.oldest,
        .expires = expires,
        .lifetime = lifetime,
        .period = period,
        .now = now,
    };
    int n = pmwarn_text(&f, body, 8192);
    if (n < 0) {
        free(job);
        queue_new_msg_free(m);
        free(u);
        free(body);
        return;
    }
    m->body = body;
    m->body_len = (size_t)n;
    m->env.arrival = now;
    m->env.size = (uint64_t)n;
    snprintf(m->env.client_name, sizeof(m->env.client_name), "%s", rd->prm.hostname);
    snprintf(m->env.client_addr, sizeof(m->env.client_addr), "127.0.0.1");
    m->env.nrcpt = 1;
    m->nrcpt = 1;
    snprintf(m->rcpts[0].addr, sizeof(m->rcpts[0].addr), "%s", to);
    snprintf(m->rcpts[0].domain, sizeof(m->rcpts[0].domain), "%s", to_domain);
    /* No reports about a report: NOTIFY=NEVER, and the null sender (RFC 3834 5). */
    m->rcpts[0].notify = SMTP_NOTIFY_NEVER;
    u->op = QUEUE_OP_DOMAIN_WARNED;
    u->when = now;
    snprintf(u->domain, sizeof(u->domain), "%s", cd->name);
    job->rd = rd;
    job->msg = m;
    snprintf(job->domain, sizeof(job->domain), "%s", cd->name);
    snprintf(job->to_domain, sizeof(job->to_domain), "%s", to_domain);
    if (!pmwarn_mark(cd->name, true)) {
        free(u);
        queue_new_msg_free(m);
        free(job);
        return; /* too many at once: the next tick */
    }
    int rc = queue_wr_commit_job(rd->wr, u, 1, pmwarn_build, pmwarn_committed, 0, job);
    if (rc < 0) {
        pmwarn_mark(cd->name, false);
        queue_new_msg_free(m);
        free(job);
        log_err("domain=%s expiry warning not queued err=%s", cd->name, hf_errname(rc));
        return;
    }
    log_info("%s domain=%s expiry warning to=<%s> messages=%llu oldest_age=%llds "
             "expires_in=%llds",
             wid, cd->name, to, (unsigned long long)st.messages, (long long)(now - st.oldest),
             (long long)(expires - now));
}

void pmwarn_tick(struct relayd *rd)
{
    if (rd->stopping)
        return;
    int64_t now = clock_now();
    for (size_t i = 0; i < rd->cfg->ndomains; i++)
        pmwarn_domain(rd, &rd->cfg->domains[i], now);
}
