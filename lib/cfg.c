/* Configuration parser: defaults, per-line errors, cross-key checks (keys: cfg_keys.c).
 *
 * Why not inih: Debian's packaged inih has a 200-octet line limit and does not pass line
 * numbers to the handler (that needs a compile-time option the package does not set), and
 * every error here must carry file:line and parsing must go on to report all of them. The
 * grammar is small (key = value, [type name] sections), so it is parsed here. */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "hf_err.h"

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define GIB (1024ull * 1024ull * 1024ull)

static const char *const cfg_section_names[] = {"global", "domain", "group", "relay"};

int cfg_errors_add(struct cfg_errors *e, const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct cfg_error *v = realloc(e->v, (e->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    e->v = v;
    v[e->n].file = strdup(file ? file : "-");
    v[e->n].msg = strdup(msg);
    v[e->n].line = line;
    if (!v[e->n].file || !v[e->n].msg) {
        free(v[e->n].file);
        free(v[e->n].msg);
        return -ENOMEM;
    }
    e->n++;
    return 0;
}

/* Parses an unsigned number with an optional unit suffix. */
static int cfg_parse_num(const char *s, enum cfg_type t, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    uint64_t mul = 1;
    if (*end && t == CFG_T_SIZE) {
        switch (*end) {
        case 'k':
        case 'K':
            mul = KIB;
            break;
        case 'm':
        case 'M':
            mul = MIB;
            break;
        case 'g':
        case 'G':
            mul = GIB;
            break;
        default:
            return -EINVAL;
        }
        end++;
    } else if (*end && t == CFG_T_SECONDS) {
        switch (*end) {
        case 's':
            mul = 1;
            break;
        case 'm':
            mul = 60;
            break;
        case 'h':
            mul = 3600;
            break;
        case 'd':
            mul = 86400;
            break;
        default:
            return -EINVAL;
        }
        end++;
    }
    if (*end)
        return -EINVAL;
    if (mul > 1 && v > UINT64_MAX / mul)
        return -ERANGE;
    *out = (uint64_t)v * mul;
    return 0;
}

static int cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static bool cfg_enum_has(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && strncmp(p, v, l) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

static char *cfg_join_path(const char *dir, const char *v)
{
    if (v[0] == '/' || v[0] == '\0' || !dir || strcmp(dir, ".") == 0)
        return strdup(v);
    size_t n = strlen(dir) + strlen(v) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, v);
    return p;
}

/* Stores value v for key k into the struct at base. Returns 0, -EINVAL/-ERANGE with a
 * reason in why, or -ENOMEM. */
static int cfg_set(const struct cfg_key *k, void *base, const char *v, const char *dir, char *why,
                   size_t whysz)
{
    char *field = (char *)base + k->offset;
    switch (k->type) {
    case CFG_T_STR:
    case CFG_T_ENUM:
    case CFG_T_PATH: {
        if (k->type == CFG_T_ENUM && !cfg_enum_has(k->choices, v)) {
            snprintf(why, whysz, "must be one of %s", k->choices);
            return -EINVAL;
        }
        char *s = k->type == CFG_T_PATH ? cfg_join_path(dir, v) : strdup(v);
        if (!s)
            return -ENOMEM;
        char **slot = (char **)(void *)field;
        free(*slot);
        *slot = s;
        return 0;
    }
    case CFG_T_U64:
    case CFG_T_SIZE:
    case CFG_T_SECONDS: {
        uint64_t n;
        int rc = cfg_parse_num(v, k->type, &n);
        if (rc < 0) {
            snprintf(why, whysz, "%s",
                     k->type == CFG_T_SIZE      ? "must be a number with optional K, M or G"
                     : k->type == CFG_T_SECONDS ? "must be a number with optional s, m, h or d"
                                                : "must be a whole number");
            return -EINVAL;
        }
        if (n < k->min || n > k->max) {
            snprintf(why, whysz, "must be between %" PRIu64 " and %" PRIu64, k->min, k->max);
            return -ERANGE;
        }
        memcpy(field, &n, sizeof(n));
        return 0;
    }
    case CFG_T_BOOL: {
        bool b;
        if (cfg_parse_bool(v, &b) < 0) {
            snprintf(why, whysz, "must be yes or no");
            return -EINVAL;
        }
        memcpy(field, &b, sizeof(b));
        return 0;
    }
    }
    return -EINVAL;
}

static const struct cfg_key *cfg_find_key(enum cfg_section sec, const char *name)
{
    for (size_t i = 0; i < cfg_nkeys; i++)
        if (cfg_keys[i].section == sec && strcmp(cfg_keys[i].name, name) == 0)
            return &cfg_keys[i];
    return NULL;
}

/* Applies the defaults of section sec to the struct at base. */
static int cfg_defaults(enum cfg_section sec, void *base)
{
    char why[128];
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        if (k->section != sec || !k->def)
            continue;
        int rc = cfg_set(k, base, k->def, NULL, why, sizeof(why));
        if (rc == -ENOMEM)
            return rc;
    }
    return 0;
}

int cfg_init(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    return cfg_defaults(CFG_SEC_GLOBAL, c);
}

static char *cfg_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static bool cfg_name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return false;
    return true;
}

