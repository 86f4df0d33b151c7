/* Control socket client: one request line out, answer lines in until "end". */
#include "ctlclient.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ctlclient_request(const char *path, const char *request, int timeout_s, ctlclient_line_cb cb,
                      void *arg)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        goto out;
    }
    size_t rl = strlen(request);
    char *req = malloc(rl + 1);
    if (!req) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(req, request, rl);
    req[rl] = '\n';
    for (size_t off = 0; off < rl + 1;) {
        ssize_t n = write(fd, req + off, rl + 1 - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            free(req);
            goto out;
        }
        off += (size_t)n;
    }
    free(req);
    char buf[16384];
    size_t len = 0;
    for (;;) {
        if (timeout_s > 0) {
            struct pollfd p = {fd, POLLIN, 0};
            int pr = poll(&p, 1, timeout_s * 1000);
            if (pr == 0) {
                rc = -ETIMEDOUT;
                goto out;
            }
            if (pr < 0 && errno != EINTR) {
                rc = -errno;
                goto out;
            }
        }
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        if (n == 0) {
            rc = -EPROTO;
            goto out;
        }
        len += (size_t)n;
        buf[len] = '\0';
        char *start = buf;
        char *nl;
        while ((nl = strchr(start, '\n'))) {
            *nl = '\0';
            if (strcmp(start, "end") == 0)
                goto out;
            cb(start, arg);
            start = nl + 1;
        }
        len = (size_t)(buf + len - start);
        memmove(buf, start, len);
        if (len == sizeof(buf) - 1) { /* a line longer than the buffer: pass it on in parts */
            buf[len] = '\0';
            cb(buf, arg);
            len = 0;
        }
    }
out:
    close(fd);
    return rc;
}
