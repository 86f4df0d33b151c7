/* Relay policy: which recipients relayd accepts, decided at RCPT time so nothing is
 * accepted that would later bounce (no backscatter) and nothing opens a relay.
 * Pure once built: policy_check_rcpt() only reads tables. */
#ifndef HF_POLICY_H
#define HF_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "cfg.h"

struct policy;

enum policy_verdict {
    POLICY_OK = 0,
    POLICY_RELAY_DENIED, /* 550 5.7.1: not a domain we serve */
    POLICY_UNKNOWN_USER, /* 550 5.1.1: domain has a recipients list without this address */
    POLICY_RELAY_TRICK,  /* 550 5.7.1: %-hack, bang path, quoted '@' or address literal */
};

/* Builds the policy from the configuration's [domain] sections, reading each recipients file.
 * Borrows c for the policy's lifetime. Problems go to *errs (file:line) like config errors.
 * Returns 0 and *out, HF_ECONFIG (errs filled), or -ENOMEM. */
int policy_new(const struct cfg *c, struct cfg_errors *errs, struct policy **out);
void policy_free(struct policy *p);

/* Adds one valid recipient (a local part or a full address) to domain d's list; used by
 * policy_new and by tests. Returns 0, -ENOENT (no such domain), -EINVAL, -ENOMEM. */
int policy_add_recipient(struct policy *p, const char *domain, const char *entry);

/* Decides about one recipient mailbox. *domain_out (may be NULL) receives the configured
 * domain section that matched. */
enum policy_verdict policy_check_rcpt(const struct policy *p, const struct addr_mailbox *m,
                                      const struct cfg_domain **domain_out);

/* True if the domain (exact or as a subdomain of a subdomains=yes section) is served. */
bool policy_serves(const struct policy *p, const char *domain);

#endif