/* Opens a new section; returns the struct to fill, NULL with an error recorded. */
static void *cfg_open_section(struct cfg *c, enum cfg_section sec, char *name, int line,
                              const char *file, struct cfg_errors *errs, int *rc)
{
    void *base = NULL;
    *rc = 0;
    if (sec == CFG_SEC_DOMAIN) {
        addr_lower(name);
        if (!addr_domain_is_valid(name, strlen(name), false)) {
            *rc = cfg_errors_add(errs, file, line, "invalid domain name '%s'", name);
            return NULL;
        }
        for (size_t i = 0; i < c->ndomains; i++)
            if (strcmp(c->domains[i].name, name) == 0) {
                *rc = cfg_errors_add(errs, file, line, "domain %s already defined at line %d", name,
                                     c->domains[i].line);
                return NULL;
            }
        struct cfg_domain *v = realloc(c->domains, (c->ndomains + 1) * sizeof(*v));
        if (!v)
            goto nomem;
        c->domains = v;
        base = &v[c->ndomains];
        memset(base, 0, sizeof(*v));
        v[c->ndomains].name = strdup(name);
        v[c->ndomains].line = line;
        /* Lifetimes not given in the section come from the global keys. */
        v[c->ndomains].max_queue_lifetime = v[c->ndomains].delay_warning_time = CFG_INHERIT;
        v[c->ndomains].expiry_warning_time = CFG_INHERIT;
        if (!v[c->ndomains].name)
            goto nomem;
        c->ndomains++;
    } else if (sec == CFG_SEC_GROUP) {
        if (!cfg_name_ok(name)) {
            *rc = cfg_errors_add(errs, file, line, "invalid group name '%s'", name);
            return NULL;
        }
        for (size_t i = 0; i < c->ngroups; i++)
            if (strcmp(c->groups[i].name, name) == 0) {
                *rc = cfg_errors_add(errs, file, line, "group %s already defined at line %d", name,
                                     c->groups[i].line);
                return NULL;
            }
        struct cfg_group *v = realloc(c->groups, (c->ngroups + 1) * sizeof(*v));
        if (!v)
            goto nomem;
        c->groups = v;
        base = &v[c->ngroups];
        memset(base, 0, sizeof(*v));
        v[c->ngroups].name = strdup(name);
        v[c->ngroups].line = line;
        if (!v[c->ngroups].name)
            goto nomem;
        c->ngroups++;
    } else {
        if (!cfg_name_ok(name)) {
            *rc = cfg_errors_add(errs, file, line, "invalid relay name '%s'", name);
            return NULL;
        }
        for (size_t i = 0; i < c->nrelays; i++)
            if (strcmp(c->relays[i].name, name) == 0) {
                *rc = cfg_errors_add(errs, file, line, "relay %s already defined at line %d", name,
                                     c->relays[i].line);
                return NULL;
            }
        struct cfg_relay *v = realloc(c->relays, (c->nrelays + 1) * sizeof(*v));
        if (!v)
            goto nomem;
        c->relays = v;
        base = &v[c->nrelays];
        memset(base, 0, sizeof(*v));
        v[c->nrelays].name = strdup(name);
        v[c->nrelays].line = line;
        if (!v[c->nrelays].name)
            goto nomem;
        c->nrelays++;
    }
    if (cfg_defaults(sec, base) < 0)
        goto nomem;
    return base;
nomem:
    *rc = -ENOMEM;
    return NULL;
}

