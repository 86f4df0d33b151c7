/* Inbound SMTP dialogue: the mail transaction and the DATA phase. Owns the message being
 * received (s->msg) and its share of the memory budget; DATA's check and apply, the decoder
 * loop that fills the message buffer (shared with BDAT, smtpd_bdat.c), the verdict on a
 * complete message, and the queue's commit answer. */
#include "smtpd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hf_err.h"
#include "log.h"
#include "smtpd_int.h"

void smtpd__rcpt_free(struct smtpd_rcpt *r)
{
    free(r->addr);
    free(r->domain);
    free(r->orcpt);
}

void smtpd_msg_free(struct smtpd_msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nrcpt; i++)
        smtpd__rcpt_free(&m->rcpts[i]);
    free(m->rcpts);
    free(m->sender);
    free(m->buf);
    free(m->envid);
    free(m);
}

/* Would a message buffer of cap octets (instead of the current one) fit the shared budget? */
static bool smtpd_mem_fits(const struct smtpd *s, size_t cap)
{
    if (!s->prm->mem_used || cap <= s->msg_cap)
        return true;
    return *s->prm->mem_used - s->msg_cap + cap <= s->prm->mem_limit;
}

/* Records that this session's message buffer is now cap octets. */
static void smtpd_mem_set(struct smtpd *s, size_t cap)
{
    if (s->prm->mem_used)
        *s->prm->mem_used = *s->prm->mem_used - s->msg_cap + cap;
    s->msg_cap = cap;
}

void smtpd__reset_tx(struct smtpd *s)
{
    smtpd_mem_set(s, 0);
    smtpd_msg_free(s->msg);
    s->msg = NULL;
    s->declared_size = 0;
    s->too_big = false;
    s->no_mem = false;
    s->bdat = false;
    s->bdat_failed = false;
    s->bdat_in = 0;
    free(s->chunk_reply);
    s->chunk_reply = NULL;
}

int smtpd__check_data(struct smtpd *s, const struct smtp_cmd *c)
{
    if (c->arg[0]) {
        smtpd__reply(s, 501, "5.5.4", "DATA takes no argument");
        return -EINVAL;
    }
    if (s->st == SMTPD_ST_BDAT) {
        /* RFC 3030 2: DATA after BDAT in one transaction MUST get 503; the transaction is
         * left as it is (the RFC calls it indeterminate and asks the client for RSET). */
        smtpd__reply(s, 503, "5.5.1", "DATA cannot follow BDAT in one transaction; send RSET");
        return -EPROTO;
    }
    if (s->st == SMTPD_ST_MAIL) {
        smtpd__reply(s, 554, "5.5.1", "No valid recipients");
        return -EPROTO;
    }
    if (s->st != SMTPD_ST_RCPT) {
        smtpd__reply(s, 503, "5.5.1", "Need RCPT before DATA");
        return -EPROTO;
    }
    return 0;
}

int smtpd__msg_start(struct smtpd *s, const char *verb)
{
    size_t cap = SMTPD_BODY_HEADROOM + 16384;
    if (s->declared_size && s->declared_size < s->prm->max_size)
        cap = SMTPD_BODY_HEADROOM + (size_t)s->declared_size + 64;
    if (!smtpd_mem_fits(s, cap)) {
        (void)verb;
        smtpd_note(s, "reason=memory budget=%zu", s->prm->mem_limit);
        return -ENOSPC;
    }
    s->msg->buf = malloc(cap);
    if (!s->msg->buf)
        return -ENOMEM;
    smtpd_mem_set(s, cap);
    s->msg->head = SMTPD_BODY_HEADROOM;
    s->msg->len = 0;
    s->too_big = false;
    s->no_mem = false;
    return 0;
}

void smtpd__apply_data(struct smtpd *s, const struct smtp_cmd *c)
{
    (void)c;
    int rc = smtpd__msg_start(s, "DATA");
    if (rc == -ENOSPC) {
        smtpd__reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
        return;
    }
    if (rc < 0) {
        smtpd__reply(s, 451, "4.3.0", "Out of memory, try again later");
        return;
    }
    smtp_data_init(&s->dec, SMTP_TEXT_LINE_MAX,
                   s->prm->bare_normalise ? SMTP_DATA_BARE_NORMALISE : SMTP_DATA_BARE_REJECT);
    smtpd__reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    smtpd__enter(s, SMTPD_ST_DATA);
}

/* ---- message content (DATA and BDAT) ------------------------------------------------- */

/* Releases what was received: the rest of the message is consumed but not kept. */
static void smtpd_msg_drop(struct smtpd *s)
{
    free(s->msg->buf);
    s->msg->buf = NULL;
    s->msg->len = 0;
    smtpd_mem_set(s, 0);
}

