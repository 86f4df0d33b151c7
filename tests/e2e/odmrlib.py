"""Helpers for the ODMR end-to-end tests (RFC 2645, issue 13): a relayd with an ODMR
listener, CRAM-MD5 secrets and an auth_file; a client written for the test that speaks the
ODMR side (EHLO, AUTH CRAM-MD5 or PLAIN under STARTTLS, ATRN) and, after the 250, the SMTP
server side on the same socket, recording every message and answering each recipient as the
test says.

CRAM-MD5 digests come from Python's own hmac module, not from holdfast's code. Every read is
bounded; nothing sleeps to synchronise.
"""

import base64
import hashlib
import hmac
import os
import re
import socket
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import tlslib  # noqa: E402

bound = etrnlib.bound
RELAYD = etrnlib.RELAYD

# user -> (scrypt password, CRAM-MD5 secret or None, domains in auth_file)
ODMR_USERS = {
    "branch": ("branch-password-1", "branch-cram-secret", "branch.test,second.test"),
    "other": ("other-password-2", "other-cram-secret", "other.test"),
    "empty": ("empty-password-3", "empty-cram-secret", "empty.test"),
    "tlsonly": ("tlsonly-password-4", None, "branch.test"),
}


def cram_line(user, secret):
    """`relayd --cram-secret USER` with the secret on stdin."""
    r = tlslib.run([RELAYD, "--cram-secret", user], input_bytes=secret.encode() + b"\n")
    line = r.stdout.decode().strip()
    want = "%s:%s" % (user, base64.b64encode(secret.encode()).decode())
    if line != want:
        raise AssertionError("relayd --cram-secret printed %r, not %r" % (line, want))
    return line


def write_odmr_files(dirpath):
    """auth_file and cram_file for ODMR_USERS in dirpath (both 0600); returns their paths."""
    auth = os.path.join(dirpath, "odmr-users")
    cram = os.path.join(dirpath, "odmr-cram")
    with open(auth, "w") as f:
        for u, (pw, _, doms) in ODMR_USERS.items():
            f.write(tlslib.credentials_line(u, pw, doms) + "\n")
    with open(cram, "w") as f:
        f.write("# CRAM-MD5 secrets for ODMR\n")
        for u, (_, secret, _) in ODMR_USERS.items():
            if secret:
                f.write(cram_line(u, secret) + "\n")
    os.chmod(auth, 0o600)
    os.chmod(cram, 0o600)
    return auth, cram


class Closed(AssertionError):
    pass


