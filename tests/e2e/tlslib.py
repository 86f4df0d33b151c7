"""Helpers for the TLS and AUTH end-to-end tests (tests/e2e/test_tls_*.py, issue 5).

Everything runs on loopback with software nobody in this project wrote:

  PKI        a test CA and certificates made at test time with the `openssl` CLI in a
             temporary directory: relayd's own certificate (relay.holdfast.test), a second one
             with another CN (for the SIGHUP reload), MX certificates signed by the CA for
             mx.good.test and mx.optional.test, one for wrong.test (served by an MX named
             mx.wrongname.test: host name mismatch), an expired one for mx.expired.test
             (`openssl ca -startdate/-enddate` in the past) and a self-signed one
             (mx.selfsigned.test, not from the CA).
  TLSSinks   python3-aiosmtpd receiving servers on 127.0.0.x, all on one port, each with
             its own STARTTLS setting (no TLS, STARTTLS offered, STARTTLS required) and
             certificate; every message records whether it came over TLS and how.
  TLSRelaydCase
             an etrnlib.ETRNTestCase whose relayd gets tls_cert/tls_key (copies in its own
             directory, so a test can replace them), tls_ca_file (the test CA), an optional
             implicit-TLS listener and an optional auth_file made with
             `relayd --hash-password`.
  clients    ssl contexts trusting the test CA; `openssl s_client` runs (bounded); a raw
             SMTP dialogue (hfharness.RawSMTP) that can switch its socket to TLS in place.

Environment: HF_BIN_DIR, HF_SOURCE_DIR, HF_SANITIZE=1 (every bound is multiplied by SLOW).
Only /usr/bin/python3 sees Debian's aiosmtpd and dnslib. No sleeps synchronise anything.
"""

import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import hfharness  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

bound = etrnlib.bound
SLOW = etrnlib.SLOW
HOSTNAME = etrnlib.HOSTNAME
CLIENT_NAME = etrnlib.CLIENT_NAME
RELAYD = etrnlib.RELAYD
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

# The name relayd's certificate carries, and the CN of the one swapped in by SIGHUP.
SERVER_CN = HOSTNAME
RELOAD_CN = "reloaded.holdfast.test"

USERS = {
    # user -> (password, domains it may release)
    "alice": ("correct horse battery staple", "branch.test"),
    "bob": ("hunter2-but-longer", "backup.test,open.test"),
}


def run(cmd, input_bytes=None, seconds=30, check=True):
    """Runs cmd (bounded); returns CompletedProcess with bytes output."""
    r = subprocess.run(cmd, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=bound(seconds))
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(cmd), r.returncode,
                                                      r.stdout.decode("utf-8", "replace"),
                                                      r.stderr.decode("utf-8", "replace")))
    return r


# ---- certificates -------------------------------------------------------------------------

_OPENSSL_CNF = """\
[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[ ca ]
default_ca = test_ca

[ test_ca ]
dir = %(dir)s
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[ policy_any ]
commonName = supplied
"""

_LEAF_EXT = """\
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = %(san)s
"""


