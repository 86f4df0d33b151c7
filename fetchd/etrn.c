/* ETRN release step (see fetchd_etrn.h): resolve the relay host (or every MX host of each
 * domain), then one connection per host, driven by smtpc in SMTPC_MODE_ETRN, which sends
 * EHLO, one ETRN per domain and QUIT. Every domain gets its ETRN whatever the previous one
 * answered (fetchmail stops at the first 251; we do not). The connection's bytes are cut
 * into lines here; smtpc interprets them. One log line per host and domain.
 *
 * Lifetime: a run counts its pending DNS lookups and its open connections; when both are
 * zero it arms a zero timer, and the timer callback calls the owner back and closes the
 * timer, whose close callback frees the run. So the owner is never called from inside a
 * conn or dns callback of the run, and nothing is freed under a running callback.
 *
 * TLS and AUTH: smtpc runs the relay's `tls` policy (release_tls_policy). On its STARTTLS
 * action the connection switches to TLS (conn_start_tls) with the host name the target was
 * found under (the configured host or the MX host) as SNI and reference identifier, checked
 * or only logged as release_tls_verify() says; the rest of the chunk that carried the 220
 * and any partial line are dropped (RFC 3207 5). With an auth_user smtpc sends AUTH PLAIN
 * after the EHLO under TLS, never in clear. What goes wrong is logged here in words: the
 * handshake ("hostname mismatch"), authentication ("authentication failed user=..."). A
 * session that failed for a reason of its own (code 0, outcome FAIL: AUTH refused before
 * anything was sent) is fatal for its domains; a TLS failure is retried like an
 * unreachable relay.
 *
 * ATRN (mode = atrn, RFC 2645): the same connection, TLS and AUTH, then smtpc sends one
 * "ATRN d1,d2" (SMTPC_MODE_ATRN). On 250 (SMTPC_ACT_TURN) the connection is handed to an
 * ATRN session (atrn.h), which acts as its SMTP server until the relay quits or the
 * connection ends; the session's verdict is then every domain's. Other replies: see
 * fetchd_atrn_verdict. */
#include "fetchd_etrn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "conn.h"
#include "dns.h"
#include "hf_err.h"
#include "log.h"
#include "atrn.h"
#include "cram.h"
#include "smtpc.h"
#include "tls.h"

#define ETRN_ADDRS_MAX (2 * DNS_ADDR_MAX) /* A and AAAA of one host */
#define ETRN_LINE_MAX  1024               /* RFC 5321 4.5.3.1.5 says 512; be lenient */
#define ETRN_TEXT_LOG  300                /* reply text kept in a log line */

/* Verdict bits per domain, gathered over every host asked for it. */
enum { ETRN_SEEN_DONE = 1, ETRN_SEEN_RETRY = 2, ETRN_SEEN_FATAL = 4 };

struct etrn_target {
    struct fetchd_etrn_run *run;
    char host[MX_NAME_MAX + 1]; /* the relay's host or an MX host name */
    struct sockaddr_storage addrs[ETRN_ADDRS_MAX];
    size_t naddrs, next_addr;
    size_t *doms; /* indexes into run->domains */
    const char **args;
    size_t ndoms;
    struct conn *conn;
    int connect_err; /* the last connection attempt's error */
    struct smtpc sc;
    bool sc_live;
    struct atrn_sess *sess; /* ATRN: the turned connection's server side */
    int atrn_verdict;       /* ATRN: the session's verdict, once it ended (0: none) */
    bool answered;          /* results recorded */
    bool drop_input;        /* TLS just started: the rest of this read is discarded */
    char why[200];          /* what went wrong here (TLS), preferred to smtpc's generic text */
    char line[ETRN_LINE_MAX];
    size_t line_len;
    char label[MX_NAME_MAX + INET6_ADDRSTRLEN + 64]; /* "NAME[addr]:port", "mx=host" */
};