/* Checks that every word of list is a configured domain. */
static int cfg_check_domain_list(const struct cfg *c, const char *list, const char *what,
                                 const char *file, int line, struct cfg_errors *errs)
{
    int rc = 0;
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", list ? list : "");
    char *save = NULL;
    int n = 0;
    for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
        n++;
        addr_lower(w);
        if (!addr_domain_is_valid(w, strlen(w), false))
            rc = cfg_errors_add(errs, file, line, "%s: invalid domain name '%s'", what, w);
        else if (c->ndomains && strcmp(what, "group") == 0 && !cfg_find_domain(c, w))
            rc = cfg_errors_add(errs, file, line, "%s: '%s' is not a configured [domain]", what, w);
        if (rc < 0)
            return rc;
    }
    if (n == 0)
        rc = cfg_errors_add(errs, file, line, "%s: 'domains' must name at least one domain", what);
    return rc;
}

static int cfg_check(struct cfg *c, const char *file, struct cfg_errors *errs)
{
    int rc = 0;
    for (size_t i = 0; i < c->ngroups && rc == 0; i++)
        rc = cfg_check_domain_list(c, c->groups[i].domains, "group", file, c->groups[i].line, errs);
    for (size_t i = 0; i < c->nrelays && rc == 0; i++) {
        /* No host: fetchd asks every MX host of each domain instead. */
        rc = cfg_check_domain_list(c, c->relays[i].domains, "relay", file, c->relays[i].line, errs);
    }
    if (rc == 0 && c->max_map_size < c->map_size)
        rc = cfg_errors_add(errs, file, 0,
                            "max_map_size (%" PRIu64 ") is smaller than map_size (%" PRIu64 ")",
                            c->max_map_size, c->map_size);
    return rc;
}

int cfg_parse(const char *text, size_t len, const char *file, struct cfg *c,
              struct cfg_errors *errs)
{
    int rc = 0;
    size_t nerr0 = errs->n;
    enum cfg_section sec = CFG_SEC_GLOBAL;
    void *base = c;
    char *dir = NULL;

    free(c->path);
    c->path = strdup(file ? file : "-");
    if (!c->path)
        return -ENOMEM;
    const char *slash = file ? strrchr(file, '/') : NULL;
    dir = slash ? strndup(file, (size_t)(slash - file) + (slash == file)) : strdup(".");
    if (!dir)
        return -ENOMEM;
    free(c->dir);
    c->dir = dir;

    int line = 0;
    size_t pos = 0;
    while (pos < len && rc >= 0) {
        line++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char *buf = strndup(text + pos, l);
        pos += l + (nl ? 1 : 0);
        if (!buf)
            return -ENOMEM;
        if (strlen(buf) != l) {
            rc = cfg_errors_add(errs, file, line, "NUL byte in line");
            free(buf);
            continue;
        }
        char *s = cfg_trim(buf);
        if (*s == '\0' || *s == '#' || *s == ';') {
            free(buf);
            continue;
        }
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end || cfg_trim(end + 1)[0] != '\0') {
                rc = cfg_errors_add(errs, file, line, "section header must be [type name]");
                base = NULL;
                free(buf);
                continue;
            }
            *end = '\0';
            char *type = cfg_trim(s + 1);
            char *name = type + strcspn(type, " \t");
            if (*name)
                *name++ = '\0';
            name = cfg_trim(name);
            enum cfg_section ns;
            if (strcmp(type, "domain") == 0)
                ns = CFG_SEC_DOMAIN;
            else if (strcmp(type, "group") == 0)
                ns = CFG_SEC_GROUP;
            else if (strcmp(type, "relay") == 0)
                ns = CFG_SEC_RELAY;
            else {
                rc = cfg_errors_add(errs, file, line,
                                    "unknown section type '%s' (domain, group or relay)", type);
                base = NULL;
                free(buf);
                continue;
            }
            if (!*name || strchr(name, ' ') || strchr(name, '\t')) {
                rc = cfg_errors_add(errs, file, line, "[%s] needs exactly one name", type);
                base = NULL;
                free(buf);
                continue;
            }
            sec = ns;
            base = cfg_open_section(c, sec, name, line, file, errs, &rc);
            free(buf);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = cfg_errors_add(errs, file, line, "expected 'key = value'");
            free(buf);
            continue;
        }
        *eq = '\0';
        char *key = cfg_trim(s);
        char *val = cfg_trim(eq + 1);
        const struct cfg_key *k = cfg_find_key(sec, key);
        if (!k) {
            const struct cfg_key *other = NULL;
            for (int t = 0; t < 4 && !other; t++)
                other = cfg_find_key((enum cfg_section)t, key);
            if (other)
                rc = cfg_errors_add(
                    errs, file, line, "key '%s' belongs %s%s%s, not %s%s%s", key,
                    other->section == CFG_SEC_GLOBAL ? "at the top (a [global] " : "in a [",
                    other->section == CFG_SEC_GLOBAL ? "key" : cfg_section_names[other->section],
                    other->section == CFG_SEC_GLOBAL ? ")" : "] section",
                    sec == CFG_SEC_GLOBAL ? "at the top" : "in [",
                    sec == CFG_SEC_GLOBAL ? "" : cfg_section_names[sec],
                    sec == CFG_SEC_GLOBAL ? "" : "]");
            else
                rc = cfg_errors_add(errs, file, line, "unknown key '%s'", key);
            free(buf);
            continue;
        }
        if (!base) { /* inside a section whose header was wrong: already reported */
            free(buf);
            continue;
        }
        if (*val == '\0' && k->type != CFG_T_STR) {
            rc = cfg_errors_add(errs, file, line, "'%s' needs a value", key);
            free(buf);
            continue;
        }
        char why[160];
        int r = cfg_set(k, base, val, c->dir, why, sizeof(why));
        if (r == -ENOMEM)
            rc = r;
        else if (r < 0)
            rc = cfg_errors_add(errs, file, line, "'%s = %s': %s", key, val, why);
        free(buf);
    }
    if (rc >= 0)
        rc = cfg_check(c, file, errs);
    if (rc == -ENOMEM)
        return rc;
    return errs->n > nerr0 ? HF_ECONFIG : 0;
}

