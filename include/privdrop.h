/* Privilege drop: a daemon started as root opens what needs root (ports below 1024, the
 * queue, TLS keys, the control socket), then becomes an unprivileged user for good.
 *
 * privdrop_resolve() looks the user and group up; privdrop_own() hands a file or directory
 * the daemon made as root to that user after checking who owns it now; privdrop_apply()
 * switches group, supplementary groups and user (in that order: after setuid the others are
 * no longer allowed) and checks that root cannot be regained. Errors come with a sentence
 * in the caller's buffer, for one clear log line. */
#ifndef HF_PRIVDROP_H
#define HF_PRIVDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct privdrop {
    char user[64];
    char group[64];
    uid_t uid;
    gid_t gid;
};

/* Looks up user (a name or a number) and group (a name, a number, or NULL/"" for the user's
 * primary group) into *out. Returns 0, -ENOENT (no such user or group), -EINVAL (empty user),
 * with a sentence in why. */
int privdrop_resolve(const char *user, const char *group, struct privdrop *out, char *why,
                     size_t whysz);

/* Checks path (a directory, or a socket or file with what = "file") and gives it to p's
 * user and group when it belongs to root or already to that user. Anything owned by a third
 * user is refused (-EPERM, "owned by uid N (name)"): the daemon never takes over another
 * user's files. With recurse, the regular files directly inside the directory are handled the
 * same way (the queue's data.mdb and lock.mdb). Returns 0 or a negative code with why. */
int privdrop_own(const struct privdrop *p, const char *path, bool recurse, char *why, size_t whysz);

/* Checks that the directory holding path (a socket) cannot be written by anyone but root or
 * p's user (p may be NULL: root and the current user): otherwise another user could replace
 * the socket. A sticky directory (/tmp) is accepted. Returns 0, -EPERM with why. */
int privdrop_check_dir(const struct privdrop *p, const char *path, char *why, size_t whysz);

/* Becomes p's user: setgroups (the user's supplementary groups, with p->gid), setgid,
 * setuid; then checks that real, effective and saved ids all changed and that setuid(0)
 * fails. Returns 0, or a negative errno with why (the process must then exit). */
int privdrop_apply(const struct privdrop *p, char *why, size_t whysz);

/* For a daemon started unprivileged with capabilities (systemd's AmbientCapabilities=
 * CAP_NET_BIND_SERVICE): drops every capability (ambient, effective, permitted, inheritable)
 * once the ports are bound. Returns 0 or a negative errno with why. */
int privdrop_clear_caps(char *why, size_t whysz);

#endif
