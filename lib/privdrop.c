/* Privilege drop for relayd and fetchd: user and group lookup, ownership of what the daemon
 * made as root, and the switch itself. Uses libc only (no loop, no sockets); the callers
 * decide when to call it (after binding and opening) and log the sentences it returns. */
#include "privdrop.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

/* Parses a whole decimal id; false when s is not one. */
static bool privdrop_number(const char *s, unsigned long *out)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    errno = 0;
    unsigned long v = strtoul(s, NULL, 10);
    if (errno || v >= (unsigned long)INT_MAX)
        return false;
    *out = v;
    return true;
}

int privdrop_resolve(const char *user, const char *group, struct privdrop *out, char *why,
                     size_t whysz)
{
    memset(out, 0, sizeof(*out));
    if (!user || !*user) {
        snprintf(why, whysz, "user is empty");
        return -EINVAL;
    }
    unsigned long n;
    struct passwd *pw = privdrop_number(user, &n) ? getpwuid((uid_t)n) : getpwnam(user);
    if (!pw) {
        snprintf(why, whysz, "user '%s' does not exist", user);
        return -ENOENT;
    }
    snprintf(out->user, sizeof(out->user), "%s", pw->pw_name);
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    if (group && *group) {
        struct group *gr = privdrop_number(group, &n) ? getgrgid((gid_t)n) : getgrnam(group);
        if (!gr) {
            snprintf(why, whysz, "group '%s' does not exist", group);
            return -ENOENT;
        }
        out->gid = gr->gr_gid;
        snprintf(out->group, sizeof(out->group), "%s", gr->gr_name);
    } else {
        struct group *gr = getgrgid(out->gid);
        snprintf(out->group, sizeof(out->group), "%s", gr ? gr->gr_name : "?");
    }
    return 0;
}

static const char *privdrop_uname(uid_t uid, char *buf, size_t sz)
{
    struct passwd *pw = getpwuid(uid);
    snprintf(buf, sz, "%s", pw ? pw->pw_name : "no such user");
    return buf;
}

/* Gives one opened object to p after the owner check (fstat/fchown on the fd: no race with
 * a rename between check and change). */
static int privdrop_own_fd(const struct privdrop *p, int fd, const char *path, char *why,
                           size_t whysz)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        snprintf(why, whysz, "cannot stat %s: %s", path, strerror(e));
        return -e;
    }
    if (st.st_uid != 0 && st.st_uid != p->uid) {
        char name[64];
        snprintf(why, whysz,
                 "%s is owned by uid %u (%s), not by root or user %s (uid %u): refusing to take "
                 "it over; chown -R %s %s if it is ours",
                 path, (unsigned)st.st_uid, privdrop_uname(st.st_uid, name, sizeof(name)), p->user,
                 (unsigned)p->uid, p->user, path);
        return -EPERM;
    }
    if ((st.st_uid != p->uid || st.st_gid != p->gid) && fchown(fd, p->uid, p->gid) < 0) {
        int e = errno;
        snprintf(why, whysz, "cannot give %s to %s:%s: %s", path, p->user, p->group, strerror(e));
        return -e;
    }
    return 0;
}

