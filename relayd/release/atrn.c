/* ATRN's domain decision (see atrn.h). */
#include "atrn.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Adds d[0..len) lower-cased unless present. Returns 0 or 501 (full, empty, too long). */
static int atrn_add(struct atrn_ask *out, const char *d, size_t len)
{
    char low[256];
    if (len == 0 || len >= sizeof(low))
        return 501;
    for (size_t i = 0; i < len; i++)
        low[i] = (char)tolower((unsigned char)d[i]);
    low[len] = '\0';
    if (low[len - 1] == '.') /* a trailing root dot names the same domain */
        low[--len] = '\0';
    if (len == 0)
        return 501;
    for (size_t i = 0; i < out->n; i++)
        if (strcmp(out->domains[i], low) == 0)
            return 0;
    if (out->n >= ATRN_DOMAINS_MAX)
        return 501;
    memcpy(out->domains[out->n++], low, len + 1);
    return 0;
}

int atrn_ask_domains(const struct auth_user *u, const char *arg,
                     bool (*serves)(void *sarg, const char *domain), void *sarg,
                     const char *const *queued, size_t nqueued, struct atrn_ask *out, char *why,
                     size_t whysz)
{
    memset(out, 0, sizeof(*out));
    if (why && whysz)
        why[0] = '\0';
    if (!arg[0]) {
        if (!u)
            return 0;
        if (u->all_domains) {
            for (size_t i = 0; i < nqueued; i++)
                if (serves(sarg, queued[i]) && atrn_add(out, queued[i], strlen(queued[i])) != 0)
                    break; /* more than ATRN_DOMAINS_MAX: the rest waits for the next ATRN */
            return 0;
        }
        for (size_t i = 0; i < u->ndomains; i++)
            if (atrn_add(out, u->domains[i], strlen(u->domains[i])) != 0)
                break;
        return 0;
    }
    out->named = true;
    for (const char *p = arg;;) {
        size_t l = strcspn(p, ",");
        int rc = atrn_add(out, p, l);
        if (rc)
            return rc;
        if (!p[l])
            break;
        p += l + 1;
    }
    for (size_t i = 0; i < out->n; i++) {
        const char *d = out->domains[i];
        bool ok = u && auth_user_may_release(u, d) && (!u->all_domains || serves(sarg, d));
        if (!ok) {
            if (why && whysz)
                snprintf(why, whysz, "%s", d);
            return 450;
        }
    }
    return 0;
}
