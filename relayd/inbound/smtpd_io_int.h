/* Between smtpd_io.c (sessions) and smtpd_listen.c (listeners) only. */
#ifndef HF_SMTPD_IO_INT_H
#define HF_SMTPD_IO_INT_H

#include <stdbool.h>

#include <uv.h>

/* What a listener serves (rd->listener_kind). */
enum { SMTPD_IO_SMTP = 0, SMTPD_IO_SMTP_TLS, SMTPD_IO_ODMR, SMTPD_IO_ODMR_TLS };

/* A connection is waiting on server: accept it as an SMTP or ODMR session, in TLS from the
 * first octet when implicit_tls. */
void smtpd_io_accept(uv_stream_t *server, int status, bool implicit_tls, bool odmr);

#endif