int privdrop_own(const struct privdrop *p, const char *path, bool recurse, char *why, size_t whysz)
{
    /* O_PATH cannot fchown; a socket cannot be opened: those take the lchown path. */
    struct stat st;
    if (lstat(path, &st) < 0) {
        int e = errno;
        snprintf(why, whysz, "cannot stat %s: %s", path, strerror(e));
        return -e;
    }
    if (S_ISLNK(st.st_mode)) {
        snprintf(why, whysz, "%s is a symbolic link: refusing to change its owner", path);
        return -EPERM;
    }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
        if (st.st_uid != 0 && st.st_uid != p->uid) {
            char name[64];
            snprintf(why, whysz, "%s is owned by uid %u (%s), not by root or user %s", path,
                     (unsigned)st.st_uid, privdrop_uname(st.st_uid, name, sizeof(name)), p->user);
            return -EPERM;
        }
        if (lchown(path, p->uid, p->gid) < 0) {
            int e = errno;
            snprintf(why, whysz, "cannot give %s to %s:%s: %s", path, p->user, p->group,
                     strerror(e));
            return -e;
        }
        return 0;
    }
    int fd =
        open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
    if (fd < 0) {
        int e = errno;
        snprintf(why, whysz, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    int rc = privdrop_own_fd(p, fd, path, why, whysz);
    if (rc < 0 || !recurse || !S_ISDIR(st.st_mode)) {
        close(fd);
        return rc;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        snprintf(why, whysz, "cannot read %s: %s", path, strerror(e));
        return -e;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        int f = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (f < 0) {
            if (errno == ELOOP) {
                snprintf(why, whysz, "%s is a symbolic link: refusing to change its owner", sub);
                rc = -EPERM;
            }
            continue; /* a socket or fifo: not ours to hand over */
        }
        struct stat fs;
        if (fstat(f, &fs) == 0 && S_ISREG(fs.st_mode))
            rc = privdrop_own_fd(p, f, sub, why, whysz);
        close(f);
    }
    closedir(d);
    return rc;
}

int privdrop_check_dir(const struct privdrop *p, const char *path, char *why, size_t whysz)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    if (stat(dir, &st) < 0) {
        int e = errno;
        snprintf(why, whysz, "cannot stat %s: %s", dir, strerror(e));
        return -e;
    }
    uid_t me = p ? p->uid : geteuid();
    if (st.st_uid != 0 && st.st_uid != me) {
        char name[64];
        snprintf(why, whysz,
                 "the directory %s of the control socket is owned by uid %u (%s), not by root "
                 "or uid %u: its owner could replace the socket",
                 dir, (unsigned)st.st_uid, privdrop_uname(st.st_uid, name, sizeof(name)),
                 (unsigned)me);
        return -EPERM;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
        snprintf(why, whysz,
                 "the directory %s of the control socket is writable by group or others "
                 "(mode %03o): anyone there could replace the socket; chmod go-w %s",
                 dir, (unsigned)(st.st_mode & 0777), dir);
        return -EPERM;
    }
    return 0;
}

int privdrop_apply(const struct privdrop *p, char *why, size_t whysz)
{
    /* Supplementary groups first (e.g. ssl-cert, so a reload can read the TLS key), then the
     * group, then the user: once the uid is gone, the group calls are refused. */
    if (initgroups(p->user, p->gid) < 0) {
        int e = errno;
        snprintf(why, whysz, "setgroups for user %s: %s", p->user, strerror(e));
        return -e;
    }
    if (setresgid(p->gid, p->gid, p->gid) < 0) {
        int e = errno;
        snprintf(why, whysz, "setgid %u: %s", (unsigned)p->gid, strerror(e));
        return -e;
    }
    if (setresuid(p->uid, p->uid, p->uid) < 0) {
        int e = errno;
        snprintf(why, whysz, "setuid %u: %s", (unsigned)p->uid, strerror(e));
        return -e;
    }
    uid_t r, e, s;
    gid_t gr, ge, gs;
    if (getresuid(&r, &e, &s) < 0 || getresgid(&gr, &ge, &gs) < 0 || r != p->uid || e != p->uid ||
        s != p->uid || gr != p->gid || ge != p->gid || gs != p->gid) {
        snprintf(why, whysz, "ids did not change to %u:%u", (unsigned)p->uid, (unsigned)p->gid);
        return -EPERM;
    }
    if (p->uid != 0 && setuid(0) == 0) {
        snprintf(why, whysz, "root could be regained after the switch to %s", p->user);
        return -EPERM;
    }
    return 0;
}

int privdrop_clear_caps(char *why, size_t whysz)
{
    /* Ambient first (they would come back on execve), then the sets themselves; lowering
     * capabilities is always allowed. glibc has no capset wrapper: the raw system call. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        int e = errno;
        snprintf(why, whysz, "cannot clear ambient capabilities: %s", strerror(e));
        return -e;
    }
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capset, &h, d) < 0) {
        int e = errno;
        snprintf(why, whysz, "cannot drop capabilities: %s", strerror(e));
        return -e;
    }
    return 0;
}