struct fetchd_etrn_run {
    uv_loop_t *loop;
    struct dns *dns;
    char *relay; /* the relay's name, for logs */
    char *host;  /* NULL: every MX host of each domain */
    int port;
    char *helo;
    uint64_t connect_timeout_ms, reply_timeout_ms;
    enum smtpc_tls tls;
    bool tls_verify;
    struct tls_ctx *tls_ctx;   /* borrowed */
    const char *auth_user;     /* borrowed (the relay's config) or NULL */
    const char *auth_password; /* borrowed (the runner's) or NULL */
    bool atrn;
    const char *local_mta; /* borrowed (the runner's config) */
    bool local_lmtp;
    char **domains;
    size_t ndomains;
    unsigned *seen; /* ETRN_SEEN_* per domain */
    enum release_verdict *verdict;
    struct etrn_target **targets;
    size_t ntargets;
    size_t lookups; /* DNS lookups pending */
    size_t active;  /* targets with a connection (attempt) open */
    bool cancelled, finishing;
    uv_timer_t done_timer;
    release_done_cb cb;
    void *arg;
};

struct etrn_lookup {
    struct fetchd_etrn_run *run;
    size_t dom; /* MX lookups: the domain asked for */
};

enum release_verdict fetchd_etrn_verdict(int code)
{
    if (code < 200 || code > 599)
        return RELEASE_RETRY;
    switch (code / 100) {
    case 2:
        return RELEASE_DONE;
    case 4:
        return code == 459 ? RELEASE_FATAL : RELEASE_RETRY;
    case 5:
        return RELEASE_FATAL;
    default:
        return RELEASE_RETRY;
    }
}

/* Copies reply text for a log line: control characters (the "\n" between the lines of a
 * multi-line reply) become spaces and '"' becomes '\'', so text="..." stays one field. */
static const char *etrn_log_text(const char *s, char *buf, size_t sz)
{
    size_t o = 0;
    for (; *s && o + 1 < sz; s++) {
        unsigned char ch = (unsigned char)*s;
        buf[o++] = ch < 0x20 || ch == 0x7f ? ' ' : ch == '"' ? '\'' : (char)ch;
    }
    buf[o] = '\0';
    return buf;
}

static void etrn_set_label(struct etrn_target *t, const struct sockaddr_storage *sa)
{
    char ip[INET6_ADDRSTRLEN];
    int port = conn_sockaddr_str((const struct sockaddr *)sa, ip, sizeof(ip));
    if (t->run->host)
        snprintf(t->label, sizeof(t->label), "%s[%s]:%d", t->run->relay, ip, port);
    else
        snprintf(t->label, sizeof(t->label), "%s[%s]:%d mx=%s", t->run->relay, ip, port, t->host);
}

/* Records one domain's answer from one host and logs it. code 0: no reply. */
static void etrn_record(struct etrn_target *t, size_t k, int code, const char *text,
                        enum release_verdict v)
{
    struct fetchd_etrn_run *run = t->run;
    size_t d = t->doms[k];
    run->seen[d] |= v == RELEASE_DONE    ? ETRN_SEEN_DONE
                    : v == RELEASE_FATAL ? ETRN_SEEN_FATAL
                                         : ETRN_SEEN_RETRY;
    char buf[ETRN_TEXT_LOG];
    etrn_log_text(text, buf, sizeof(buf));
    if (code)
        log_info("relay=%s domain=%s reply=%d text=\"%s\" verdict=%s", t->label, run->domains[d],
                 code, buf, release_verdict_name(v));
    else
        log_info("relay=%s domain=%s reply=none text=\"%s\" verdict=%s", t->label, run->domains[d],
                 buf, release_verdict_name(v));
}

