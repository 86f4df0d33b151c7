/* ETRN decisions: syntax, matching configured domains, networks, rate limits, replies. */
#include "etrn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "hf_err.h"

int etrn_parse(const char *arg, struct etrn_req *out)
{
    memset(out, 0, sizeof(*out));
    if (!arg || !*arg)
        return HF_ESYNTAX;
    out->kind = ETRN_DOMAIN;
    if (arg[0] == '@') {
        out->kind = ETRN_SUBTREE;
        arg++;
    } else if (arg[0] == '#') {
        out->kind = ETRN_GROUP;
        arg++;
    }
    size_t n = strlen(arg);
    if (n == 0 || n >= sizeof(out->name))
        return HF_ESYNTAX;
    memcpy(out->name, arg, n + 1);
    if (out->kind == ETRN_GROUP) {
        for (const char *p = out->name; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
                return HF_ESYNTAX;
        return 0;
    }
    addr_lower(out->name);
    if (!addr_domain_is_valid(out->name, n, false))
        return HF_ESYNTAX;
    return 0;
}

int etrn_nets_parse(const char *list, struct etrn_nets *out, size_t *bad)
{
    memset(out, 0, sizeof(*out));
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", list ? list : "") >= (int)sizeof(buf))
        return -EINVAL;
    char *save = NULL;
    size_t i = 0;
    for (char *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save), i++) {
        struct etrn_net net;
        memset(&net, 0, sizeof(net));
        char *slash = strchr(w, '/');
        long bits = -1;
        if (slash) {
            *slash = '\0';
            char *end;
            bits = strtol(slash + 1, &end, 10);
            if (*end || slash[1] == '\0')
                goto bad_entry;
        }
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)&net.addr;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&net.addr;
        if (inet_pton(AF_INET, w, &in->sin_addr) == 1) {
            in->sin_family = AF_INET;
            if (bits < 0)
                bits = 32;
            if (bits > 32)
                goto bad_entry;
        } else if (inet_pton(AF_INET6, w, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            if (bits < 0)
                bits = 128;
            if (bits > 128)
                goto bad_entry;
        } else {
            goto bad_entry;
        }
        net.bits = (unsigned)bits;
        struct etrn_net *v = realloc(out->v, (out->n + 1) * sizeof(*v));
        if (!v) {
            etrn_nets_free(out);
            return -ENOMEM;
        }
        out->v = v;
        v[out->n++] = net;
        continue;
    bad_entry:
        if (bad)
            *bad = i;
        etrn_nets_free(out);
        return -EINVAL;
    }
    return 0;
}

void etrn_nets_free(struct etrn_nets *n)
{
    free(n->v);
    n->v = NULL;
    n->n = 0;
}

static bool etrn_prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rem = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return false;
    if (rem == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

bool etrn_nets_match(const struct etrn_nets *n, const struct sockaddr_storage *sa)
{
    const uint8_t *a4 = NULL, *a6 = NULL;
    uint8_t mapped[4];
    if (sa->ss_family == AF_INET) {
        a4 = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa->ss_family == AF_INET6) {
        const struct in6_addr *x = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        a6 = x->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(x)) {
            memcpy(mapped, x->s6_addr + 12, 4);
            a4 = mapped;
        }
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct sockaddr_storage *na = &n->v[i].addr;
        if (na->ss_family == AF_INET && a4) {
            const uint8_t *b =
                (const uint8_t *)&((const struct sockaddr_in *)(const void *)na)->sin_addr;
            if (etrn_prefix_eq(a4, b, n->v[i].bits))
                return true;
        } else if (na->ss_family == AF_INET6 && a6) {
            const uint8_t *b = ((const struct sockaddr_in6 *)(const void *)na)->sin6_addr.s6_addr;
            if (etrn_prefix_eq(a6, b, n->v[i].bits))
                return true;
        }
    }
    return false;
}

static void etrn_set(struct etrn_reply *o, int code, const char *enh, bool start, const char *fmt,
                     const char *node, const char *extra)
{
    o->code = code;
    snprintf(o->enh, sizeof(o->enh), "%s", enh);
    snprintf(o->text, sizeof(o->text), fmt, node, extra ? extra : "");
    o->start = start;
}

