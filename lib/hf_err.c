/* Names and sentences for error codes: project codes from the table below, negative errno
 * values through strerror()/strerrorname_np(). */
#include "hf_err.h"

#include <errno.h>
#include <string.h>

struct hf_err_desc {
    int code;
    const char *name;
    const char *text;
};

static const struct hf_err_desc hf_errs[] = {
    {HF_ELONGLINE, "ELONGLINE", "line too long"},
    {HF_EBARELF, "EBARELF", "bare LF or CR in line"},
    {HF_ETLS, "ETLS", "TLS failure"},
    {HF_ESYNTAX, "ESYNTAX", "syntax error"},
    {HF_EUNKNOWN, "EUNKNOWN", "unknown command"},
    {HF_EPARAM, "EPARAM", "unknown or unsupported parameter"},
    {HF_ETOOBIG, "ETOOBIG", "size limit exceeded"},
    {HF_ECONFIG, "ECONFIG", "configuration error"},
    {HF_ECORRUPT, "ECORRUPT", "stored data corrupt or foreign"},
    {HF_EDNS, "EDNS", "DNS lookup failed"},
    {HF_EDNSTEMP, "EDNSTEMP", "temporary DNS failure"},
    {HF_ENULLMX, "ENULLMX", "domain accepts no mail (null MX)"},
    {HF_EPROTO, "EPROTO", "SMTP protocol error"},
    {HF_EADDR, "EADDR", "bad address syntax"},
    {HF_ERELAY, "ERELAY", "relaying denied"},
    {HF_EVERSION, "EVERSION", "incompatible stored data version"},
};

static const struct hf_err_desc *hf_err_find(int code)
{
    for (size_t i = 0; i < sizeof(hf_errs) / sizeof(hf_errs[0]); i++)
        if (hf_errs[i].code == code)
            return &hf_errs[i];
    return NULL;
}

const char *hf_strerror(int code)
{
    const struct hf_err_desc *d = hf_err_find(code);
    if (d)
        return d->text;
    if (code == 0)
        return "success";
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}

const char *hf_errname(int code)
{
    const struct hf_err_desc *d = hf_err_find(code);
    if (d)
        return d->name;
    if (code == 0)
        return "OK";
    if (code < 0 && code > -4096) {
        const char *n = strerrorname_np(-code);
        return n ? n : "EUNKNOWN";
    }
    return "EUNKNOWN";
}