int cfg_load(const char *path, struct cfg *c, struct cfg_errors *errs)
{
    int rc = cfg_init(c);
    if (rc < 0)
        return rc;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        rc = cfg_errors_add(errs, path, 0, "cannot read: %s", strerror(e));
        return rc < 0 ? rc : HF_ECONFIG;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            if (cap > 16 * MIB) {
                fclose(f);
                free(text);
                rc = cfg_errors_add(errs, path, 0, "file larger than 16 MiB");
                return rc < 0 ? rc : HF_ECONFIG;
            }
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) {
                fclose(f);
                free(text);
                return -ENOMEM;
            }
            text = t;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        rc = cfg_errors_add(errs, path, 0, "read error");
        return rc < 0 ? rc : HF_ECONFIG;
    }
    rc = cfg_parse(text, len, path, c, errs);
    free(text);
    return rc;
}

static void cfg_free_fields(enum cfg_section sec, void *base)
{
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        if (k->section != sec)
            continue;
        if (k->type == CFG_T_STR || k->type == CFG_T_ENUM || k->type == CFG_T_PATH) {
            char **slot = (char **)(void *)((char *)base + k->offset);
            free(*slot);
            *slot = NULL;
        }
    }
}

void cfg_free(struct cfg *c)
{
    if (!c)
        return;
    cfg_free_fields(CFG_SEC_GLOBAL, c);
    for (size_t i = 0; i < c->ndomains; i++) {
        cfg_free_fields(CFG_SEC_DOMAIN, &c->domains[i]);
        free(c->domains[i].name);
    }
    for (size_t i = 0; i < c->ngroups; i++) {
        cfg_free_fields(CFG_SEC_GROUP, &c->groups[i]);
        free(c->groups[i].name);
    }
    for (size_t i = 0; i < c->nrelays; i++) {
        cfg_free_fields(CFG_SEC_RELAY, &c->relays[i]);
        free(c->relays[i].name);
    }
    free(c->domains);
    free(c->groups);
    free(c->relays);
    free(c->path);
    free(c->dir);
    memset(c, 0, sizeof(*c));
}

void cfg_errors_print(const struct cfg_errors *e, FILE *f, const char *prefix)
{
    for (size_t i = 0; i < e->n; i++) {
        if (e->v[i].line > 0)
            fprintf(f, "%s%s:%d: %s\n", prefix, e->v[i].file, e->v[i].line, e->v[i].msg);
        else
            fprintf(f, "%s%s: %s\n", prefix, e->v[i].file, e->v[i].msg);
    }
}

void cfg_errors_free(struct cfg_errors *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].file);
        free(e->v[i].msg);
    }
    free(e->v);
    e->v = NULL;
    e->n = 0;
}

const struct cfg_domain *cfg_find_domain(const struct cfg *c, const char *domain)
{
    const struct cfg_domain *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < c->ndomains; i++) {
        const struct cfg_domain *d = &c->domains[i];
        if (!addr_domain_matches(domain, d->name, d->subdomains))
            continue;
        size_t l = strlen(d->name);
        if (!best || l > best_len) {
            best = d;
            best_len = l;
        }
    }
    return best;
}