/* The target's connection is over (or never opened): every domain gets its verdict. */
static void etrn_target_results(struct etrn_target *t)
{
    if (t->answered)
        return;
    t->answered = true;
    if (t->run->cancelled) { /* shutting down: nobody reads these verdicts */
        for (size_t k = 0; k < t->ndoms; k++)
            t->run->seen[t->doms[k]] |= ETRN_SEEN_RETRY;
        return;
    }
    if (!t->sc_live) {
        char why[160];
        snprintf(why, sizeof(why), "%s: %s",
                 t->connect_err ? "connect failed" : "no address to connect to",
                 t->connect_err ? uv_strerror(t->connect_err) : t->host);
        for (size_t k = 0; k < t->ndoms; k++)
            etrn_record(t, k, 0, why, RELEASE_RETRY);
        return;
    }
    for (size_t k = 0; k < t->ndoms; k++) {
        const struct smtpc_result *r = &t->sc.etrn_res[k];
        if (r->outcome != SMTPC_PENDING) {
            enum release_verdict v =
                !t->run->atrn ? fetchd_etrn_verdict(r->code)
                : r->code == 250
                    ? (t->atrn_verdict ? (enum release_verdict)t->atrn_verdict : RELEASE_RETRY)
                    : atrn_reply_verdict(r->code);
            etrn_record(t, k, r->code, r->text, v);
            continue;
        }
        /* No answer to this ETRN: the session ended first (a refused greeting or EHLO, 421,
         * a lost connection, TLS, AUTH). Its reason decides; without a reply code it is
         * temporary, unless smtpc itself refused for good (AUTH not possible). */
        const struct smtpc_result *s = &t->sc.session;
        bool ended = s->outcome != SMTPC_PENDING;
        int code = ended ? s->code : 0;
        enum release_verdict v = fetchd_etrn_verdict(code);
        if (ended && code == 0 && s->outcome == SMTPC_FAIL)
            v = RELEASE_FATAL;
        const char *text = t->why[0]             ? t->why
                           : ended && s->text[0] ? s->text
                                                 : "connection closed before the reply";
        etrn_record(t, k, code, text, v);
    }
}

static void etrn_on_done_timer(uv_timer_t *h);

/* Arms the completion when nothing is pending any more. */
static void etrn_maybe_finish(struct fetchd_etrn_run *run)
{
    if (run->lookups || run->active || run->finishing)
        return;
    run->finishing = true;
    uv_timer_start(&run->done_timer, etrn_on_done_timer, 0, 0);
}

/* Frees run and everything it owns (its timer is closed or was never started). */
static void etrn_run_free(struct fetchd_etrn_run *run)
{
    for (size_t i = 0; i < run->ntargets; i++) {
        struct etrn_target *t = run->targets[i];
        if (t->sc_live)
            smtpc_close(&t->sc);
        free(t->doms);
        free(t->args);
        free(t);
    }
    free(run->targets);
    for (size_t i = 0; i < run->ndomains; i++)
        free(run->domains[i]);
    free(run->domains);
    free(run->seen);
    free(run->verdict);
    free(run->relay);
    free(run->host);
    free(run->helo);
    free(run);
}

static void etrn_free(uv_handle_t *h)
{
    etrn_run_free(h->data);
}

static void etrn_on_done_timer(uv_timer_t *h)
{
    struct fetchd_etrn_run *run = h->data;
    for (size_t d = 0; d < run->ndomains; d++) {
        unsigned s = run->seen[d];
        /* One host that must be asked again outweighs another that answered. */
        run->verdict[d] = s & ETRN_SEEN_RETRY   ? RELEASE_RETRY
                          : s & ETRN_SEEN_DONE  ? RELEASE_DONE
                          : s & ETRN_SEEN_FATAL ? RELEASE_FATAL
                                                : RELEASE_RETRY;
    }
    run->cb(run->verdict, run->ndomains, run->cancelled, run->arg);
    uv_close((uv_handle_t *)h, etrn_free);
}

/* ---- one connection ---------------------------------------------------------------------- */

static void etrn_target_connect(struct etrn_target *t);
static void etrn_act(struct etrn_target *t);

