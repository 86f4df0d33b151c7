/* Error codes shared by every module.
 *
 * Functions return 0 or a negative code: -errno values (the same convention libuv uses,
 * so its codes pass through untouched) or the project codes below, from -5000 downward.
 * hf_strerror() gives a sentence, hf_errname() the short name logged as err=NAME. */
#ifndef HF_ERR_H
#define HF_ERR_H

enum hf_err {
    HF_ELONGLINE = -5000, /* a command or text line over its RFC 5321 4.5.3.1 limit */
    HF_EBARELF = -5001,   /* bare LF or bare CR where only CRLF may end a line */
    HF_ETLS = -5002,      /* TLS failure; details logged by tls.c */
    HF_ESYNTAX = -5003,   /* syntax error in a command or its arguments */
    HF_EUNKNOWN = -5004,  /* unknown command verb */
    HF_EPARAM = -5005,    /* unknown or unsupported ESMTP parameter */
    HF_ETOOBIG = -5006,   /* a size limit was exceeded */
    HF_ECONFIG = -5007,   /* configuration error */
    HF_ECORRUPT = -5008,  /* stored data is corrupt or of a foreign format */
    HF_EDNS = -5009,      /* DNS lookup failed permanently */
    HF_EDNSTEMP = -5010,  /* DNS lookup failed temporarily */
    HF_ENULLMX = -5011,   /* the domain publishes a null MX (RFC 7505) */
    HF_EPROTO = -5012,    /* the peer broke the SMTP protocol */
    HF_EADDR = -5013,     /* bad mailbox or domain syntax */
    HF_ERELAY = -5014,    /* address would make us an open relay */
    HF_EVERSION = -5015,  /* stored data written by an incompatible version */
    HF_ELAST = -5016,
};

/* Returns a static sentence for code (negative errno, libuv or HF_E*); never NULL. */
const char *hf_strerror(int code);

/* Returns the short static name of code ("ENOSPC", "ELONGLINE"); never NULL. */
const char *hf_errname(int code);

#endif