void etrn_decide(const struct etrn_req *req, bool served, const struct etrn_ctx *ctx,
                 struct etrn_reply *out)
{
    char node[260];
    snprintf(node, sizeof(node), "%s%s",
             req->kind == ETRN_SUBTREE ? "@"
             : req->kind == ETRN_GROUP ? "#"
                                       : "",
             req->name);
    memset(out, 0, sizeof(*out));
    if (!ctx->allowed) {
        etrn_set(out, 459, "4.7.1", false, "Node %s not allowed: %s", node,
                 "ETRN is not permitted from your address");
        return;
    }
    if (!ctx->auth_ok) {
        etrn_set(out, 459, "4.7.1", false, "Node %s not allowed: %s", node,
                 "authenticate first (AUTH)");
        return;
    }
    if (!served) {
        etrn_set(out, 459, "4.7.1", false, "Node %s not allowed: %s", node,
                 req->kind == ETRN_GROUP ? "no such queue on this relay"
                                         : "not a domain this relay serves");
        return;
    }
    if (!ctx->client_rate_ok) {
        etrn_set(out, 458, "4.7.0", false, "Unable to queue messages for node %s: %s", node,
                 "too many ETRN requests from your address, try again later");
        return;
    }
    if (ctx->held) {
        etrn_set(out, 458, "4.3.0", false, "Unable to queue messages for node %s: %s", node,
                 "the operator holds this queue");
        return;
    }
    if (ctx->messages == 0) {
        if (ctx->trusted)
            etrn_set(out, 251, "2.0.0", false, "OK, no messages waiting for node %s%s", node, NULL);
        else
            etrn_set(out, 250, "2.0.0", false, "OK, queuing for node %s started%s", node, NULL);
        return;
    }
    if (ctx->running) {
        etrn_set(out, 458, "4.3.0", false, "Unable to queue messages for node %s: %s", node,
                 "a queue run for it is already in progress");
        return;
    }
    if (!ctx->domain_rate_ok) {
        etrn_set(out, 458, "4.7.0", false, "Unable to queue messages for node %s: %s", node,
                 "too many queue runs for it recently, try again later");
        return;
    }
    if (!ctx->trusted) {
        etrn_set(out, 250, "2.0.0", true, "OK, queuing for node %s started%s", node, NULL);
        return;
    }
    out->code = 253;
    snprintf(out->enh, sizeof(out->enh), "2.0.0");
    snprintf(out->text, sizeof(out->text), "OK, %llu pending message%s for node %s started",
             (unsigned long long)ctx->messages, ctx->messages == 1 ? "" : "s", node);
    out->start = true;
}

size_t etrn_match(const struct cfg *c, const struct etrn_req *req, etrn_domain_cb cb, void *arg)
{
    size_t n = 0;
    if (req->kind == ETRN_GROUP) {
        for (size_t g = 0; g < c->ngroups; g++) {
            if (strcmp(c->groups[g].name, req->name) != 0)
                continue;
            char buf[4096];
            snprintf(buf, sizeof(buf), "%s", c->groups[g].domains ? c->groups[g].domains : "");
            char *save = NULL;
            for (char *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
                addr_lower(w);
                const struct cfg_domain *d = cfg_find_domain(c, w);
                if (d) {
                    n++;
                    if (cb)
                        cb(d, w, arg);
                }
            }
        }
        return n;
    }
    for (size_t i = 0; i < c->ndomains; i++) {
        const struct cfg_domain *d = &c->domains[i];
        bool hit = false;
        const char *name = d->name;
        if (addr_domain_matches(req->name, d->name, d->subdomains)) {
            hit = true; /* the named domain is (inside) this section */
            name = req->name;
        } else if (req->kind == ETRN_SUBTREE && addr_domain_matches(d->name, req->name, true)) {
            hit = true; /* @parent names this section below it */
        }
        if (hit) {
            n++;
            if (cb)
                cb(d, name, arg);
        }
    }
    return n;
}