static void etrn_on_tls_ready(struct conn *c, int status)
{
    struct etrn_target *t = conn_data(c);
    if (!t || !t->sc_live || t->sc.state == SMTPC_ST_DONE)
        return;
    struct tls_conn *tc = conn_tls(c);
    const char *vr = tc ? tls_verify_result_text(tc) : "";
    if (status < 0) {
        /* A refused certificate is the usual reason; say which check failed. */
        snprintf(t->why, sizeof(t->why), "TLS handshake failed%s%s%s", vr[0] ? ": " : "", vr,
                 t->run->tls_verify ? " (certificate checked)" : "");
        log_warn("relay=%s tls failed host=%s verify=%s reason=\"%s\"", t->label, t->host,
                 t->run->tls_verify ? "yes" : "no", vr[0] ? vr : hf_strerror(status));
        smtpc_on_closed(&t->sc, status);
        etrn_act(t);
        conn_close(c, true);
        return;
    }
    char subject[256];
    if (tls_peer_subject(tc, subject, sizeof(subject)) < 0)
        snprintf(subject, sizeof(subject), "-");
    log_info("relay=%s tls established version=%s cipher=%s verified=%s%s%s subject=\"%s\"",
             t->label, tls_version(tc), tls_cipher(tc), tls_peer_verified(tc) ? "yes" : "no",
             tls_peer_verified(tc) ? "" : " reason=", tls_peer_verified(tc) ? "" : vr, subject);
    smtpc_on_tls_ready(&t->sc);
    etrn_act(t);
}

/* Switches the target's connection to TLS for smtpc's STARTTLS action. */
static int etrn_start_tls(struct etrn_target *t)
{
    struct fetchd_etrn_run *run = t->run;
    struct tls_conn *tc;
    if (!run->tls_ctx || !t->conn || conn_is_closing(t->conn))
        return HF_ETLS;
    int rc = tls_conn_new(run->tls_ctx, false, t->host,
                          run->tls_verify ? TLS_VERIFY_CHAIN_AND_HOST : TLS_VERIFY_NONE, &tc);
    if (rc < 0)
        return rc;
    tls_conn_set_log_id(tc, run->relay);
    rc = conn_start_tls(t->conn, tc, etrn_on_tls_ready); /* takes tc */
    if (rc < 0)
        return rc;
    /* RFC 3207 5: nothing that came in clear after the 220 may be read as a reply. */
    t->drop_input = true;
    t->line_len = 0;
    return 0;
}

static void etrn_act(struct etrn_target *t)
{
    for (int guard = 0; guard < 1000; guard++) {
        unsigned act = smtpc_take_actions(&t->sc);
        if (!act)
            return;
        if (act & SMTPC_ACT_WRITE) {
            size_t len = 0;
            char *out = smtpc_out_take(&t->sc, &len);
            int rc = 0;
            if (out && len && t->conn && !conn_is_closing(t->conn))
                rc = conn_write(t->conn, out, len);
            if (out)
                explicit_bzero(out, len); /* may be the AUTH line */
            free(out);
            if (rc < 0) {
                smtpc_on_closed(&t->sc, rc);
                continue;
            }
        }
        if (act & SMTPC_ACT_STARTTLS) {
            int rc = etrn_start_tls(t);
            if (rc < 0) {
                log_warn("relay=%s cannot start TLS err=%s", t->label, hf_errname(rc));
                snprintf(t->why, sizeof(t->why), "cannot start TLS: %s", hf_strerror(rc));
                smtpc_on_closed(&t->sc, rc);
                continue;
            }
        }
        if (act & SMTPC_ACT_CLOSE) {
            if (t->conn && !conn_is_closing(t->conn))
                conn_close(t->conn, false);
        }
        if ((act & SMTPC_ACT_TURN) && t->conn && !conn_is_closing(t->conn)) {
            struct atrn_sess_params sp = {
                .loop = t->run->loop,
                .dns = t->run->dns,
                .conn = t->conn,
                .label = t->label,
                .relay = t->run->relay,
                .local_mta = t->run->local_mta,
                .lmtp = t->run->local_lmtp,
                .helo = t->run->helo,
                .timeout_ms = t->run->reply_timeout_ms,
                .size_max = ATRN_SIZE_MAX,
            };
            int rc = atrn_sess_start(&sp, &t->sess);
            if (rc < 0) {
                t->sess = NULL;
                log_err("relay=%s cannot take the server role err=%s", t->label, hf_errname(rc));
                conn_close(t->conn, true);
            }
        }
    }
}

