/* Control requests of the queue lifecycle: BOUNCE (return messages to their senders now),
 * BOUNCE-DOMAIN, and TEST-CLOCK-ADVANCE (the test-only clock, clock.h). The answer of a
 * bounce is sent once its commits are durable. */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "clock.h"
#include "expire.h"
#include "hf_err.h"
#include "log.h"
#include "probe.h"

#define CTL_LIFE_IDS_MAX 256

/* The way back to ctl.c, for the answers that come after the request (ctl.c's is static
 * and lives as long as the daemon). */
static const struct ctl_reply *ctl_life_rp;

static void ctl_reply(struct relayd *rd, uint64_t client, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ctl_reply(struct relayd *rd, uint64_t client, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (ctl_life_rp)
        ctl_life_rp->line(rd, client, buf);
}

static void ctl_reply_wait(struct relayd *rd, uint64_t client, int delta)
{
    if (ctl_life_rp)
        ctl_life_rp->wait(rd, client, delta);
}

static void ctl_life_bounced(void *arg, uint64_t token, int status, size_t count)
{
    struct relayd *rd = arg;
    if (status < 0)
        ctl_reply(rd, token, "err bounce failed: %s\n", hf_strerror(status));
    else
        ctl_reply(rd, token, "ok bounced %zu recipient%s\n", count, count == 1 ? "" : "s");
    ctl_reply_wait(rd, token, -1);
}

/* Splits "ARGS -- REASON" at the first " -- " (the reason may hold spaces). */
static char *ctl_life_reason(char *rest)
{
    if (strncmp(rest, "-- ", 3) == 0) {
        *rest = '\0';
        return rest + 3;
    }
    char *sep = strstr(rest, " -- ");
    if (!sep)
        return NULL;
    *sep = '\0';
    return sep + 4;
}

static void ctl_life_bounce(struct relayd *rd, uint64_t client, bool by_domain, char *rest)
{
    char *reason = ctl_life_reason(rest);
    uint64_t ids[CTL_LIFE_IDS_MAX];
    size_t n = 0;
    char *domain = NULL, *save = NULL;
    for (char *w = strtok_r(rest, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (by_domain) {
            if (domain) {
                ctl_reply(rd, client, "err usage: BOUNCE-DOMAIN domain [-- reason]\n");
                return;
            }
            addr_lower(w);
            if (!addr_domain_is_valid(w, strlen(w), false)) {
                ctl_reply(rd, client, "err '%.260s' is not a domain\n", w);
                return;
            }
            domain = w;
        } else if (n == CTL_LIFE_IDS_MAX) {
            ctl_reply(rd, client, "err at most %d ids per request\n", CTL_LIFE_IDS_MAX);
            return;
        } else if (queue_id_parse(w, &ids[n]) < 0) {
            ctl_reply(rd, client, "err '%.100s' is not a queue id (16 hex digits)\n", w);
            return;
        } else {
            n++;
        }
    }
    if ((by_domain && !domain) || (!by_domain && n == 0)) {
        ctl_reply(rd, client, "err usage: %s\n",
                  by_domain ? "BOUNCE-DOMAIN domain [-- reason]" : "BOUNCE ID... [-- reason]");
        return;
    }
    ctl_reply_wait(rd, client, 1);
    int rc = expire_bounce(rd, ids, n, domain, reason, ctl_life_bounced, rd, client);
    if (rc < 0) {
        if (rc == -ENOENT)
            ctl_reply(rd, client, "err nothing queued for %s\n",
                      domain ? domain : "those queue ids");
        else if (rc == -EBUSY)
            ctl_reply(rd, client, "err a queue run for %s is going; try again when it ends\n",
                      domain);
        else
            ctl_reply(rd, client, "err bounce failed: %s\n", hf_strerror(rc));
        ctl_reply_wait(rd, client, -1);
        return;
    }
    log_info("relayctl action=bounce %s%s%s%s", domain ? "domain=" : "", domain ? domain : "",
             reason ? " reason=" : "", reason ? reason : "");
}

void ctl_life_running(struct relayd *rd, const struct ctl_reply *rp, uint64_t client)
{
    ctl_life_rp = rp;
    const char *d;
    enum probe_state st;
    int64_t since;
    for (size_t i = 0; probe_get(rd, i, &d, &st, &since); i++)
        ctl_reply(rd, client, "probe %s %s %lld\n", d, probe_state_name(st), (long long)since);
}

char *ctl_life_metrics(struct relayd *rd)
{
    size_t n = probe_count(rd);
    if (n == 0)
        return NULL;
    size_t cap = 256 + n * 320, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    len += (size_t)snprintf(out, cap,
                            "# HELP holdfast_primary_up 1 while a more-preferred MX answers "
                            "probes (RCPT gets 451), 0 when none does, -1 before an answer\n"
                            "# TYPE holdfast_primary_up gauge\n");
    const char *d;
    enum probe_state st;
    int64_t since;
    for (size_t i = 0; probe_get(rd, i, &d, &st, &since) && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "holdfast_primary_up{domain=\"%s\"} %d\n", d,
                                st == PROBE_UP     ? 1
                                : st == PROBE_DOWN ? 0
                                                   : -1);
    return out;
}

bool ctl_life_request(struct relayd *rd, const struct ctl_reply *rp, uint64_t client,
                      const char *verb, char *rest)
{
    ctl_life_rp = rp;
    if (strcmp(verb, "BOUNCE") == 0 || strcmp(verb, "BOUNCE-DOMAIN") == 0) {
        ctl_life_bounce(rd, client, verb[6] == '-', rest);
    } else if (strcmp(verb, "TEST-CLOCK-ADVANCE") == 0) {
        char *end;
        long long secs = strtoll(rest, &end, 10);
        int rc = end == rest || *end ? -EINVAL : clock_advance(secs);
        if (rc == -EPERM) {
            ctl_reply(rd, client,
                      "err the test clock is off (relayd was not started with "
                      "HF_TEST_TIME_OFFSET)\n");
        } else if (rc < 0) {
            ctl_reply(rd, client, "err usage: TEST-CLOCK-ADVANCE seconds\n");
        } else {
            log_warn("test clock advanced by %llds", secs);
            ctl_reply(rd, client, "ok test clock advanced by %llds\n", secs);
            /* What became due is decided now, not a tick later. */
            expire_tick(rd);
        }
    } else {
        return false;
    }
    ctl_reply_wait(rd, client, 0);
    return true;
}
