/* How the local MTA's answers become fetchd's reply to the relay (ATRN server role). Pure.
 *
 * MAIL and each RCPT are passed to the local MTA as they come, so each of them has exactly
 * one local answer, which maps one to one (n = 1): its 2xx, its 5xx, or its 4xx; no answer
 * (code 0: the local MTA down, the connection lost) becomes 451 4.4.1. The relay (an SMTP
 * client) gets one reply after the data for the whole message: from an SMTP local MTA
 * there is one answer too; from LMTP (RFC 2033 4.2) one per recipient taken, which map as:
 *   - every recipient taken (2xx)                 -> the local 2xx (n = 1) or 250
 *   - none taken, every refusal permanent (5xx)   -> the local MTA's 5xx (the relay
 *                                                    bounces)
 *   - none taken, any temporary (4xx, no answer,  -> 4xx (the local code when it is one,
 *     local MTA down, connection lost)               else 451 4.4.1): the relay keeps it
 *   - some taken, some not                        -> 451 4.3.0: the relay keeps it and sends
 *                                                    it again later; the recipients taken
 *                                                    then arrive twice (never lost, RFC
 *                                                    5321 6.1), and are never acknowledged
 *                                                    before they were taken.
 * So 250 goes to the relay only when the local side took every recipient. */
#ifndef HF_FETCHD_HANDOFF_MAP_H
#define HF_FETCHD_HANDOFF_MAP_H

#include <stddef.h>

#define HANDOFF_TEXT_MAX 256

/* One recipient's answer from the local MTA: code 200..599, or 0 for no answer. */
struct handoff_rcpt {
    int code;
    const char *enh;  /* "x.y.z" or "" / NULL */
    const char *text; /* the reply's text or why there was none (borrowed) */
};

/* The reply for the relay. */
struct handoff_reply {
    int code;
    char enh[16];
    char text[HANDOFF_TEXT_MAX];
    size_t ntaken; /* recipients the local MTA took */
};

/* Maps n >= 1 recipients' answers (borrowed) into *out, as the table above says. n == 0
 * gives 451 4.3.0 (nothing to map: our own mistake, kept temporary). */
void handoff_map(const struct handoff_rcpt *r, size_t n, struct handoff_reply *out);

#endif
