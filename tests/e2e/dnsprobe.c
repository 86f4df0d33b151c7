/* dnsprobe: a test driver for dns.c and mx.c, run by tests/e2e/test_dns.py and
 * tests/e2e/test_dns_tlsa.py against a loopback DNS server. It resolves each name given (in
 * parallel, on one uv loop) and prints, per name, the lookup result and the delivery plan mx_plan()
 * + mx_attempts() make of it, one "key value" line each, so the test can compare lines exactly:
 *
 *   mx NAME status CODE implicit 0|1
 *   host NAME PREF ERR ADDR,ADDR...     (the published exchangers)
 *   plan NAME CODE
 *   attempt NAME HOST PREF ADDR          (the ordered attempts)
 *   addr NAME status CODE ADDR,ADDR...   (with -a: dns_addr_resolve)
 *   tlsa NAME QNAME status CODE secure 0|1 nrrs N   (with -T PORT: dns_tlsa_resolve)
 *   rr NAME USAGE SELECTOR MTYPE HEXDATA|-     (each TLSA record, in the published order)
 *
 * Options: -s SERVERS (c-ares csv), -t TIMEOUT_MS, -r TRIES, -n SELFNAME, -i SELFADDR (both
 * repeatable), -a (address lookups instead of MX), -T PORT (TLSA lookups of each name as an
 * SMTP server host on PORT; "-T 0" passes port 0 through to test its refusal), -c (dns_free right
 * after submitting: every callback must report ECANCELED), -f (dns_free from the first callback).
 * Ties are not shuffled (no random function), so the output is deterministic. A watchdog timer
 * bounds the run. Exit status 0 when every callback ran exactly once, 2 otherwise. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "dns.h"
#include "hf_err.h"
#include "log.h"
#include "mx.h"

#define PROBE_MAX 32

struct probe {
    const char *name;
    int calls;
};

static struct dns *g_dns;
static struct probe g_probes[PROBE_MAX];
static size_t g_nprobes, g_done;
static bool g_free_first;
static const char *g_self_names[PROBE_MAX];
static struct sockaddr_storage g_self_addrs[PROBE_MAX];
static struct mx_self g_self = {g_self_names, 0, g_self_addrs, 0};
static uv_timer_t g_watchdog;

static const char *probe_addr(const struct sockaddr_storage *sa, char *buf, size_t sz)
{
    const void *src = sa->ss_family == AF_INET
                          ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                          : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!inet_ntop(sa->ss_family, src, buf, (socklen_t)sz))
        snprintf(buf, sz, "?");
    return buf;
}

static void probe_addrs(const struct sockaddr_storage *addrs, size_t n)
{
    char buf[INET6_ADDRSTRLEN];
    if (n == 0)
        printf(" -");
    for (size_t i = 0; i < n; i++)
        printf("%s%s", i ? "," : " ", probe_addr(&addrs[i], buf, sizeof(buf)));
    printf("\n");
}

static void probe_finish(struct probe *p)
{
    p->calls++;
    if (p->calls == 1 && ++g_done == g_nprobes)
        uv_close((uv_handle_t *)&g_watchdog, NULL);
    if (g_free_first && g_done == 1) {
        dns_free(g_dns);
        g_dns = NULL;
    }
    fflush(stdout);
}

static void probe_mx_cb(const struct dns_mx_result *res, void *arg)
{
    struct probe *p = arg;
    printf("mx %s status %s implicit %d\n", p->name, hf_errname(res->status), (int)res->implicit);
    for (size_t i = 0; i < res->nhosts; i++) {
        const struct mx_host *h = &res->hosts[i];
        printf("host %s %s %u %s", p->name, h->name, h->pref, hf_errname(h->err));
        probe_addrs(h->addrs, h->naddrs);
    }
    if (res->status == 0) {
        struct mx_host plan[DNS_MX_MAX + 1];
        struct mx_attempt at[64];
        size_t n = 0, nat = 0;
        int rc = mx_plan(res->domain, res->hosts, res->nhosts, &g_self, NULL, NULL, plan, &n);
        if (rc == 0)
            rc = mx_attempts(plan, n, &g_self, at, 64, &nat);
        printf("plan %s %s\n", p->name, hf_errname(rc));
        char buf[INET6_ADDRSTRLEN];
        for (size_t i = 0; i < nat; i++)
            printf("attempt %s %s %u %s\n", p->name, at[i].host, at[i].pref,
                   probe_addr(&at[i].addr, buf, sizeof(buf)));
    }
    probe_finish(p);
}

static void probe_addr_cb(const struct dns_addr_result *res, void *arg)
{
    struct probe *p = arg;
    printf("addr %s status %s", p->name, hf_errname(res->status));
    probe_addrs(res->addrs, res->naddrs);
    probe_finish(p);
}

static void probe_tlsa_cb(const struct dns_tlsa_result *res, void *arg)
{
    struct probe *p = arg;
    printf("tlsa %s %s status %s secure %d nrrs %zu\n", p->name, res->name, hf_errname(res->status),
           (int)res->secure, res->nrrs);
    for (size_t i = 0; i < res->nrrs; i++) {
        const struct dns_tlsa_rr *rr = &res->rrs[i];
        printf("rr %s %u %u %u ", p->name, rr->usage, rr->selector, rr->mtype);
        if (rr->len == 0)
            printf("-");
        for (size_t k = 0; k < rr->len; k++)
            printf("%02x", rr->data[k]);
        printf("\n");
    }
    probe_finish(p);
}

static void probe_watchdog(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "dnsprobe: watchdog expired, %zu of %zu callbacks\n", g_done, g_nprobes);
    exit(3);
}

static int probe_self_addr(const char *s, struct sockaddr_storage *sa)
{
    memset(sa, 0, sizeof(*sa));
    if (inet_pton(AF_INET, s, &((struct sockaddr_in *)sa)->sin_addr) == 1) {
        sa->ss_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)sa)->sin6_addr) == 1) {
        sa->ss_family = AF_INET6;
        return 0;
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *servers = NULL;
    unsigned timeout_ms = 500, tries = 2;
    bool addr_mode = false, tlsa_mode = false, cancel = false;
    unsigned long tlsa_port = 0;
    int opt;

    log_init("dnsprobe", false, getenv("HF_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN);
    while ((opt = getopt(argc, argv, "s:t:r:n:i:aT:cf")) != -1) {
        switch (opt) {
        case 's':
            servers = optarg;
            break;
        case 't':
            timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            tries = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'n':
            if (g_self.nnames < PROBE_MAX)
                g_self_names[g_self.nnames++] = optarg;
            break;
        case 'i':
            if (g_self.naddrs >= PROBE_MAX || probe_self_addr(optarg, &g_self_addrs[g_self.naddrs]))
                return 1;
            g_self.naddrs++;
            break;
        case 'a':
            addr_mode = true;
            break;
        case 'T':
            tlsa_mode = true;
            tlsa_port = strtoul(optarg, NULL, 10);
            break;
        case 'c':
            cancel = true;
            break;
        case 'f':
            g_free_first = true;
            break;
        default:
            fprintf(stderr, "usage: dnsprobe [-s servers] [-t ms] [-r tries] [-n self] "
                            "[-i selfaddr] [-a | -T port] [-c] [-f] name...\n");
            return 1;
        }
    }
    if (optind >= argc || argc - optind > PROBE_MAX)
        return 1;

    uv_loop_t *loop = uv_default_loop();
    int rc = dns_new(loop, servers, timeout_ms, tries, &g_dns);
    if (rc < 0) {
        printf("new %s\n", hf_errname(rc));
        return 0;
    }
    uv_timer_init(loop, &g_watchdog);
    uv_timer_start(&g_watchdog, probe_watchdog, 60000, 0);
    for (int i = optind; i < argc; i++) {
        struct probe *p = &g_probes[g_nprobes++];
        p->name = argv[i];
        if (tlsa_mode)
            rc = dns_tlsa_resolve(g_dns, p->name, (unsigned)tlsa_port, probe_tlsa_cb, p);
        else if (addr_mode)
            rc = dns_addr_resolve(g_dns, p->name, probe_addr_cb, p);
        else
            rc = dns_mx_resolve(g_dns, p->name, probe_mx_cb, p);
        if (rc < 0) {
            /* Refused at once: the callback must never run for it. */
            printf("submit %s %s\n", p->name, hf_errname(rc));
            p->calls = 1;
            if (++g_done == g_nprobes && i == argc - 1)
                uv_close((uv_handle_t *)&g_watchdog, NULL);
        }
    }
    if (cancel) {
        dns_free(g_dns);
        g_dns = NULL;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    dns_free(g_dns);
    uv_run(loop, UV_RUN_DEFAULT);
    int bad = 0;
    for (size_t i = 0; i < g_nprobes; i++)
        if (g_probes[i].calls != 1) {
            fprintf(stderr, "dnsprobe: %s: callback ran %d times\n", g_probes[i].name,
                    g_probes[i].calls);
            bad = 1;
        }
    if (uv_loop_close(loop) != 0) {
        fprintf(stderr, "dnsprobe: handles left open on the loop\n");
        bad = 1;
    }
    return bad ? 2 : 0;
}
