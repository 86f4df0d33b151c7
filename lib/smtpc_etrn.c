/* SMTP client dialogue: the ETRN client (RFC 1985): one "ETRN <arg>" per argument once the
 * session is ready, each reply kept in c->etrn_res[], then QUIT. ATRN (RFC 2645) joins it
 * here. */
#include "smtpc.h"

#include "smtpc_int.h"

int smtpc__etrn_next(struct smtpc *c)
{
    if (c->next_etrn < c->o.netrn) {
        smtpc__enter(c, SMTPC_ST_ETRN);
        return smtpc__send(c, SMTPC_K_ETRN, (uint32_t)c->next_etrn, "ETRN %s",
                           c->o.etrn[c->next_etrn]);
    }
    smtpc__enter(c, SMTPC_ST_QUIT);
    return smtpc__send(c, SMTPC_K_QUIT, 0, "QUIT");
}

int smtpc__on_etrn(struct smtpc *c, const struct smtp_reply *r, uint32_t idx)
{
    /* RFC 1985 5: 250/251/252/253 started or queued; 458/459 not now; 5xx refused. */
    smtpc__result_reply(&c->etrn_res[idx], smtpc__outcome_of(r->code), r);
    c->next_etrn = idx + 1;
    return smtpc__etrn_next(c);
}
