/* README's configuration reference, written from the key table (cfg_keys in cfg.c): one
 * markdown row per key. Pure. test_cfg compares it with README. */
#include "cfg.h"

#include <errno.h>
#include <stdio.h>

static const char *cfg_ref_section(enum cfg_section s)
{
    switch (s) {
    case CFG_SEC_DOMAIN:
        return "domain";
    case CFG_SEC_GROUP:
        return "group";
    case CFG_SEC_RELAY:
        return "relay";
    default:
        return "top";
    }
}

int cfg_reference_md(char *buf, size_t sz)
{
    size_t o = 0;
    int n = snprintf(buf, sz, "| section | key | default | meaning |\n|---|---|---|---|\n");
    if (n < 0 || (size_t)n >= sz)
        return -ENOSPC;
    o = (size_t)n;
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        char def[96];
        if (k->choices)
            snprintf(def, sizeof(def), "`%s` (%s)", k->def ? k->def : "", k->choices);
        else if (k->def && *k->def)
            snprintf(def, sizeof(def), "`%s`", k->def);
        else
            snprintf(def, sizeof(def), "(none)");
        n = snprintf(buf + o, sz - o, "| %s | `%s` | %s | %s |\n", cfg_ref_section(k->section),
                     k->name, def, k->help);
        if (n < 0 || (size_t)n >= sz - o)
            return -ENOSPC;
        o += (size_t)n;
    }
    return (int)o;
}