/* After a reply to AUTH: one line that says how it went (never the credentials). */
static void etrn_log_auth(struct etrn_target *t)
{
    const struct smtpc_result *s = &t->sc.session;
    if (t->sc.state == SMTPC_ST_AUTH)
        return; /* a 334 answered with "*": the reply to that decides */
    if (s->outcome == SMTPC_PENDING) {
        log_info("relay=%s authenticated user=%s", t->label, t->run->auth_user);
        return;
    }
    char buf[ETRN_TEXT_LOG];
    log_warn("relay=%s authentication failed user=%s reply=%d text=\"%s\"", t->label,
             t->run->auth_user, s->code, etrn_log_text(s->text, buf, sizeof(buf)));
}

static void etrn_on_read(struct conn *c, const char *data, size_t len)
{
    struct etrn_target *t = conn_data(c);
    if (t && t->sess) {
        atrn_sess_on_read(t->sess, data, len);
        return;
    }
    if (!t || !t->sc_live)
        return;
    for (size_t i = 0; i < len; i++) {
        if (t->sess) { /* turned (ATRN 250): the rest belongs to the server side */
            atrn_sess_on_read(t->sess, data + i, len - i);
            return;
        }
        if (t->sc.state == SMTPC_ST_DONE)
            return;
        char ch = data[i];
        if (ch == '\n') {
            size_t l = t->line_len;
            if (l && t->line[l - 1] == '\r')
                l--;
            t->line_len = 0;
            enum smtpc_state before = t->sc.state;
            smtpc_on_line(&t->sc, t->line, l);
            if (before == SMTPC_ST_AUTH)
                etrn_log_auth(t);
            etrn_act(t);
            if (t->drop_input) {
                t->drop_input = false;
                return; /* the rest of this read came in clear after the 220 */
            }
            continue;
        }
        if (t->line_len >= sizeof(t->line) - 1) {
            smtpc_on_closed(&t->sc, HF_EPROTO);
            etrn_act(t);
            conn_close(c, true);
            return;
        }
        t->line[t->line_len++] = ch;
    }
}

static void etrn_on_eof(struct conn *c, int status)
{
    struct etrn_target *t = conn_data(c);
    if (t && t->sc_live && t->sc.state != SMTPC_ST_DONE) {
        smtpc_on_closed(&t->sc, status == UV_EOF ? -ECONNRESET : status);
        etrn_act(t);
    }
    conn_close(c, true);
}

static void etrn_on_timeout(struct conn *c)
{
    struct etrn_target *t = conn_data(c);
    if (t && t->sc_live && t->sc.state != SMTPC_ST_DONE) {
        log_info("relay=%s timeout in state %s", t->label, smtpc_state_name(t->sc.state));
        smtpc_on_closed(&t->sc, -ETIMEDOUT);
        etrn_act(t);
    }
    conn_close(c, true);
}

static void etrn_on_connect(struct conn *c, int status)
{
    struct etrn_target *t = conn_data(c);
    struct fetchd_etrn_run *run = t->run;
    if (status < 0) {
        t->connect_err = status;
        log_info("relay=%s connect failed err=%s (%s)", t->label, hf_errname(status),
                 uv_strerror(status));
        return; /* conn.c closes it; etrn_on_close tries the next address */
    }
    struct smtpc_opts o = {
        .mode = run->atrn ? SMTPC_MODE_ATRN : SMTPC_MODE_ETRN,
        .helo = run->helo,
        .log_id = t->label,
        .tls = run->tls,
        .etrn = t->args,
        .netrn = t->ndoms,
        .auth_user = run->auth_user,
        .auth_pass = run->auth_user ? run->auth_password : NULL,
        .cram = run->atrn ? cram_md5_response : NULL, /* RFC 2645 names CRAM-MD5 */
    };
    int rc = smtpc_init(&t->sc, &o);
    if (rc < 0) {
        log_err("relay=%s cannot start the SMTP client err=%s", t->label, hf_errname(rc));
        t->connect_err = rc;
        conn_close(c, true);
        return;
    }
    t->sc_live = true;
    t->line_len = 0;
    log_debug("relay=%s connected", t->label);
    conn_read_start(c);
    conn_set_timeout(c, run->reply_timeout_ms);
}