class Cert:
    def __init__(self, name, cert, key):
        self.name = name
        self.cert = cert
        self.key = key

    def server_context(self):
        """An ssl server context serving this certificate (aiosmtpd's tls_context)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def __repr__(self):
        return "Cert(%s)" % self.name


class PKI:
    """A test CA and its certificates in a temporary directory (removed by cleanup())."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hf-pki-")
        self.cnf = os.path.join(self.dir, "openssl.cnf")
        self.ca_cert = os.path.join(self.dir, "ca.pem")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.certs = {}

    def _key(self, path):
        run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path])

    def make(self):
        with open(self.cnf, "w") as f:
            f.write(_OPENSSL_CNF % {"dir": self.dir})
        os.mkdir(os.path.join(self.dir, "newcerts"))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self._key(self.ca_key)
        run([OPENSSL, "req", "-x509", "-new", "-config", self.cnf, "-extensions", "v3_ca",
             "-key", self.ca_key, "-subj", "/CN=holdfast test CA", "-days", "30", "-sha256",
             "-out", self.ca_cert])
        self.leaf("server", SERVER_CN)
        self.leaf("reload", RELOAD_CN)
        self.leaf("good", "mx.good.test")
        self.leaf("optional", "mx.optional.test")
        self.leaf("wrong", "wrong.test")
        self.leaf("expired", "mx.expired.test", expired=True)
        self.self_signed("selfsigned", "mx.selfsigned.test")
        return self

    def leaf(self, tag, cn, sans=None, expired=False):
        """A certificate for cn (and DNS SANs: cn plus sans) signed by the test CA. Expired
        ones are valid from 2020-01-01 to 2020-01-02 (`openssl ca -startdate -enddate`:
        `openssl x509 -req -days` cannot go into the past)."""
        key = os.path.join(self.dir, tag + ".key")
        csr = os.path.join(self.dir, tag + ".csr")
        crt = os.path.join(self.dir, tag + ".pem")
        ext = os.path.join(self.dir, tag + ".ext")
        self._key(key)
        with open(ext, "w") as f:
            f.write(_LEAF_EXT % {"san": ",".join("DNS:" + n for n in [cn] + list(sans or []))})
        run([OPENSSL, "req", "-new", "-config", self.cnf, "-key", key, "-subj", "/CN=" + cn,
             "-out", csr])
        dates = (["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"] if expired
                 else ["-days", "30"])
        run([OPENSSL, "ca", "-batch", "-notext", "-config", self.cnf, "-in", csr, "-out", crt,
             "-extfile", ext, "-extensions", "leaf"] + dates)
        c = Cert(cn, crt, key)
        self.certs[tag] = c
        return c

    def self_signed(self, tag, cn):
        key = os.path.join(self.dir, tag + ".key")
        crt = os.path.join(self.dir, tag + ".pem")
        self._key(key)
        run([OPENSSL, "req", "-x509", "-new", "-config", self.cnf, "-key", key,
             "-subj", "/CN=" + cn, "-addext", "subjectAltName=DNS:" + cn,
             "-addext", "extendedKeyUsage=serverAuth", "-days", "30", "-out", crt])
        c = Cert(cn, crt, key)
        self.certs[tag] = c
        return c

    def __getitem__(self, tag):
        return self.certs[tag]

    def client_context(self, check_hostname=False, minimum=None, maximum=None):
        """A client context trusting only the test CA. smtplib's starttls() names the host
        it connected to (127.0.0.1) as server_hostname, so by default only the chain is
        checked; tests look at the certificate's names themselves."""
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        ctx.check_hostname = check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
        return ctx

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def peer_cn(sslsock):
    """The CN of the certificate the peer of sslsock presented (verified chains only)."""
    cert = sslsock.getpeercert()
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def peer_sans(sslsock):
    return [v for k, v in sslsock.getpeercert().get("subjectAltName", ()) if k == "DNS"]


# ---- credentials --------------------------------------------------------------------------

_AUTH_LINES = {}
_AUTH_LOCK = threading.Lock()


def credentials_line(user, password, domains):
    """`relayd --hash-password USER DOMAINS` with the password on stdin (cached)."""
    key = (user, password, domains)
    with _AUTH_LOCK:
        if key in _AUTH_LINES:
            return _AUTH_LINES[key]
    if not os.path.exists(RELAYD):
        raise unittest.SkipTest("relayd not built at %s" % RELAYD)
    r = run([RELAYD, "--hash-password", user, domains], input_bytes=password.encode() + b"\n")
    line = r.stdout.decode().strip()
    if not re.match(r"^%s:\$scrypt\$[^:]+:%s$" % (re.escape(user), re.escape(domains)), line):
        raise AssertionError("relayd --hash-password printed %r" % line)
    with _AUTH_LOCK:
        _AUTH_LINES[key] = line
    return line


# ---- receiving servers with STARTTLS -----------------------------------------------------

class TLSSink(etrnlib.Sink):
    """etrnlib's recording sink, with STARTTLS: tls is a Cert to offer STARTTLS with (None:
    no STARTTLS), require makes it refuse MAIL before STARTTLS ("530 5.7.0 Must issue a
    STARTTLS command first", aiosmtpd's require_starttls). Each Received gets .tls: None
    (plaintext) or (protocol version, cipher name)."""

    def __init__(self, host, port, tls=None, require=False):
        super().__init__(host, port)
        self.tls = tls
        self.require = require
        self.mail_refused = 0  # MAIL commands aiosmtpd refused for lack of STARTTLS

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        if data is None:
            data = envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        info = None
        if session.ssl is not None:
            obj = session.ssl.get("ssl_object")
            info = (obj.version(), obj.cipher()[0]) if obj is not None else ("?", "?")
        rec = etrnlib.Received(self.host, envelope.mail_from, envelope.rcpt_tos, data,
                               envelope.mail_options)
        rec.tls = info
        with self.cond:
            self.data_started += 1
            self.messages.append(rec)
            self.cond.notify_all()
        return "250 2.0.0 Ok: stored by sink %s" % self.host

    def start(self):
        sink = self
        kw = {}
        if self.tls is not None:
            kw["tls_context"] = self.tls.server_context()
            kw["require_starttls"] = self.require

        class _Controller(Controller):
            def factory(self):
                return etrnlib._SinkSMTP(sink, self.handler, **self.SMTP_kwargs)

        c = _Controller(self, hostname=self.host, port=self.port, decode_data=False,
                        enable_SMTPUTF8=True, ready_timeout=bound(10), **kw)
        c.start()
        self.controller = c
        with self.cond:
            self.connections = 0
        return self


