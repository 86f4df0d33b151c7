/* Reading one header field of a stored message (RFC 5322 2.2), for log lines. Pure. */
#ifndef HF_MSGHDR_H
#define HF_MSGHDR_H

#include <stddef.h>

/* Finds the first header field called name (case-insensitive, without the colon) in the
 * header section of msg[0..len) (up to the first empty line) and copies its value, unfolded
 * and trimmed, into out (cap octets, always NUL-terminated; cut when longer). Returns the
 * value's length, or -1 when there is no such field. Borrows msg. */
int msghdr_find(const char *msg, size_t len, const char *name, char *out, size_t cap);

#endif