static void etrn_on_close(struct conn *c)
{
    struct etrn_target *t = conn_data(c);
    if (!t)
        return;
    struct fetchd_etrn_run *run = t->run;
    t->conn = NULL;
    run->active--;
    if (t->sess) {
        t->atrn_verdict = (int)atrn_sess_finish(t->sess);
        t->sess = NULL;
    }
    /* Only a connection that never opened moves on to the host's next address. */
    if (!t->sc_live && !run->cancelled && t->next_addr < t->naddrs) {
        etrn_target_connect(t);
    } else {
        etrn_target_results(t);
    }
    etrn_maybe_finish(run);
}

static const struct conn_ops etrn_conn_ops = {
    .on_read = etrn_on_read,
    .on_eof = etrn_on_eof,
    .on_timeout = etrn_on_timeout,
    .on_connect = etrn_on_connect,
    .on_close = etrn_on_close,
};

/* Tries the target's next addresses until a connection attempt starts; records the
 * results when none is left. */
static void etrn_target_connect(struct etrn_target *t)
{
    struct fetchd_etrn_run *run = t->run;
    while (t->next_addr < t->naddrs) {
        const struct sockaddr_storage *sa = &t->addrs[t->next_addr++];
        etrn_set_label(t, sa);
        struct conn *c;
        int rc = conn_connect(run->loop, (const struct sockaddr *)sa, run->connect_timeout_ms,
                              &etrn_conn_ops, t, &c);
        if (rc == 0) {
            t->conn = c;
            run->active++;
            return;
        }
        t->connect_err = rc;
        log_info("relay=%s connect failed err=%s (%s)", t->label, hf_errname(rc), uv_strerror(rc));
    }
    etrn_target_results(t);
}

/* ---- targets from DNS -------------------------------------------------------------------- */

static struct etrn_target *etrn_target_get(struct fetchd_etrn_run *run, const char *host)
{
    for (size_t i = 0; i < run->ntargets; i++)
        if (strcmp(run->targets[i]->host, host) == 0)
            return run->targets[i];
    struct etrn_target **v = realloc(run->targets, (run->ntargets + 1) * sizeof(*v));
    if (!v)
        return NULL;
    run->targets = v;
    struct etrn_target *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->run = run;
    snprintf(t->host, sizeof(t->host), "%s", host);
    snprintf(t->label, sizeof(t->label), "%s[%s]:%d", run->relay, host, run->port);
    v[run->ntargets++] = t;
    return t;
}

static int etrn_target_add_domain(struct etrn_target *t, size_t dom)
{
    for (size_t k = 0; k < t->ndoms; k++)
        if (t->doms[k] == dom)
            return 0;
    size_t *d = realloc(t->doms, (t->ndoms + 1) * sizeof(*d));
    if (!d)
        return -ENOMEM;
    t->doms = d;
    const char **a = realloc(t->args, (t->ndoms + 1) * sizeof(*a));
    if (!a)
        return -ENOMEM;
    t->args = a;
    d[t->ndoms] = dom;
    a[t->ndoms] = t->run->domains[dom];
    t->ndoms++;
    return 0;
}

static void etrn_target_add_addrs(struct etrn_target *t, const struct sockaddr_storage *addrs,
                                  size_t n, int port)
{
    for (size_t i = 0; i < n && t->naddrs < ETRN_ADDRS_MAX; i++) {
        struct sockaddr_storage sa = addrs[i];
        if (sa.ss_family == AF_INET)
            ((struct sockaddr_in *)(void *)&sa)->sin_port = htons((uint16_t)port);
        else if (sa.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)(void *)&sa)->sin6_port = htons((uint16_t)port);
        else
            continue;
        t->addrs[t->naddrs++] = sa;
    }
}