size_t smtpd__msg_feed(struct smtpd *s, const char *in, size_t n)
{
    struct smtpd_msg *m = s->msg;
    size_t need = m->head + m->len + SMTP_DATA_OUT_MAX(n);
    if (!s->too_big && !s->no_mem && need > s->msg_cap) {
        size_t cap = s->msg_cap * 2;
        while (cap < need)
            cap *= 2;
        /* Never more than the largest message can use, and when doubling would not fit
         * the shared budget, just what this slice needs. */
        size_t ceiling = m->head + (size_t)s->prm->max_size + SMTP_DATA_OUT_MAX(SMTPD_SLICE);
        if (cap > ceiling && need <= ceiling)
            cap = ceiling;
        if (!smtpd_mem_fits(s, cap) && smtpd_mem_fits(s, need))
            cap = need;
        char *b = smtpd_mem_fits(s, cap) ? realloc(m->buf, cap) : NULL;
        if (!b) {
            /* Over the shared budget (or out of memory): the message is refused with
             * 452 4.3.1 at its end; what was received is released now. */
            s->no_mem = true;
            smtpd_msg_drop(s);
        } else {
            m->buf = b;
            smtpd_mem_set(s, cap);
        }
    }
    size_t out_len = 0;
    size_t c;
    if (s->too_big || s->no_mem) {
        static char sink[SMTP_DATA_OUT_MAX(SMTPD_SLICE)]; /* discarded output, one thread */
        c = smtp_data_feed(&s->dec, in, n, sink, &out_len);
    } else {
        c = smtp_data_feed(&s->dec, in, n, m->buf + m->head + m->len, &out_len);
        m->len += out_len;
    }
    if (!s->too_big && s->dec.bytes_out > s->prm->max_size) {
        s->too_big = true;
        smtpd_msg_drop(s);
    }
    return c;
}

bool smtpd__msg_refused(struct smtpd *s, const char *verb)
{
    (void)verb; /* the refusal's log line names s->verb */
    if (s->no_mem && !s->too_big) {
        smtpd_note(s, "reason=memory budget=%zu", s->prm->mem_limit);
        smtpd__reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
    } else if (s->too_big) {
        smtpd_note(s, "reason=size size>%llu", (unsigned long long)s->prm->max_size);
        smtpd__reply(s, 552, "5.3.4", "Message size exceeds fixed limit of %llu octets",
                     (unsigned long long)s->prm->max_size);
    } else if (s->dec.err == HF_EBARELF) {
        smtpd_note(s, "reason=bare_lf");
        smtpd__reply(s, 554, "5.6.0",
                     "Message refused: bare LF or bare CR in message, only CRLF ends a line");
    } else if (s->dec.err == HF_ELONGLINE) {
        /* RFC 5321 4.3.2: the end of the data is answered 250, 552, 554, 451, 452, 450 or
         * 550; 500 (4.5.3.1.9's example) is for command lines. */
        smtpd_note(s, "reason=long_line");
        smtpd__reply(s, 554, "5.6.0", "Message refused: a text line is over %d octets",
                     SMTP_TEXT_LINE_MAX);
    } else {
        return false;
    }
    s->rej_data++;
    return true;
}

void smtpd__msg_commit(struct smtpd *s)
{
    s->msg->eight_bit = s->dec.eight_bit;
    s->out.act |= SMTPD_ACT_COMMIT;
    smtpd__enter(s, SMTPD_ST_COMMIT);
}

/* ---- DATA ----------------------------------------------------------------------------- */

size_t smtpd__data_input(struct smtpd *s, const char *data, size_t len)
{
    size_t used = 0;
    while (used < len && !s->dec.done) {
        /* Decode in slices so the output (at most twice the input) fits. */
        size_t n = len - used;
        if (n > SMTPD_SLICE)
            n = SMTPD_SLICE;
        used += smtpd__msg_feed(s, data + used, n);
    }
    if (!s->dec.done)
        return used;
    s->verb = "END-OF-MESSAGE"; /* what the answer answers, in Postfix's words */
    if (!smtpd__msg_refused(s, "DATA")) {
        smtpd__msg_commit(s);
        return used;
    }
    smtpd__reset_tx(s);
    smtpd__enter(s, SMTPD_ST_READY);
    return used;
}

struct smtpd_msg *smtpd_take_message(struct smtpd *s)
{
    struct smtpd_msg *m = s->msg;
    if (m)
        m->mem = s->msg_cap; /* still counted: the taker subtracts it when buf is freed */
    s->msg = NULL;
    s->msg_cap = 0;
    return m;
}

void smtpd_committed(struct smtpd *s, int status, const char *queue_id)
{
    if (s->st != SMTPD_ST_COMMIT)
        return;
    if (status == 0)
        smtpd__reply(s, 250, "2.0.0", "Ok: queued as %s", queue_id);
    else if (status == -ENOSPC)
        smtpd__reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
    else
        smtpd__reply(s, 451, "4.3.0", "Local error in processing, try again later");
    smtpd__reset_tx(s);
    smtpd__enter(s, SMTPD_ST_READY);
}
