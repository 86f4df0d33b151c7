/* ETRN's glue: answers the ETRN command for smtpd_io (through relayd.etrn) by starting queue
 * runs (flush.h) as etrn.c decides. */
#ifndef HF_ETRN_IO_H
#define HF_ETRN_IO_H

#include "relayd.h"

/* Parses etrn_allow / etrn_trusted and installs the ETRN handler. Returns 0, HF_ECONFIG
 * (logged), -ENOMEM. */
int etrn_io_init(struct relayd *rd);
/* SIGHUP: parses c's etrn_allow / etrn_trusted and, when both are good, puts them in place of
 * the running lists (borrows c during the call). Returns 0, or HF_ECONFIG with the bad entry
 * logged and the running lists kept, or -ENOMEM. */
int etrn_io_reload(struct relayd *rd, const struct cfg *c);
/* Stops answering ETRN (later ones get 458). */
void etrn_io_shutdown(struct relayd *rd);
void etrn_io_free(struct relayd *rd);

#endif
