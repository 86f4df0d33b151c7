/* relayctl mailq --json: the queue as Postfix's "postqueue -j" prints it, so scripts written
 * for Postfix read ours. One JSON object per line per message, in queue id (arrival) order:
 *
 *   {"queue_name": "deferred", "queue_id": "01A202B00D110000", "arrival_time": 1700000000,
 *    "message_size": 5120, "forced_expire": false, "sender": "a@x.test",
 *    "recipients": [{"address": "b@branch.test", "delay_reason": "held for ETRN"}, ...]}
 *
 * The fields mean what they mean in Postfix (postqueue(1)):
 *   queue_name    "hold": the message or a recipient's domain is on hold (relayctl hold);
 *                 "deferred": a recipient was tried and deferred (or failed, awaiting its
 *                 bounce), or waits for ETRN (its domain has hold = yes), as Postfix lists
 *                 mail of a deferred transport; "active": waiting for its first attempt.
 *   arrival_time  unix seconds; message_size: octets as stored (Received: included);
 *   forced_expire always false: relayd has no such state (relayctl bounce returns mail at
 *                 once); sender: "" for the null reverse-path.
 *   delay_reason  only when there is one: the last reply or error of the recipient; for a
 *                 domain that waits for ETRN "held for ETRN", followed by
 *                 " (last attempt: ERROR)" when it was tried. Without the configuration
 *                 (relayctl -q DIR) a domain's hold = yes is not known.
 * With DOMAIN (or @DOMAIN) only the recipients in that domain (and subdomains) are listed.
 * The native JSON (relayctl list --json) stays as it is. */
#include "relayctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "hf_err.h"
#include "queue.h"

/* The recipients of one message, collected before the object is written (queue_name
 * depends on all of them). */
struct postq_msg {
    struct queue *q;
    const struct relayctl_opts *opt;
    const struct relayctl_ref *want;
    size_t nwant;
    struct queue_rcpt *r;
    size_t n, cap;
};

static int postq_rcpt_add(const struct queue_rcpt *r, void *arg)
{
    struct postq_msg *m = arg;
    if (m->want) {
        bool hit = false;
        for (size_t i = 0; i < m->nwant && !hit; i++)
            hit = m->want[i].idx == r->idx;
        if (!hit)
            return 0;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        struct queue_rcpt *v = realloc(m->r, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        m->r = v;
        m->cap = cap;
    }
    m->r[m->n++] = *r;
    return 0;
}

/* Whether the configuration makes the domain wait for ETRN (hold = yes). */
static bool postq_etrn_only(const struct relayctl_opts *opt, const char *domain)
{
    const struct cfg_domain *d = opt->cfg ? cfg_find_domain(opt->cfg, domain) : NULL;
    return d && d->hold;
}

/* Whether relayctl hold DOMAIN stopped the domain. */
static bool postq_domain_held(struct queue *q, const char *domain)
{
    struct queue_domain_stats st;
    return queue_domain_stats(q, domain, &st) == 0 && st.held;
}

static void postq_write(FILE *f, const struct queue_env *e, const struct postq_msg *m)
{
    bool hold = (e->flags & QUEUE_F_HELD) != 0, deferred = false;
    for (size_t i = 0; i < m->n; i++) {
        const struct queue_rcpt *r = &m->r[i];
        if (postq_domain_held(m->q, r->domain))
            hold = true;
        if (r->state != QUEUE_RS_PENDING || r->attempts > 0 || postq_etrn_only(m->opt, r->domain))
            deferred = true;
    }
    char idstr[QUEUE_ID_STR];
    fprintf(f,
            "{\"queue_name\":\"%s\",\"queue_id\":\"%s\",\"arrival_time\":%" PRId64
            ",\"message_size\":%" PRIu64 ",\"forced_expire\":false,\"sender\":",
            hold       ? "hold"
            : deferred ? "deferred"
                       : "active",
            queue_id_str(e->id, idstr), e->arrival, e->size);
    relayctl_json_str(f, e->sender);
    fputs(",\"recipients\":[", f);
    for (size_t i = 0; i < m->n; i++) {
        const struct queue_rcpt *r = &m->r[i];
        fputs(i ? ",{\"address\":" : "{\"address\":", f);
        relayctl_json_str(f, r->addr);
        bool etrn = postq_etrn_only(m->opt, r->domain);
        if (etrn || r->last_error[0]) {
            char reason[QUEUE_ERR_MAX + 64];
            if (etrn && r->last_error[0])
                snprintf(reason, sizeof(reason), "held for ETRN (last attempt: %s)", r->last_error);
            else
                snprintf(reason, sizeof(reason), "%s", etrn ? "held for ETRN" : r->last_error);
            fputs(",\"delay_reason\":", f);
            relayctl_json_str(f, reason);
        }
        putc('}', f);
    }
    fputs("]}\n", f);
}

int relayctl_cmd_postq(struct queue *q, const struct relayctl_opts *opt,
                       const struct relayctl_args *a)
{
    struct relayctl_refs s = {0};
    int rc = relayctl_refs_load(q, a, &s);
    if (rc != 0)
        return CTL_EX_ERROR;
    int ex = CTL_EX_OK;
    for (size_t i = 0; i < s.n;) {
        size_t j = i;
        while (j < s.n && s.v[j].id == s.v[i].id)
            j++;
        struct queue_env e;
        rc = queue_get_env(q, s.v[i].id, &e);
        if (rc == -ENOENT) { /* delivered or deleted since the scan */
            i = j;
            continue;
        }
        struct postq_msg m = {q, opt, a->has_domain ? &s.v[i] : NULL, j - i, NULL, 0, 0};
        if (rc == 0)
            rc = queue_get_rcpts(q, e.id, postq_rcpt_add, &m);
        if (rc == 0 && m.n > 0)
            postq_write(stdout, &e, &m);
        free(m.r);
        if (rc != 0 && rc != -ENOENT) {
            char idstr[QUEUE_ID_STR];
            fprintf(stderr, "relayctl: cannot read %s: %s\n", queue_id_str(s.v[i].id, idstr),
                    hf_strerror(rc));
            ex = CTL_EX_ERROR;
            break;
        }
        i = j;
    }
    free(s.v);
    return ex;
}
