/* The client side of relayd's control socket (see ctl.h for the protocol), for relayctl.
 * Blocking: relayctl is a command-line tool with nothing else to do meanwhile. */
#ifndef HF_CTLCLIENT_H
#define HF_CTLCLIENT_H

/* Called for each answer line (without the newline), "end" excluded. */
typedef void (*ctlclient_line_cb)(const char *line, void *arg);

/* Connects to the Unix socket at path, sends request (one line, without newline; borrowed)
 * and calls cb for every answer line until "end". timeout_s bounds each wait for data
 * (0: no bound, for FLUSH ... WAIT). Returns 0, or:
 *   -ENOENT / -ECONNREFUSED  relayd is not running (no socket, or nobody listening)
 *   -EACCES                  the socket's permissions do not let this user in
 *   -EPROTO                  relayd closed the connection before "end"
 *   -ETIMEDOUT, -ENAMETOOLONG, other -errno */
int ctlclient_request(const char *path, const char *request, int timeout_s, ctlclient_line_cb cb,
                      void *arg);

#endif
