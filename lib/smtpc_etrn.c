/* SMTP client dialogue: the ETRN client (RFC 1985): one "ETRN <arg>" per argument once the
 * session is ready, each reply kept in c->etrn_res[], then QUIT. The ATRN client (RFC 2645):
 * one "ATRN a,b,c" carrying every argument, its reply kept in every etrn_res[]; on 250 the
 * connection turns around (SMTPC_ACT_TURN) and this machine is done without QUIT. */
#include "smtpc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "smtpc_int.h"

/* "ATRN a,b,c": every argument in one command (RFC 2645 4.1). */
static int smtpc_atrn(struct smtpc *c)
{
    char line[SMTPC_CMD_MAX];
    size_t n = (size_t)snprintf(line, sizeof(line), "ATRN ");
    for (size_t i = 0; i < c->o.netrn; i++) {
        size_t l = strlen(c->o.etrn[i]);
        if (n + l + 2 > sizeof(line))
            return -EINVAL; /* checked in smtpc_init */
        if (i)
            line[n++] = ',';
        memcpy(line + n, c->o.etrn[i], l);
        n += l;
    }
    smtpc__enter(c, SMTPC_ST_ETRN);
    return smtpc__send_line(c, SMTPC_K_ETRN, 0, line, n);
}

int smtpc__etrn_next(struct smtpc *c)
{
    if (c->o.mode == SMTPC_MODE_ATRN && c->next_etrn == 0)
        return smtpc_atrn(c);
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
    if (c->o.mode == SMTPC_MODE_ATRN) {
        /* RFC 2645 4.1: 250 turns the connection around; 450, 451, 453, 5xx do not. */
        for (size_t i = 0; i < c->o.netrn; i++)
            smtpc__result_reply(&c->etrn_res[i], smtpc__outcome_of(r->code), r);
        c->next_etrn = c->o.netrn;
        if (r->code == 250) {
            smtpc__enter(c, SMTPC_ST_DONE);
            c->actions |= SMTPC_ACT_TURN;
            return 0;
        }
        return smtpc__etrn_next(c);
    }
    smtpc__result_reply(&c->etrn_res[idx], smtpc__outcome_of(r->code), r);
    c->next_etrn = idx + 1;
    return smtpc__etrn_next(c);
}