/* Every lookup is in: open one connection per host. */
static void etrn_lookups_done(struct fetchd_etrn_run *run)
{
    if (run->lookups || run->cancelled)
        return;
    for (size_t i = 0; i < run->ntargets; i++)
        etrn_target_connect(run->targets[i]);
}

static void etrn_on_addr(const struct dns_addr_result *res, void *arg)
{
    struct etrn_lookup *lk = arg;
    struct fetchd_etrn_run *run = lk->run;
    free(lk);
    run->lookups--;
    if (res->status == -ECANCELED || run->cancelled) {
        etrn_maybe_finish(run);
        return;
    }
    struct etrn_target *t = etrn_target_get(run, run->host);
    int rc = t ? 0 : -ENOMEM;
    for (size_t d = 0; d < run->ndomains && rc == 0; d++)
        rc = etrn_target_add_domain(t, d);
    if (rc < 0 || res->status < 0) {
        int err = rc < 0 ? rc : res->status;
        log_info("relay=%s host=%s lookup failed err=%s (%s)", run->relay, run->host,
                 hf_errname(err), hf_strerror(err));
        for (size_t d = 0; d < run->ndomains; d++)
            run->seen[d] |= ETRN_SEEN_RETRY;
        if (t)
            t->answered = true; /* logged above; nothing to connect to */
    } else {
        etrn_target_add_addrs(t, res->addrs, res->naddrs, run->port);
    }
    etrn_lookups_done(run);
    etrn_maybe_finish(run);
}

static void etrn_on_mx(const struct dns_mx_result *res, void *arg)
{
    struct etrn_lookup *lk = arg;
    struct fetchd_etrn_run *run = lk->run;
    size_t d = lk->dom;
    free(lk);
    run->lookups--;
    if (res->status == -ECANCELED || run->cancelled) {
        etrn_maybe_finish(run);
        return;
    }
    const char *dom = run->domains[d];
    if (res->status < 0) {
        /* NXDOMAIN: the domain is not in DNS, asking again will not change that. */
        bool fatal = res->status == HF_EDNS;
        log_info("relay=%s domain=%s mx lookup failed err=%s (%s) verdict=%s", run->relay, dom,
                 hf_errname(res->status), hf_strerror(res->status), fatal ? "fatal" : "retry");
        run->seen[d] |= fatal ? ETRN_SEEN_FATAL : ETRN_SEEN_RETRY;
    } else {
        bool any = false, temp = false;
        for (size_t i = 0; i < res->nhosts; i++) {
            const struct mx_host *h = &res->hosts[i];
            if (mx_host_is_null(h)) {
                log_info("relay=%s domain=%s null MX: the domain takes no mail verdict=fatal",
                         run->relay, dom);
                continue;
            }
            if (h->err < 0 || h->naddrs == 0) {
                temp = temp || h->err == HF_EDNSTEMP;
                log_info("relay=%s domain=%s mx=%s has no usable address err=%s", run->relay, dom,
                         h->name, hf_errname(h->err ? h->err : -ENOENT));
                continue;
            }
            struct etrn_target *t = etrn_target_get(run, h->name);
            if (!t || etrn_target_add_domain(t, d) < 0) {
                temp = true;
                continue;
            }
            etrn_target_add_addrs(t, h->addrs, h->naddrs, run->port);
            any = true;
        }
        if (!any)
            run->seen[d] |= temp ? ETRN_SEEN_RETRY : ETRN_SEEN_FATAL;
    }
    etrn_lookups_done(run);
    etrn_maybe_finish(run);
}

/* ---- start and cancel -------------------------------------------------------------------- */

