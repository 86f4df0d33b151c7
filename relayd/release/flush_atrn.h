/* ATRN's release (RFC 2645): decides an authenticated ODMR client's ATRN with atrn.c and
 * what only the queue and the running releases know, and on 250 turns the client's own
 * connection into a queue run's connection (flush_conn_adopt): the relay becomes the SMTP
 * client and delivers the domains' held mail exactly as a flush would (per-recipient
 * outcomes, logging, DSNs), one release per domain at a time across ETRN, ATRN, relayctl
 * and the retry timer. */
#ifndef HF_FLUSH_ATRN_H
#define HF_FLUSH_ATRN_H

#include "relayd.h"

/* Sets rd->atrn and rd->atrn_begin (after flush_init). */
void flush_atrn_install(struct relayd *rd);

#endif
