/* Inbound SMTP dialogue: BDAT (RFC 3030 2, the CHUNKING extension). A message comes as
 * chunks whose length the command line gives; the octets of a chunk are message content and
 * nothing else: never a command, never an end of data (CRLF.CRLF), never dot-stuffed.
 *
 * Content rules. RFC 3030 lets BDAT carry 7BIT and 8BITMIME bodies (BINARYMIME is not offered:
 * we could not hand a binary body on to a next hop over DATA). Such a body is still lines of
 * text, so the rules DESIGN.md gives for DATA hold here too: a bare CR or bare LF refuses the
 * message (554 5.6.0) or is completed to CRLF with bare_lf = normalise, and a line over 1000
 * octets refuses it. Bare line ends cannot smuggle anything into this session (the length
 * frames the chunk), but a relay that stored them would pass them to the next hop inside a
 * DATA body, where "\n.\n" is exactly the smuggling pattern; and a client must not get past
 * the bare_lf policy by choosing BDAT. What is accepted is stored byte for byte as it came.
 *
 * Refusals. RFC 3030 2: after a failure "the receiver-SMTP MUST accept and discard the
 * associated message data before sending the appropriate 5XX or 4XX code", so a refused
 * chunk's reply is formatted when its command arrives and sent once its last octet has been
 * consumed: the stream stays in step and pipelined replies stay in order. A chunk that fails
 * the transaction (size, memory, content) discards the message; chunks already in the
 * pipeline get the same reply again and do not count as bad commands, until BDAT LAST, RSET,
 * or a new EHLO ends the transaction. */
#include "smtpd.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp_reply.h"
#include "smtpd_int.h"

