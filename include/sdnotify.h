/* Readiness and state notification to systemd (sd_notify(3), libsystemd).
 *
 * With Type=notify, systemd waits for READY=1 before it counts relayd (or fetchd) as
 * started, so units ordered after it start only once the listeners and the queue are up.
 * RELOADING=1 ... READY=1 brackets a SIGHUP reload; STOPPING=1 starts the shutdown. Outside
 * systemd (no NOTIFY_SOCKET) every call does nothing and returns 0. */
#ifndef HF_SDNOTIFY_H
#define HF_SDNOTIFY_H

/* Sends READY=1 with STATUS=status (borrowed, may be NULL). */
int sdnotify_ready(const char *status);
/* Sends RELOADING=1 with MONOTONIC_USEC (the form systemd's Type=notify-reload expects). */
int sdnotify_reloading(void);
/* Sends STOPPING=1. */
int sdnotify_stopping(void);
/* Sends STATUS=status (borrowed). */
int sdnotify_status(const char *status);

/* Each returns 0 when there is no NOTIFY_SOCKET, 1 when the datagram was sent, or a
 * negative errno (logged once per kind of message by the caller if it wants). */

#endif
