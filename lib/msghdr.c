/* Header field lookup in a stored message (msghdr.h): lines end in CRLF (the relay stores
 * nothing else), continuation lines start with a space or tab (RFC 5322 2.2.3). */
#include "msghdr.h"

#include <string.h>
#include <strings.h>

int msghdr_find(const char *msg, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    size_t p = 0;
    if (cap)
        out[0] = '\0';
    while (p < len) {
        const char *e = memchr(msg + p, '\n', len - p);
        size_t end = e ? (size_t)(e - msg) : len;
        size_t l = end - p;
        if (l && msg[p + l - 1] == '\r')
            l--;
        if (l == 0)
            return -1; /* the empty line ends the header section */
        if (l > nl && msg[p + nl] == ':' && strncasecmp(msg + p, name, nl) == 0) {
            size_t o = 0;
            size_t q = p + nl + 1;
            for (;;) {
                for (size_t i = q; i < p + l; i++) {
                    char c = msg[i] == '\t' ? ' ' : msg[i];
                    if (c == ' ' && (o == 0 || out[o - 1] == ' '))
                        continue;
                    if (o + 1 < cap)
                        out[o++] = c;
                }
                /* Continuation lines belong to the field. */
                size_t next = end + 1;
                if (next >= len || (msg[next] != ' ' && msg[next] != '\t'))
                    break;
                if (o && o + 1 < cap && out[o - 1] != ' ')
                    out[o++] = ' ';
                const char *e2 = memchr(msg + next, '\n', len - next);
                end = e2 ? (size_t)(e2 - msg) : len;
                p = next;
                q = next;
                l = end - next;
                if (l && msg[p + l - 1] == '\r')
                    l--;
            }
            while (o && out[o - 1] == ' ')
                o--;
            if (cap)
                out[o < cap ? o : cap - 1] = '\0';
            return (int)o;
        }
        p = end + 1;
    }
    return -1;
}
