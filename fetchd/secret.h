/* fetchd's AUTH password file: the first line of a file only its owner may read, loaded once
 * at start (before any connection), the way ssh treats private keys: a file that grants any
 * access to group or others is refused with a message saying so, not used. */
#ifndef HF_FETCHD_SECRET_H
#define HF_FETCHD_SECRET_H

#include <stddef.h>

/* The longest password AUTH PLAIN carries (RFC 4616 2: 255 octets), and a buffer for it. */
#define SECRET_MAX 255
#define SECRET_BUF (SECRET_MAX + 1)

/* Reads the first line of path (borrowed) into out (NUL-terminated; sz at least SECRET_BUF),
 * without its line end (LF or CRLF). On failure writes a sentence for the operator into why
 * (whysz octets): "mode 0644 gives group or others access; chmod 600 it". Returns 0,
 * -EPERM (group or other permission bits set), -EINVAL (not a regular file, empty first line,
 * a NUL in it, longer than SECRET_MAX), or -errno from open/fstat/read. out is wiped on
 * failure; the caller wipes it (explicit_bzero) when done. */
int secret_load(const char *path, char *out, size_t sz, char *why, size_t whysz);

#endif
