/* relayctl's argument checks, shared by the read commands (relayctl.c's table) and the
 * actions (relayctl_act.c): a queue id, DOMAIN or @DOMAIN. Each prints what is wrong and
 * returns CTL_EX_USAGE, or 0. */
#include "relayctl.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "queue.h"

int relayctl_check_id(int argc, char **argv, struct relayctl_args *a)
{
    (void)argc;
    const char *s = argv[0];
    if (strlen(s) != QUEUE_ID_STR - 1 || queue_id_parse(s, &a->id) < 0) {
        fprintf(stderr, "relayctl: bad queue id '");
        relayctl_text_str(stderr, s);
        fprintf(stderr, "': expected %d hexadecimal digits\n", QUEUE_ID_STR - 1);
        return CTL_EX_USAGE;
    }
    queue_id_str(a->id, a->idstr);
    return 0;
}

/* DOMAIN or @DOMAIN (the domain and its subdomains, as in ETRN @DOMAIN, RFC 1985). */
int relayctl_check_domain(int argc, char **argv, struct relayctl_args *a)
{
    if (argc == 0)
        return 0;
    const char *s = argv[0];
    if (s[0] == '@') {
        a->subdomains = true;
        s++;
    }
    size_t n = strlen(s);
    bool ok =
        n > 0 && n < sizeof(a->domain) && s[0] != '.' && s[n - 1] != '.' && strstr(s, "..") == NULL;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* LDH labels, or UTF-8 octets of U-labels (RFC 6531); no address literals. */
        ok = c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') || c == '-' || c == '.';
    }
    if (!ok) {
        fprintf(stderr, "relayctl: bad domain '");
        relayctl_text_str(stderr, argv[0]);
        fprintf(stderr, "': expected DOMAIN or @DOMAIN\n");
        return CTL_EX_USAGE;
    }
    for (size_t i = 0; i <= n; i++)
        a->domain[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    a->has_domain = true;
    return 0;
}
