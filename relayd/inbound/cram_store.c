/* The CRAM-MD5 secrets file (see cram_store.h). */
#include "cram_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "hf_err.h"

static int cram_add_error(struct cfg_errors *errs, const char *file, int line, const char *why)
{
    return cfg_errors_add(errs, file, line, "%s", why) < 0 ? -ENOMEM : HF_ECONFIG;
}

/* One non-comment line "user:base64". Returns 0, -ENOMEM, or HF_ECONFIG (reported). */
static int cram_parse_line(const char *p, size_t n, const char *file, int line,
                           struct cram_store *out, struct cfg_errors *errs)
{
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return cram_add_error(errs, file, line, "expected user:base64-secret");
    size_t ul = (size_t)(colon - p);
    const char *why = auth_name_problem(p, ul);
    if (why)
        return cram_add_error(errs, file, line, why);
    if (cram_store_find(out, p, ul))
        return cram_add_error(errs, file, line, "user listed twice");
    const char *b = colon + 1;
    size_t bl = n - ul - 1;
    char secret[AUTH_FIELD_MAX + 1];
    int rc = bl ? auth_login_decode(b, bl, secret, sizeof(secret)) : HF_ESYNTAX;
    if (rc < 0) {
        auth_wipe(secret, sizeof(secret));
        return cram_add_error(errs, file, line,
                              rc == HF_ETOOBIG ? "secret longer than 255 octets"
                                               : "secret is not strict base64 of 1-255 octets "
                                                 "without NUL (relayd --cram-secret makes it)");
    }
    struct cram_entry *v = realloc(out->v, (out->n + 1) * sizeof(*v));
    if (!v) {
        auth_wipe(secret, sizeof(secret));
        return -ENOMEM;
    }
    out->v = v;
    struct cram_entry *e = &v[out->n];
    memset(e, 0, sizeof(*e));
    e->user = strndup(p, ul);
    e->len = strlen(secret);
    e->secret = strdup(secret);
    auth_wipe(secret, sizeof(secret));
    e->line = line;
    if (!e->user || !e->secret) {
        free(e->user);
        free(e->secret);
        return -ENOMEM;
    }
    out->n++;
    return 0;
}

int cram_store_parse(const char *text, size_t len, const char *file, struct cram_store *out,
                     struct cfg_errors *errs)
{
    memset(out, 0, sizeof(*out));
    bool bad = false;
    int line = 0;
    for (size_t i = 0; i < len;) {
        line++;
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        const char *p = text + i;
        i += n + (nl ? 1 : 0);
        if (n && p[n - 1] == '\r')
            n--;
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        size_t lead = 0;
        while (lead < n && (p[lead] == ' ' || p[lead] == '\t'))
            lead++;
        if (lead == n || p[lead] == '#')
            continue;
        int rc = cram_parse_line(p + lead, n - lead, file, line, out, errs);
        if (rc == -ENOMEM)
            return rc;
        if (rc < 0)
            bad = true;
    }
    return bad ? HF_ECONFIG : 0;
}

int cram_store_load(const char *path, struct cram_store *out, struct cfg_errors *errs)
{
    memset(out, 0, sizeof(*out));
    char *text;
    size_t len;
    int rc = auth_file_read(path, true, &text, &len, errs);
    if (rc < 0)
        return rc;
    rc = cram_store_parse(text, len, path, out, errs);
    auth_wipe(text, len);
    free(text);
    return rc;
}

const struct cram_entry *cram_store_find(const struct cram_store *s, const char *user,
                                         size_t ulen)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->v[i].user) == ulen && memcmp(s->v[i].user, user, ulen) == 0)
            return &s->v[i];
    return NULL;
}

void cram_store_free(struct cram_store *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].user);
        auth_wipe(s->v[i].secret, s->v[i].len);
        free(s->v[i].secret);
    }
    free(s->v);
    memset(s, 0, sizeof(*s));
}

int cram_secret_main(int argc, char **argv)
{
    const char *prog = argc > 0 && argv[0] ? argv[0] : "relayd";
    if (argc != 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr,
                "usage: %s --cram-secret USER\n"
                "reads a secret from standard input and prints the cram_file line USER:BASE64.\n"
                "CRAM-MD5 keeps the secret itself on the relay: use it only for clients that\n"
                "need it (fetchmail's ODMR mode) and use a secret of its own, not a password.\n",
                prog);
        return 2;
    }
    const char *why = auth_name_problem(argv[1], strlen(argv[1]));
    if (why) {
        fprintf(stderr, "%s: %s\n", prog, why);
        return 2;
    }
    char pw[AUTH_FIELD_MAX + 2];
    if (auth_read_password(pw, sizeof(pw)) != 0) {
        auth_wipe(pw, sizeof(pw));
        return 1;
    }
    char b64[(AUTH_FIELD_MAX + 2) / 3 * 4 + 8];
    int rc = auth_b64_encode(pw, strlen(pw), b64, sizeof(b64));
    auth_wipe(pw, sizeof(pw));
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", prog, hf_strerror(rc));
        return 1;
    }
    printf("%s:%s\n", argv[1], b64);
    auth_wipe(b64, sizeof(b64));
    return fflush(stdout) == 0 ? 0 : 1;
}
