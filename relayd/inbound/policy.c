/* Relay policy: configured domains and their recipient lists.
 *
 * A recipient list is a sorted array of lower-cased strings searched with bsearch: either a
 * local part ("alice", valid in the domain whose list it is) or a full address
 * ("alice@sub.branch.test", for subdomains). Local parts are compared case-insensitively,
 * which is what mail admins expect even though RFC 5321 2.4 lets the final host decide. */
#include "policy.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_err.h"

struct policy_list {
    char **v;
    size_t n, cap;
    bool sorted;
    bool present; /* the domain has a recipients file: enforce it */
};

struct policy {
    const struct cfg *cfg;
    struct policy_list *lists; /* one per cfg->domains[i] */
};

static int policy_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void policy_sort(struct policy_list *l)
{
    if (!l->sorted && l->n > 1) { /* qsort(NULL, 0, ...) is undefined (C17 7.22.5) */
        qsort(l->v, l->n, sizeof(char *), policy_cmp);
        l->sorted = true;
    }
}

static int policy_list_add(struct policy_list *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    char *d = strdup(s);
    if (!d)
        return -ENOMEM;
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    l->v[l->n++] = d;
    l->sorted = false;
    l->present = true;
    return 0;
}

static ssize_t policy_domain_index(const struct policy *p, const char *domain)
{
    for (size_t i = 0; i < p->cfg->ndomains; i++)
        if (strcasecmp(p->cfg->domains[i].name, domain) == 0)
            return (ssize_t)i;
    return -1;
}

/* Adds entry to domain di's list without sorting it (a file is sorted once, at its end). */
static int policy_add_unsorted(struct policy *p, size_t di, const char *entry)
{
    if (!*entry || strchr(entry, ' ') || strlen(entry) > 320)
        return -EINVAL;
    return policy_list_add(&p->lists[di], entry);
}

int policy_add_recipient(struct policy *p, const char *domain, const char *entry)
{
    ssize_t i = policy_domain_index(p, domain);
    if (i < 0)
        return -ENOENT;
    int rc = policy_add_unsorted(p, (size_t)i, entry);
    if (rc == 0)
        policy_sort(&p->lists[i]);
    return rc;
}

static int policy_load_file(struct policy *p, size_t di, struct cfg_errors *errs)
{
    const struct cfg_domain *d = &p->cfg->domains[di];
    FILE *f = fopen(d->recipients, "r");
    if (!f) {
        int rc = cfg_errors_add(errs, p->cfg->path ? p->cfg->path : "-", d->line,
                                "domain %s: cannot read recipients file %s: %s", d->name,
                                d->recipients, strerror(errno));
        return rc < 0 ? rc : HF_ECONFIG;
    }
    char *line = NULL;
    size_t cap = 0;
    int ln = 0;
    int rc = 0;
    p->lists[di].present = true; /* an empty file means: nobody is valid */
    /* getline: a line of any length is one line, so every error names the right one. */
    while (getline(&line, &cap, f) >= 0) {
        ln++;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
            s[--n] = '\0';
        if (!*s || *s == '#')
            continue;
        int r = policy_add_unsorted(p, di, s);
        if (r == -ENOMEM) {
            rc = r;
            break;
        }
        if (r < 0) {
            if (cfg_errors_add(errs, d->recipients, ln, "invalid recipient entry '%.300s'", s) <
                0) {
                rc = -ENOMEM;
                break;
            }
            rc = HF_ECONFIG;
        }
    }
    free(line);
    fclose(f);
    policy_sort(&p->lists[di]);
    return rc;
}

int policy_new(const struct cfg *c, struct cfg_errors *errs, struct policy **out)
{
    struct policy *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->cfg = c;
    p->lists = calloc(c->ndomains ? c->ndomains : 1, sizeof(*p->lists));
    if (!p->lists) {
        free(p);
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < c->ndomains; i++) {
        if (!c->domains[i].recipients)
            continue;
        int r = policy_load_file(p, i, errs);
        if (r == -ENOMEM) {
            policy_free(p);
            return r;
        }
        if (r < 0)
            rc = r;
    }
    if (rc < 0) {
        policy_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void policy_free(struct policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->cfg->ndomains; i++) {
        for (size_t j = 0; j < p->lists[i].n; j++)
            free(p->lists[i].v[j]);
        free(p->lists[i].v);
    }
    free(p->lists);
    free(p);
}

bool policy_serves(const struct policy *p, const char *domain)
{
    return cfg_find_domain(p->cfg, domain) != NULL;
}

static bool policy_list_has(const struct policy_list *l, const char *key)
{
    if (!l->n)
        return false;
    return bsearch(&key, l->v, l->n, sizeof(char *), policy_cmp) != NULL;
}

enum policy_verdict policy_check_rcpt(const struct policy *p, const struct addr_mailbox *m,
                                      const struct cfg_domain **domain_out)
{
    if (domain_out)
        *domain_out = NULL;
    /* An address literal is never one of our domains; RFC 5321 4.1.3 literals would make
     * the relay deliver to an address the sender picked. */
    if (m->domain_literal)
        return POLICY_RELAY_DENIED;
    const struct cfg_domain *d = cfg_find_domain(p->cfg, m->domain);
    if (!d)
        return POLICY_RELAY_DENIED;
    /* %-hack and bang paths (RFC 5321 3.6.1 forbids interpreting them, but a downstream
     * sendmail may): refuse rather than carry them. */
    if (m->has_relay_chars)
        return POLICY_RELAY_TRICK;
    if (domain_out)
        *domain_out = d;
    ssize_t di = d - p->cfg->domains;
    const struct policy_list *l = &p->lists[di];
    if (!l->present)
        return POLICY_OK;
    char key[ADDR_LOCAL_MAX * 2 + ADDR_DOMAIN_MAX + 8];
    /* Local part alone is valid for the section's own domain; full addresses for any. */
    snprintf(key, sizeof(key), "%s", m->local);
    for (char *s = key; *s; s++)
        *s = (char)tolower((unsigned char)*s);
    if (strcasecmp(m->domain, d->name) == 0 && policy_list_has(l, key))
        return POLICY_OK;
    snprintf(key, sizeof(key), "%s@%s", m->local, m->domain);
    for (char *s = key; *s; s++)
        *s = (char)tolower((unsigned char)*s);
    if (policy_list_has(l, key))
        return POLICY_OK;
    return POLICY_UNKNOWN_USER;
}
