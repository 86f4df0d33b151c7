/* sd_notify(3) wrappers. Why libsystemd rather than writing the NOTIFY_SOCKET datagram by
 * hand: its sd_notify is the reference implementation of the protocol (abstract "@" sockets,
 * credentials passing, and the transports later systemd versions add) and is on every Debian
 * machine that runs systemd; a hand-written sender would duplicate it and lag behind it.
 * The environment is left as it is (unset_environment = 0) so each call finds the socket. */
#include "sdnotify.h"

#include <stdint.h>
#include <time.h>

#include <systemd/sd-daemon.h>

int sdnotify_ready(const char *status)
{
    if (status)
        return sd_notifyf(0, "READY=1\nSTATUS=%s", status);
    return sd_notify(0, "READY=1");
}

int sdnotify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    return sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
                      (unsigned long long)usec);
}

int sdnotify_stopping(void)
{
    return sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
}

int sdnotify_status(const char *status)
{
    return sd_notifyf(0, "STATUS=%s", status);
}