class TLSSinks(etrnlib.Sinks):
    """TLSSinks({host: (Cert or None, require_starttls)}): one sink per 127.0.0.x address,
    all on one common free port."""

    def __init__(self, specs):
        super().__init__(list(specs))
        self.specs = dict(specs)

    def start(self):
        last = None
        for _ in range(20):
            port = etrnlib.free_port("127.0.0.1")
            started = []
            try:
                for h, (cert, require) in self.specs.items():
                    sk = TLSSink(h, port, cert, require)
                    sk.start()
                    started.append(sk)
            except Exception as e:  # noqa: BLE001 - a bind race: try another port
                last = e
                for sk in started:
                    sk.stop()
                continue
            self.port = port
            self.by_host = {sk.host: sk for sk in started}
            return self
        raise RuntimeError("no common free port for the sinks: %s" % last)


# ---- openssl s_client ---------------------------------------------------------------------

class SClient:
    """The outcome of one `openssl s_client` run."""

    def __init__(self, cmd, proc):
        self.cmd = cmd
        self.rc = proc.returncode
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    @property
    def text(self):
        return self.out + "\n" + self.err

    def protocol(self):
        """The negotiated protocol from "New, TLSv1.3, Cipher is ..." ("(NONE)" when the
        handshake failed), or None when s_client never got that far."""
        m = re.search(r"^New, (\S+), Cipher is (\S+)", self.out, re.M)
        return m.group(1) if m else None

    def cipher(self):
        m = re.search(r"^New, (\S+), Cipher is (\S+)", self.out, re.M)
        return m.group(2) if m else None

    def verify_ok(self):
        """The chain verified against the test CA (and, with -verify_hostname, the name)."""
        return (re.search(r"^Verification: OK$", self.out, re.M) is not None and
                re.search(r"Verify return code: 0 \(ok\)", self.out) is not None)

    def verified_peername(self):
        m = re.search(r"^Verified peername: (\S+)$", self.out, re.M)
        return m.group(1) if m else None

    def subject_cn(self):
        m = re.search(r"^subject=.*CN ?= ?([^,/\n]+)", self.out, re.M)
        return m.group(1).strip() if m else None

    def smtp_lines(self):
        """The SMTP reply lines s_client printed after the handshake (its own EHLO and the
        STARTTLS exchange before it are not printed)."""
        return [ln for ln in self.out.splitlines() if re.match(r"^\d{3}[ -]", ln)]

    def ehlo_keywords(self):
        """Keywords of the first 250 multi-line reply after the handshake (EHLO's)."""
        kws, in_ehlo = [], False
        for ln in self.smtp_lines():
            if ln.startswith("250-") and not in_ehlo:
                in_ehlo = True
                continue  # the greeting line
            if in_ehlo and ln.startswith("250"):
                kws.append(ln[4:].strip().upper())
                if ln.startswith("250 "):
                    break
        return kws

    def __repr__(self):
        return "s_client %s -> %d\n---- stdout ----\n%s\n---- stderr ----\n%s" % (
            " ".join(self.cmd[2:]), self.rc, self.out[-4000:], self.err[-2000:])


