/* Mail exchanger selection: sorting and shuffling MX records (RFC 5321 5.1), the null MX
 * (RFC 7505), the self-MX cut, and flattening resolved hosts into delivery attempts.
 * Pure: the records and addresses come from dns.c, randomness from the caller. */
#include "mx.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "hf_err.h"

int mx_host_set(struct mx_host *h, const char *name, unsigned pref)
{
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len > MX_NAME_MAX)
        return HF_EADDR;
    memset(h, 0, sizeof(*h));
    h->pref = pref;
    if (len == 0) {
        h->name[0] = '.';
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        h->name[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    h->name[len] = '\0';
    return 0;
}

bool mx_host_is_null(const struct mx_host *h)
{
    return strcmp(h->name, ".") == 0;
}

/* Compares two host names case-insensitively, each with an optional trailing dot. */
static bool mx_name_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 0 && a[la - 1] == '.')
        la--;
    if (lb > 0 && b[lb - 1] == '.')
        lb--;
    return la == lb && la > 0 && strncasecmp(a, b, la) == 0;
}

bool mx_self_has_name(const struct mx_self *self, const char *name)
{
    if (!self)
        return false;
    for (size_t i = 0; i < self->nnames; i++)
        if (self->names[i] && mx_name_eq(self->names[i], name))
            return true;
    return false;
}

/* Reduces sa to the 16 octets of an IPv6 address (IPv4 as IPv4-mapped) so that the two
 * spellings of one IPv4 address compare equal. Returns false for other families and for
 * the unspecified addresses, which never identify us. */
static bool mx_addr_key(const struct sockaddr_storage *sa, unsigned char key[16])
{
    static const unsigned char zero[16];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memset(key, 0, 10);
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &in->sin_addr, 4);
        if (memcmp(key + 12, zero, 4) == 0)
            return false;
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(key, &in6->sin6_addr, 16);
    } else {
        return false;
    }
    return memcmp(key, zero, 16) != 0;
}

bool mx_self_has_addr(const struct mx_self *self, const struct sockaddr_storage *sa)
{
    unsigned char k1[16], k2[16];
    if (!self || !mx_addr_key(sa, k1))
        return false;
    for (size_t i = 0; i < self->naddrs; i++)
        if (mx_addr_key(&self->addrs[i], k2) && memcmp(k1, k2, 16) == 0)
            return true;
    return false;
}

/* True if h is us: by name, or by one of the addresses already resolved for it. */
static bool mx_host_is_self(const struct mx_self *self, const struct mx_host *h)
{
    if (mx_self_has_name(self, h->name))
        return true;
    for (size_t i = 0; i < h->naddrs; i++)
        if (mx_self_has_addr(self, &h->addrs[i]))
            return true;
    return false;
}

/* Applies the self-MX rule to hosts[0..n), sorted by preference: returns how many hosts
 * precede the first one whose preference is at least that of our best entry. */
static size_t mx_self_cut(const struct mx_self *self, const struct mx_host *hosts, size_t n)
{
    bool found = false;
    unsigned cut = 0;
    for (size_t i = 0; i < n; i++) {
        if (mx_host_is_self(self, &hosts[i]) && (!found || hosts[i].pref < cut)) {
            found = true;
            cut = hosts[i].pref;
        }
    }
    if (!found)
        return n;
    size_t keep = 0;
    while (keep < n && hosts[keep].pref < cut)
        keep++;
    return keep;
}

size_t mx_hosts_merge(struct mx_host *hosts, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < k && strcmp(hosts[j].name, hosts[i].name) != 0)
            j++;
        if (j < k) {
            if (hosts[i].pref < hosts[j].pref)
                hosts[j].pref = hosts[i].pref;
            continue;
        }
        hosts[k++] = hosts[i];
    }
    return k;
}

size_t mx_hosts_keep_best(struct mx_host *hosts, size_t n, size_t max)
{
    if (n <= max)
        return n;
    /* Stable insertion sort by preference, then keep the head. */
    for (size_t i = 1; i < n; i++) {
        struct mx_host h = hosts[i];
        size_t j = i;
        while (j > 0 && hosts[j - 1].pref > h.pref) {
            hosts[j] = hosts[j - 1];
            j--;
        }
        hosts[j] = h;
    }
    return max;
}

int mx_plan(const char *domain, const struct mx_host *in, size_t n, const struct mx_self *self,
            mx_rand_fn rnd, void *rnd_arg, struct mx_host *out, size_t *nout)
{
    size_t m = 0;
    *nout = 0;
    if (n == 0) {
        /* RFC 5321 5.1: no MX records, the domain is its own exchanger. */
        int rc = mx_host_set(&out[0], domain, 0);
        if (rc < 0)
            return rc;
        m = 1;
    } else if (n == 1 && mx_host_is_null(&in[0])) {
        return HF_ENULLMX;
    } else {
        /* Insertion sort: stable, so without rnd ties keep the order they came in. */
        for (size_t i = 0; i < n; i++) {
            if (mx_host_is_null(&in[i]))
                continue;
            size_t j = m;
            while (j > 0 && out[j - 1].pref > in[i].pref) {
                out[j] = out[j - 1];
                j--;
            }
            out[j] = in[i];
            m++;
        }
        if (m == 0)
            return HF_ENULLMX;
    }

    m = mx_self_cut(self, out, m);
    if (m == 0)
        return -ELOOP;

    /* RFC 5321 5.1: hosts of equal preference are tried in random order (Fisher-Yates
     * within each run of equal preference). */
    if (rnd) {
        size_t start = 0;
        while (start < m) {
            size_t end = start + 1;
            while (end < m && out[end].pref == out[start].pref)
                end++;
            for (size_t i = end - 1; i > start; i--) {
                size_t j = start + (size_t)(rnd(rnd_arg) % (uint32_t)(i - start + 1));
                struct mx_host tmp = out[i];
                out[i] = out[j];
                out[j] = tmp;
            }
            start = end;
        }
    }
    *nout = m;
    return 0;
}

int mx_attempts(const struct mx_host *plan, size_t n, const struct mx_self *self,
                struct mx_attempt *out, size_t cap, size_t *nout)
{
    *nout = 0;
    if (cap == 0)
        return -EINVAL;
    if (n == 1 && mx_host_is_null(&plan[0]))
        return HF_ENULLMX;
    size_t keep = mx_self_cut(self, plan, n);
    if (keep == 0)
        return n == 0 ? HF_EDNS : -ELOOP;

    size_t k = 0;
    bool temp = false;
    for (size_t i = 0; i < keep; i++) {
        const struct mx_host *h = &plan[i];
        if (h->naddrs == 0 && h->err == HF_EDNSTEMP)
            temp = true;
        for (size_t a = 0; a < h->naddrs && k < cap; a++) {
            struct mx_attempt *at = &out[k++];
            memcpy(at->host, h->name, sizeof(at->host));
            at->pref = h->pref;
            at->addr = h->addrs[a];
        }
    }
    *nout = k;
    if (k == 0)
        return temp ? HF_EDNSTEMP : HF_EDNS;
    return 0;
}