class ODMRClient:
    """One connection to relayd's ODMR port. Client side: cmd() sends a line and returns
    (code, [lines]). After ATRN's 250, serve() plays the SMTP server."""

    def __init__(self, port, host="127.0.0.1", context=None):
        self.sock = socket.create_connection((host, port), timeout=bound(20))
        # Replies to pipelined commands go one send each: without this, Nagle holds the
        # second until the first is acknowledged (a delayed ACK, ~40 ms per message).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:  # implicit TLS (listen_odmr_tls)
            self.sock = context.wrap_socket(self.sock, server_hostname=tlslib.SERVER_CN)
        self.buf = b""
        self.greeting = self.reply()

    # -- raw io --
    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise Closed("no line from relayd within the bound; have %r" % self.buf)
            if not chunk:
                raise Closed("relayd closed the connection; unread %r" % self.buf)
            self.buf += chunk
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def reply(self):
        lines = []
        while True:
            ln = self.line().decode("utf-8", "replace")
            lines.append(ln)
            if len(ln) < 4 or ln[3] != "-":
                return int(ln[:3]), lines

    def cmd(self, text):
        self.send(text.encode() + b"\r\n")
        return self.reply()

    # -- the ODMR side --
    def ehlo(self, name="odmr-client.test"):
        code, lines = self.cmd("EHLO " + name)
        assert code == 250, lines
        return [ln[4:].upper() for ln in lines[1:]]

    def auth_cram(self, user, secret):
        code, lines = self.cmd("AUTH CRAM-MD5")
        if code != 334:
            return code, lines
        chal = base64.b64decode(lines[0][4:])
        digest = hmac.new(secret.encode(), chal, hashlib.md5).hexdigest()
        return self.cmd(base64.b64encode(("%s %s" % (user, digest)).encode()).decode())

    def starttls(self, context):
        code, lines = self.cmd("STARTTLS")
        assert code == 220, lines
        assert not self.buf, self.buf
        self.sock = context.wrap_socket(self.sock, server_hostname=tlslib.SERVER_CN)
        return self.sock

    def auth_plain(self, user, password):
        tok = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        return self.cmd("AUTH PLAIN " + tok)

    # -- after the 250: the SMTP server side --
    def serve(self, answer=None, cut_in_message=None, name="odmr-client.test",
              offer=("8BITMIME", "ENHANCEDSTATUSCODES"), greet=True):
        """Plays the server until relayd's QUIT (or the cut). answer(rcpt) gives the reply
        line for each RCPT (default 250). cut_in_message=n closes the socket inside the
        content of the n-th message (1-based), after its first line. Returns a list of
        (mail_from, [rcpts accepted], content bytes) and the transcript of commands."""
        got, cmds = [], []
        if greet:
            self.send(("220 %s ESMTP odmr test server\r\n" % name).encode())
        mail, rcpts = None, []
        while True:
            ln = self.line().decode("utf-8", "replace")
            cmds.append(ln)
            verb = ln.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                ext = "".join("250-%s\r\n" % e for e in offer[:-1])
                self.send(("250-%s\r\n%s250 %s\r\n" % (name, ext, offer[-1])).encode()
                          if offer else ("250 %s\r\n" % name).encode())
            elif verb == "MAIL":
                m = re.match(r"MAIL FROM:<([^>]*)>", ln, re.I)
                mail, rcpts = m.group(1), []
                self.send(b"250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                addr = re.match(r"RCPT TO:<([^>]*)>", ln, re.I).group(1)
                rep = answer(addr) if answer else "250 2.1.5 ok"
                if rep.startswith("250"):
                    rcpts.append(addr)
                self.send(rep.encode() + b"\r\n")
            elif verb == "DATA":
                if not rcpts:
                    self.send(b"554 5.5.1 no valid recipients\r\n")
                    continue
                self.send(b"354 go ahead\r\n")
                n = len(got) + 1
                content = []
                while True:
                    body_ln = self.line()
                    if cut_in_message == n:
                        self.sock.close()
                        return got, cmds
                    if body_ln == b".":
                        break
                    content.append(body_ln[1:] if body_ln.startswith(b".") else body_ln)
                got.append((mail, rcpts, b"".join(x + b"\r\n" for x in content)))
                self.send(b"250 2.0.0 taken\r\n")
            elif verb == "RSET":
                mail, rcpts = None, []
                self.send(b"250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                self.send(b"221 2.0.0 bye\r\n")
                self.sock.close()
                return got, cmds
            else:
                self.send(b"502 5.5.1 not here\r\n")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class ODMRCase(tlslib.TLSRelaydCase):
    """A relayd (TLS, AUTH) with an ODMR listener (self.relayd.odmr_port) and cram_file."""

    DOMAINS = {"branch.test": {"hold": "yes"}, "second.test": {"hold": "yes"},
               "other.test": {"hold": "yes"}, "empty.test": {"hold": "yes"}}
    CONF = {}

    def start_relayd(self, conf=None, domains=None, groups=None):
        c = dict(conf or {})
        d = tlslib.tempfile.mkdtemp(prefix="hf-odmr-")
        self.addCleanup(tlslib.shutil.rmtree, d, True)
        auth, cram = write_odmr_files(d)
        port = etrnlib.free_port()
        c.setdefault("auth_file", auth)
        c.setdefault("cram_file", cram)
        c.setdefault("listen_odmr", "127.0.0.1:%d" % port)
        r = super().start_relayd(conf=c, domains=domains, groups=groups)
        r.odmr_port = port
        return r

    def odmr(self):
        c = ODMRClient(self.relayd.odmr_port)
        self.addCleanup(c.close)
        return c

    def login(self, user="branch"):
        c = self.odmr()
        self.assertEqual(c.greeting[0], 220, c.greeting)
        c.ehlo()
        code, lines = c.auth_cram(user, ODMR_USERS[user][1])
        self.assertEqual(code, 235, lines)
        return c

    def hold(self, dom, n, sender="sender@example.org"):
        """n messages for dom on the SMTP port; returns {qid: stored bytes}."""
        out = {}
        for i in range(n):
            qid = self.relayd.send(sender, ["user%d@%s" % (i, dom)],
                                   etrnlib.make_body("%s %d" % (dom, i),
                                                     "held for %s, message %d\r\n.dot line\r\n"
                                                     % (dom, i)))
            out[qid] = self.relayd.body(qid)
        return out

    def queued_domains(self):
        return sorted({x["domain"] for x in self.relayd.rcpts().values()})


def ssl_client(pki):
    ctx = pki.client_context(check_hostname=True)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def run_fetchmail(rc_path, home, seconds=60):
    env = dict(os.environ, HOME=home, LC_ALL="C")
    cmd = ["fetchmail", "--nosyslog", "-v", "--nodetach", "-f", rc_path,
           "--pidfile", os.path.join(home, "fetchmail.pid")]
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=bound(seconds))
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")
