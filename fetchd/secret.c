/* fetchd's AUTH password file (see secret.h). The file is opened without following a
 * symbolic link at its last component and checked on the open descriptor (fstat), so the
 * file checked is the file read. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_READ_MAX 4096 /* only the first line matters */

int secret_load(const char *path, char *out, size_t sz, char *why, size_t whysz)
{
    char buf[SECRET_READ_MAX];
    size_t len = 0;
    int rc = 0;
    why[0] = '\0';
    if (sz < SECRET_BUF)
        return -EINVAL;
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0) {
        rc = -errno;
        snprintf(why, whysz, "cannot open: %s", strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(why, whysz, "cannot stat: %s", strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        snprintf(why, whysz, "not a regular file");
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        rc = -EPERM;
        snprintf(why, whysz, "mode %04o gives group or others access to the password; chmod 600 it",
                 (unsigned)(st.st_mode & 07777));
        goto out;
    }
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            snprintf(why, whysz, "cannot read: %s", strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (memchr(buf, '\n', len))
            break;
    }
    char *nl = memchr(buf, '\n', len);
    size_t l = nl ? (size_t)(nl - buf) : len;
    if (l > 0 && buf[l - 1] == '\r')
        l--;
    if (l == 0) {
        rc = -EINVAL;
        snprintf(why, whysz, "the first line (the password) is empty");
    } else if (l > SECRET_MAX) {
        rc = -EINVAL;
        snprintf(why, whysz, "the password is longer than %d octets (RFC 4616)", SECRET_MAX);
    } else if (memchr(buf, '\0', l)) {
        rc = -EINVAL;
        snprintf(why, whysz, "the password contains a NUL octet");
    } else {
        memcpy(out, buf, l);
        out[l] = '\0';
    }
out:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    if (rc < 0)
        explicit_bzero(out, sz);
    return rc;
}