/* Sets the reply that will answer the current chunk once it has been consumed. */
static void smtpd_bdat_defer(struct smtpd *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void smtpd_bdat_defer(struct smtpd *s, int code, const char *enh, const char *fmt, ...)
{
    char text[400];
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    int n = smtp_reply_fmt(line, sizeof(line), code, enh, false, "%s", text);
    free(s->chunk_reply);
    s->chunk_reply = n > 0 ? strndup(line, (size_t)n) : NULL;
    s->chunk_skip = true;
}

/* A refusal of the command itself (sequence, EHLO): the transaction, if any, stays. */
static void smtpd_bdat_refuse(struct smtpd *s, const char *reason, int code, const char *enh,
                              const char *text)
{
    smtpd_note(s, "reason=%s chunk=%llu", reason, (unsigned long long)s->chunk_size);
    smtpd_bdat_defer(s, code, enh, "%s", text);
    s->chunk_bad = true;
}

/* The transaction fails with the reply set by smtpd_bdat_defer(): the message goes, and the
 * reply is kept for the chunks that follow in the pipeline. */
static void smtpd_bdat_fail(struct smtpd *s)
{
    char *reply = s->chunk_reply;
    s->chunk_reply = NULL;
    smtpd__reset_tx(s);
    s->bdat = true;
    s->bdat_failed = true;
    s->chunk_reply = reply;
    s->chunk_skip = true;
}

/* The chunk's last octet has been consumed (or it had none): answer it. */
static void smtpd_chunk_end(struct smtpd *s)
{
    if (s->chunk_skip) {
        if (s->chunk_reply)
            smtpd__out_append(s, s->chunk_reply, strlen(s->chunk_reply));
        else
            smtpd__reply(s, 451, "4.3.0", "Local error in processing, try again later");
        if (s->st == SMTPD_ST_CLOSED)
            return;
        if (!s->bdat_failed) {
            smtpd__enter(s, s->chunk_ret);
            free(s->chunk_reply);
            s->chunk_reply = NULL;
        } else if (s->chunk_last) {
            smtpd__reset_tx(s);
            smtpd__enter(s, SMTPD_ST_READY);
        } else {
            smtpd__enter(s, SMTPD_ST_BDAT);
        }
        if (s->chunk_bad)
            smtpd__bad(s);
        return;
    }
    struct smtpd_msg *m = s->msg;
    if (s->chunk_last) {
        /* A CR that ended the content is bare. The buffer always has room for the one
         * octet: the slices reserved twice their input plus one, and msg_start more. */
        char sink[1];
        bool keep = !s->too_big && !s->no_mem;
        size_t o = smtp_data_end(&s->dec, keep ? m->buf + m->head + m->len : sink);
        if (keep)
            m->len += o;
        if (s->dec.bytes_out > s->prm->max_size)
            s->too_big = true;
    }
    size_t mark = s->out.len;
    if (smtpd__msg_refused(s, "BDAT")) {
        if (s->st == SMTPD_ST_CLOSED)
            return;
        if (s->chunk_last) {
            smtpd__reset_tx(s);
            smtpd__enter(s, SMTPD_ST_READY);
            return;
        }
        free(s->chunk_reply);
        s->chunk_reply = s->out.len > mark ? strndup(s->out.buf + mark, s->out.len - mark) : NULL;
        smtpd_bdat_fail(s);
        smtpd__enter(s, SMTPD_ST_BDAT);
        return;
    }
    if (s->chunk_last) {
        /* Like DATA: the 250 comes from smtpd_committed(), after the durable commit. */
        smtpd__msg_commit(s);
        return;
    }
    smtpd__reply(s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->chunk_size);
    if (s->st != SMTPD_ST_CLOSED)
        smtpd__enter(s, SMTPD_ST_BDAT);
}

void smtpd__apply_bdat(struct smtpd *s, const struct smtp_cmd *c)
{
    s->chunk_size = c->size;
    s->chunk_left = c->size;
    s->chunk_last = c->bdat_last;
    s->chunk_skip = false;
    s->chunk_bad = false;
    s->chunk_ret = s->st;
    if (!s->esmtp) {
        /* CHUNKING is offered in the EHLO reply only (RFC 3030 2, RFC 5321 2.2.1). */
        smtpd_bdat_refuse(s, "no_ehlo", 503, "5.5.1", "BDAT needs EHLO (CHUNKING)");
    } else if (s->st == SMTPD_ST_READY) {
        smtpd_bdat_refuse(s, "no_mail", 503, "5.5.1", "Need MAIL and RCPT before BDAT");
    } else if (s->st == SMTPD_ST_MAIL) {
        /* As for DATA (RFC 5321 3.3): no recipient was accepted. */
        smtpd_bdat_refuse(s, "no_rcpt", 554, "5.5.1", "No valid recipients");
    } else if (s->bdat_failed) {
        /* RFC 3030 2: chunks already in the pipeline after a failed one are discarded; each
         * gets the transaction's failure again. chunk_reply still holds it. */
        s->chunk_skip = true;
    } else if (c->size > s->prm->max_size - s->bdat_in) {
        /* RFC 1870 / RFC 3030 2: known from the count alone, before any octet is kept. */
        smtpd_note(s, "reason=size size>%llu", (unsigned long long)s->prm->max_size);
        s->rej_data++;
        smtpd_bdat_defer(s, 552, "5.3.4", "Message size exceeds fixed limit of %llu octets",
                         (unsigned long long)s->prm->max_size);
        smtpd_bdat_fail(s);
    } else if (!s->bdat) {
        int rc = smtpd__msg_start(s, "BDAT");
        if (rc < 0) {
            s->rej_data++;
            if (rc == -ENOSPC)
                smtpd_bdat_defer(s, 452, "4.3.1", "Insufficient system storage, try again later");
            else
                smtpd_bdat_defer(s, 451, "4.3.0", "Out of memory, try again later");
            smtpd_bdat_fail(s);
        } else {
            s->bdat = true;
            smtp_data_init_raw(&s->dec, SMTP_TEXT_LINE_MAX,
                               s->prm->bare_normalise ? SMTP_DATA_BARE_NORMALISE
                                                      : SMTP_DATA_BARE_REJECT);
        }
    }
    smtpd__enter(s, SMTPD_ST_CHUNK);
    if (s->chunk_left == 0)
        smtpd_chunk_end(s);
}

size_t smtpd__chunk_input(struct smtpd *s, const char *data, size_t len)
{
    size_t take = (uint64_t)len < s->chunk_left ? len : (size_t)s->chunk_left;
    if (!s->chunk_skip) {
        /* Raw mode consumes every octet it is given; slices keep the output bound. */
        for (size_t used = 0; used < take;) {
            size_t n = take - used < SMTPD_SLICE ? take - used : SMTPD_SLICE;
            used += smtpd__msg_feed(s, data + used, n);
        }
        s->bdat_in += take;
    }
    s->chunk_left -= take;
    if (s->chunk_left == 0)
        smtpd_chunk_end(s);
    return take;
}
