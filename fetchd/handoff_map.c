/* The local MTA's answers -> one reply to the relay (see handoff_map.h). */
#include "handoff_map.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Copies text into one reply line's text: control characters become spaces. */
static void handoff_text(char *out, size_t sz, const char *prefix, const char *text)
{
    int n = snprintf(out, sz, "%s%s", prefix, text ? text : "");
    if (n < 0)
        out[0] = '\0';
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

static void handoff_enh(char *out, size_t sz, const char *enh, int cls, const char *dflt)
{
    /* The enhanced code's class must agree with the reply's (RFC 3463 2). */
    if (enh && enh[0] && enh[0] - '0' == cls && enh[1] == '.')
        snprintf(out, sz, "%s", enh);
    else
        snprintf(out, sz, "%s", dflt);
}

/* The reply text without its leading enhanced code (smtp_reply keeps it in the text): the
 * relay's reply carries the code once, in its own place. */
static const char *handoff_bare(const struct handoff_rcpt *r)
{
    const char *t = r->text ? r->text : "";
    size_t el = r->enh ? strlen(r->enh) : 0;
    if (el && strncmp(t, r->enh, el) == 0 && t[el] == ' ')
        return t + el + 1;
    return t;
}

void handoff_map(const struct handoff_rcpt *r, size_t n, struct handoff_reply *out)
{
    memset(out, 0, sizeof(*out));
    const struct handoff_rcpt *first_temp = NULL, *first_perm = NULL;
    for (size_t i = 0; i < n; i++) {
        int cls = r[i].code / 100;
        if (r[i].code >= 200 && r[i].code <= 299)
            out->ntaken++;
        else if (cls == 5 && r[i].code <= 599) {
            if (!first_perm)
                first_perm = &r[i];
        } else if (!first_temp)
            first_temp = &r[i]; /* 4xx, no answer, or nonsense */
    }
    if (n == 0) {
        out->code = 451;
        snprintf(out->enh, sizeof(out->enh), "4.3.0");
        handoff_text(out->text, sizeof(out->text), "", "no recipient to hand over");
        return;
    }
    if (out->ntaken == n) {
        /* 250 or 251 as the local MTA said (MAIL, RCPT); 250 for a message. */
        out->code = n == 1 ? r[0].code : 250;
        handoff_enh(out->enh, sizeof(out->enh), r[0].enh, 2, "2.0.0");
        handoff_text(out->text, sizeof(out->text), "local MTA: ", handoff_bare(&r[0]));
        return;
    }
    if (out->ntaken > 0) {
        out->code = 451;
        snprintf(out->enh, sizeof(out->enh), "4.3.0");
        snprintf(out->text, sizeof(out->text),
                 "local MTA took %zu of %zu recipients; send again later", out->ntaken, n);
        return;
    }
    if (first_temp) {
        bool is4 = first_temp->code >= 400 && first_temp->code <= 499;
        out->code = is4 ? first_temp->code : 451;
        handoff_enh(out->enh, sizeof(out->enh), first_temp->enh, 4, is4 ? "4.0.0" : "4.4.1");
        handoff_text(out->text, sizeof(out->text),
                     is4 ? "local MTA: " : "local MTA not reachable: ", handoff_bare(first_temp));
        return;
    }
    out->code = first_perm->code;
    handoff_enh(out->enh, sizeof(out->enh), first_perm->enh, 5, "5.0.0");
    handoff_text(out->text, sizeof(out->text), "local MTA: ", handoff_bare(first_perm));
}
