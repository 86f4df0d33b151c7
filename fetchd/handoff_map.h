/* How the local MTA's answer for one message becomes fetchd's one reply to the relay's end
 * of data (ATRN server role). Pure.
 *
 * The relay is an SMTP client: it gets one reply after the data for the whole message.
 * The local MTA answers per recipient: SMTP at RCPT (a refused recipient) and once after
 * the data for every recipient it took; LMTP (RFC 2033 4.2) once after the data for each
 * recipient it took. Either way the glue turns that into one result per recipient, and:
 *   - every recipient taken (2xx)                 -> 250 2.0.0: the relay may drop it
 *   - none taken, every refusal permanent (5xx)   -> the local MTA's 5xx (the relay
 *                                                    bounces)
 *   - none taken, any temporary (4xx, no answer,  -> 4xx (the local code when it is one,
 *     local MTA down, connection lost)               else 451 4.4.x): the relay keeps it
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