int fetchd_etrn_start(const struct release_params *p, release_done_cb cb, void *arg,
                      struct fetchd_etrn_run **out)
{
    if (!p->ndomains || !p->domains)
        return -EINVAL;
    for (size_t i = 0; i < p->ndomains; i++)
        if (!p->domains[i] || !p->domains[i][0] || strpbrk(p->domains[i], " \t\r\n"))
            return -EINVAL;
    struct fetchd_etrn_run *run = calloc(1, sizeof(*run));
    if (!run)
        return -ENOMEM;
    run->loop = p->loop;
    run->dns = p->dns;
    run->port = (int)release_port(p->relay);
    run->connect_timeout_ms = p->connect_timeout_ms;
    run->reply_timeout_ms = p->reply_timeout_ms;
    run->tls = release_tls_policy(p->relay);
    run->tls_verify = release_tls_verify(p->relay);
    run->tls_ctx = p->tls_ctx;
    if (p->relay->auth_user && p->relay->auth_user[0] && p->auth_password) {
        run->auth_user = p->relay->auth_user;
        run->auth_password = p->auth_password;
    }
    run->atrn = p->relay->mode && strcmp(p->relay->mode, "atrn") == 0;
    run->local_mta = p->local_mta;
    run->local_lmtp = p->local_lmtp;
    run->cb = cb;
    run->arg = arg;
    run->relay = strdup(p->relay->name);
    run->helo = strdup(p->helo);
    if (p->relay->host && p->relay->host[0])
        run->host = strdup(p->relay->host);
    run->domains = calloc(p->ndomains, sizeof(*run->domains));
    run->seen = calloc(p->ndomains, sizeof(*run->seen));
    run->verdict = calloc(p->ndomains, sizeof(*run->verdict));
    if (!run->relay || !run->helo || (p->relay->host && p->relay->host[0] && !run->host) ||
        !run->domains || !run->seen || !run->verdict)
        goto nomem;
    for (size_t i = 0; i < p->ndomains; i++) {
        run->domains[i] = strdup(p->domains[i]);
        if (!run->domains[i])
            goto nomem;
        run->ndomains++;
    }
    /* Every lookup is counted before any is started: a callback never sees zero early. */
    size_t want = run->host ? 1 : run->ndomains;
    struct etrn_lookup **lks = calloc(want, sizeof(*lks));
    if (!lks)
        goto nomem;
    for (size_t i = 0; i < want; i++) {
        lks[i] = calloc(1, sizeof(**lks));
        if (!lks[i]) {
            for (size_t j = 0; j < i; j++)
                free(lks[j]);
            free(lks);
            goto nomem;
        }
        lks[i]->run = run;
        lks[i]->dom = i;
    }
    uv_timer_init(run->loop, &run->done_timer);
    run->done_timer.data = run;
    run->lookups = want;
    for (size_t i = 0; i < want; i++) {
        int rc = run->host ? dns_addr_resolve(run->dns, run->host, etrn_on_addr, lks[i])
                           : dns_mx_resolve(run->dns, run->domains[i], etrn_on_mx, lks[i]);
        if (rc < 0) {
            /* Failed at once: no callback will come for this one. */
            free(lks[i]);
            run->lookups--;
            log_info("relay=%s %s=%s lookup failed err=%s", run->relay,
                     run->host ? "host" : "domain", run->host ? run->host : run->domains[i],
                     hf_errname(rc));
            if (run->host)
                for (size_t d = 0; d < run->ndomains; d++)
                    run->seen[d] |= rc == -ENOMEM ? ETRN_SEEN_RETRY : ETRN_SEEN_FATAL;
            else
                run->seen[i] |= rc == -ENOMEM ? ETRN_SEEN_RETRY : ETRN_SEEN_FATAL;
        }
    }
    free(lks);
    etrn_lookups_done(run);
    etrn_maybe_finish(run); /* only arms the timer: the callback runs from the loop */
    *out = run;
    return 0;
nomem:
    etrn_run_free(run); /* no target exists yet, no timer was started */
    return -ENOMEM;
}

void fetchd_etrn_cancel(struct fetchd_etrn_run *r)
{
    if (!r || r->cancelled)
        return;
    r->cancelled = true;
    for (size_t i = 0; i < r->ntargets; i++)
        if (r->targets[i]->conn)
            conn_close(r->targets[i]->conn, true);
}