def s_client(pki, port, extra=(), commands=("EHLO " + CLIENT_NAME, "QUIT"), seconds=20,
             name=SERVER_CN):
    """openssl s_client to 127.0.0.1:port with the test CA, checking the name `name`,
    sending commands (CRLF line ends, -ign_eof: it waits for relayd to close after QUIT).
    Bounded."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", pki.ca_cert,
           "-servername", name, "-verify_hostname", name, "-crlf", "-ign_eof"] + list(extra)
    stdin = "".join(c + "\n" for c in commands).encode()
    try:
        p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=bound(seconds))
    except subprocess.TimeoutExpired as e:
        raise AssertionError("openssl s_client did not finish within %.0f s: %s\n%s\n%s"
                             % (bound(seconds), " ".join(cmd),
                                (e.stdout or b"").decode("utf-8", "replace"),
                                (e.stderr or b"").decode("utf-8", "replace")))
    return SClient(cmd, p)


# ---- raw SMTP that can turn into TLS ------------------------------------------------------

class RawTLS(hfharness.RawSMTP):
    """hfharness.RawSMTP whose socket can be wrapped in TLS in place, after the 220 to
    STARTTLS and with nothing unread."""

    def __init__(self, port, greet=True, source=None, context=None):
        self._ctx = context
        super().__init__(port, greet=greet, source=source)

    def start_tls(self, context=None, server_hostname=SERVER_CN):
        if self.buf:
            raise AssertionError("octets after the 220 to STARTTLS, before the handshake: %r"
                                 % self.buf)
        ctx = context or self._ctx
        self.sock.settimeout(bound(10))
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        return self.sock


def received_of(stored):
    """The Received: header field relayd prepended to a stored message, unfolded."""
    head = stored.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    m = re.match(r"Received: (.*?)\r\n(?![ \t])", head + "\r\n", re.S)
    assert m, "stored message does not start with Received: %r" % stored[:300]
    return re.sub(r"\r\n[ \t]+", " ", m.group(1))


# ---- test case base -----------------------------------------------------------------------

_PKI = None
_PKI_LOCK = threading.Lock()


def shared_pki():
    """One PKI per test process (made on first use, removed at exit)."""
    global _PKI
    with _PKI_LOCK:
        if _PKI is None:
            import atexit
            _PKI = PKI().make()
            atexit.register(_PKI.cleanup)
        return _PKI


class _NoDNS:
    def __init__(self):
        self.port = etrnlib.free_port()

    def stop(self):
        pass


class TLSRelaydCase(etrnlib.ETRNTestCase):
    """ETRNTestCase (DNS zone, sinks, relayd per test) whose relayd serves TLS.

    TLS_LISTEN: also an implicit-TLS listener (self.relayd.tls_port).
    AUTH: write an auth_file with USERS.
    SINKS: {host: (cert tag or None, require_starttls)} for TLSSinks.
    CONF, DOMAINS, ZONE as in etrnlib."""

    TLS_LISTEN = False
    AUTH = False
    SINKS = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = shared_pki()

    def setUp(self):
        if self.ZONE or self.SPECIAL:
            self.dns = etrnlib.ZoneDNS(self.ZONE, self.SPECIAL).start()
            self.addCleanup(self.dns.stop)
        else:
            # Nothing to resolve (inbound tests): no server, whose stop costs a second.
            self.dns = _NoDNS()
        specs = {h: (self.pki[tag] if tag else None, req)
                 for h, (tag, req) in self.SINKS.items()}
        self.sinks = TLSSinks(specs).start()
        self.addCleanup(self.sinks.stop)
        self.relayd = self.start_relayd()

    def start_relayd(self, conf=None, domains=None, groups=None):
        c = dict(self.CONF)
        c.update(conf or {})
        r = etrnlib.Relayd(self.dns.port, self.sinks.port,
                           self.domains() if domains is None else domains,
                           self.GROUPS if groups is None else groups, c)
        self._relayds = getattr(self, "_relayds", [])
        self._relayds.append(r)
        self.addCleanup(self._stop_relayd, r)
        r.cert_path = os.path.join(r.dir, "server.pem")
        r.key_path = os.path.join(r.dir, "server.key")
        shutil.copyfile(self.pki["server"].cert, r.cert_path)
        shutil.copyfile(self.pki["server"].key, r.key_path)
        os.chmod(r.key_path, 0o600)
        tls = {"tls_cert": r.cert_path, "tls_key": r.key_path, "tls_ca_file": self.pki.ca_cert}
        r.tls_port = None
        if self.TLS_LISTEN:
            r.tls_port = etrnlib.free_port()
            tls["listen_tls"] = "127.0.0.1:%d" % r.tls_port
        if self.AUTH:
            path = os.path.join(r.dir, "users")
            with open(path, "w") as f:
                for u, (pw, doms) in USERS.items():
                    f.write(credentials_line(u, pw, doms) + "\n")
            os.chmod(path, 0o600)
            tls["auth_file"] = path
        for k, v in tls.items():
            r.conf.setdefault(k, v)
        r.start()
        return r

    # -- clients --
    def smtp_tls(self, source=None, context=None, ehlo=True):
        """smtplib on the plain port, STARTTLS with the test CA, EHLO again."""
        s = self.relayd.smtp(source)
        try:
            s.ehlo(CLIENT_NAME)
            code, msg = starttls(s, context or self.pki.client_context(check_hostname=True))
            if code != 220:
                raise AssertionError("STARTTLS: %d %r" % (code, msg))
            if ehlo:
                s.ehlo(CLIENT_NAME)
        except BaseException:
            s.close()
            raise
        return s

    @staticmethod
    def quit(s):
        try:
            s.quit()
        except Exception:  # noqa: BLE001 - the server may be gone already
            s.close()


def starttls(s, context, name=SERVER_CN):
    """smtplib's starttls() naming the server `name` (SNI and the host name check): smtplib
    uses the host given to SMTP(host) (its _host), which is empty after SMTP().connect()."""
    s._host = name
    return s.starttls(context=context)
