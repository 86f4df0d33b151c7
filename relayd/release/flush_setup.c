/* Setting up and tearing down the queue-run module (flush.h): the names and addresses that
 * count as this host for the self-MX rule, the DNS resolver, and the shutdown that aborts
 * running deliveries. The runs themselves are in flush.c. */
#include "flush.h"
#include "flush_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "dns.h"
#include "hf_err.h"
#include "log.h"
#include "relayd.h"

/* ---- setup ------------------------------------------------------------------------------ */

static int flush_self(struct flush *fl, const struct cfg *c, const char *hostname)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s %s", hostname, c->self_names ? c->self_names : "");
    char *save = NULL;
    for (char *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
        const char **v = realloc(fl->self_names, (fl->nself_names + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        fl->self_names = v;
        if (!(v[fl->nself_names] = strdup(w)))
            return -ENOMEM;
        fl->nself_names++;
    }
    snprintf(buf, sizeof(buf), "%s %s", c->listen ? c->listen : "",
             c->self_addrs ? c->self_addrs : "");
    save = NULL;
    for (char *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
        struct sockaddr_storage ss;
        if (conn_parse_hostport(w, 0, &ss) < 0) {
            log_err("self_addrs: '%s' is not an IP address", w);
            return HF_ECONFIG;
        }
        flush_set_port(&ss, 0);
        struct sockaddr_storage *v = realloc(fl->self_addrs, (fl->nself_addrs + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        fl->self_addrs = v;
        v[fl->nself_addrs++] = ss;
    }
    return 0;
}

static void flush_free(struct flush *fl)
{
    for (size_t i = 0; i < fl->nself_names; i++)
        free((char *)fl->self_names[i]);
    free(fl->self_names);
    free(fl->self_addrs);
    idmap_close(&fl->runs);
    free(fl->active);
    free(fl);
}

int flush_init(struct relayd *rd)
{
    struct flush *fl = calloc(1, sizeof(*fl));
    if (!fl)
        return -ENOMEM;
    fl->rd = rd;
    idmap_init(&fl->runs);
    int rc = flush_self(fl, rd->cfg, rd->prm.hostname);
    if (rc < 0)
        goto fail;
    const char *servers =
        rd->cfg->dns_servers && rd->cfg->dns_servers[0] ? rd->cfg->dns_servers : NULL;
    rc = dns_new(rd->loop, servers, (unsigned)rd->cfg->dns_timeout * 1000, 2, &fl->dns);
    if (rc < 0) {
        log_err("cannot start the DNS resolver servers=%s err=%s", servers ? servers : "system",
                hf_errname(rc));
        goto fail;
    }
    rd->flush = fl;
    rd->flush_due = flush_start_due;
    rd->flush_busy = flush_running;
    return 0;
fail:
    flush_free(fl);
    return rc < 0 ? rc : HF_ECONFIG;
}

void flush_shutdown(struct relayd *rd)
{
    struct flush *fl = rd->flush;
    if (!fl)
        return;
    fl->stopping = true;
    /* Running deliveries end after their current message (workers quit instead of taking
     * the next one); aborting connections defers whatever is in flight. */
    for (size_t i = 0; i < fl->nactive; i++) {
        struct flush_run *run = fl->active[i];
        for (size_t j = 0; j < run->nworkers; j++)
            if (run->workers[j] && run->workers[j]->conn)
                conn_close(run->workers[j]->conn, true);
    }
    dns_free(fl->dns);
    fl->dns = NULL;
}

/* Frees the module once nothing is running; called by main after the loop ends. */
void flush_free_all(struct relayd *rd)
{
    struct flush *fl = rd->flush;
    if (!fl)
        return;
    while (fl->nactive) {
        struct flush_run *run = fl->active[--fl->nactive];
        flush_run_free(run);
    }
    flush_free(fl);
    rd->flush = NULL;
}
