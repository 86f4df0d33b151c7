"""fetchd's ATRN test helpers: an ODMR relay stand-in (RFC 2645) written for the tests, and
LocalMTA, a python3-aiosmtpd SMTP or LMTP server standing in for the branch's mail server.

OdmrStandIn listens on a free 127.0.0.1 port and plays the relay: 220, EHLO (STARTTLS when
given a certificate, AUTH CRAM-MD5 always, AUTH PLAIN only under TLS, ATRN), STARTTLS with
python's ssl module, AUTH checked (CRAM-MD5 with hmac, PLAIN by comparison), ATRN answered
as configured. After "250 OK now reversing the connection" the socket is handed to
python's smtplib (the client side nobody here wrote): smtplib reads fetchd's 220, sends
EHLO, and delivers each held message with mail(), rcpt() and data(). The stand-in keeps
what a relay keeps: a recipient answered 2xx is delivered (dropped), 5xx bounced (dropped,
recorded), 4xx or no answer stays held and goes again on the next ATRN.

Every socket operation has a timeout; the accept loop ends on stop(). Only 127.0.0.1.
"""

import asyncio
import base64
import hashlib
import hmac
import smtplib
import socket
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP

from hfharness import free_port, timeout


class Held:
    """One held message: sender, recipients still held, body (bytes, CRLF lines)."""

    def __init__(self, mid, sender, rcpts, body, options=()):
        self.id = mid
        self.sender = sender
        self.rcpts = list(rcpts)
        self.body = body
        self.options = list(options)


class OdmrStandIn:
    def __init__(self, held, user="alice", secret="s3cret cram", domains=("branch.test",),
                 cert=None, atrn_replies=None, cut=None):
        """held: list of Held. cert: tlslib.Cert to offer STARTTLS with (None: no TLS).
        atrn_replies: replies to ATRN, one per connection in turn (the last repeats);
        default "250 OK now reversing the connection" (453 when nothing is held).
        cut: (connection number, message index): on that connection, close the socket in
        the middle of that message's data."""
        self.held = list(held)
        self.user = user
        self.secret = secret
        self.domains = set(domains)
        self.cert = cert
        self.atrn_replies = list(atrn_replies or [])
        self.cut = cut
        self.port = free_port()
        self.lock = threading.Lock()
        self.connections = 0
        self.log = []        # (connection, event, detail)
        self.results = []    # (connection, message id, rcpt, code) per recipient answered
        self.data_replies = []  # (connection, message id, code, text)
        self.bounced = []    # (message id, rcpt, code)
        self.delivered = []  # (message id, rcpt)
        self.auth = []       # (connection, mechanism, user, ok, tls)
        self.errors = []
        self.sock = None
        self.thread = None
        self.stopping = threading.Event()
        self.workers = []

    # ---- lifecycle ----

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout(10))
        for w in self.workers:
            w.join(timeout(30))
        if self.sock:
            self.sock.close()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            w = threading.Thread(target=self._serve, args=(conn, n), daemon=True)
            self.workers.append(w)
            w.start()

    def held_rcpts(self):
        with self.lock:
            return sorted((h.id, r) for h in self.held for r in h.rcpts)

    # ---- the relay side, before the turn ----

    def _serve(self, conn, n):
        conn.settimeout(timeout(30))
        try:
            self._dialogue(conn, n)
        except Exception as e:  # recorded; a test that cares looks at errors
            with self.lock:
                self.errors.append("connection %d: %r" % (n, e))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _note(self, n, event, detail=""):
        with self.lock:
            self.log.append((n, event, detail))

    def _dialogue(self, conn, n):
        sock = conn
        f = sock.makefile("rb")

        def send(line):
            sock.sendall(line.encode() + b"\r\n")

        def recv():
            line = f.readline(4096)
            if not line:
                raise ConnectionError("client closed")
            return line.rstrip(b"\r\n").decode("utf-8", "replace")

        send("220 relay.test ESMTP ODMR stand-in")
        tls = False
        authed = None
        while True:
            line = recv()
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb) + 1:] if " " in line else ""
            self._note(n, verb, arg if verb != "AUTH" else arg.split(" ")[0])
            if verb == "EHLO":
                ext = ["relay.test"]
                if self.cert and not tls:
                    ext.append("STARTTLS")
                ext.append("AUTH CRAM-MD5 PLAIN" if tls else "AUTH CRAM-MD5")
                ext.append("ATRN")
                for i, e in enumerate(ext):
                    send("250%s%s" % ("-" if i + 1 < len(ext) else " ", e))
            elif verb == "STARTTLS" and self.cert and not tls:
                send("220 2.0.0 ready to start TLS")
                ctx = self.cert.server_context()
                sock = ctx.wrap_socket(sock, server_side=True)
                f = sock.makefile("rb")
                tls = True
            elif verb == "AUTH" and arg.upper().startswith("CRAM-MD5"):
                chal = ("<%d.%d@relay.test>" % (n, id(self))).encode()
                send("334 " + base64.b64encode(chal).decode())
                resp = base64.b64decode(recv()).decode()
                user, _, digest = resp.rpartition(" ")
                want = hmac.new(self.secret.encode(), chal, hashlib.md5).hexdigest()
                ok = user == self.user and hmac.compare_digest(digest, want)
                with self.lock:
                    self.auth.append((n, "CRAM-MD5", user, ok, tls))
                if ok:
                    authed = user
                    send("235 2.7.0 authenticated")
                else:
                    send("535 5.7.8 authentication failed")
            elif verb == "AUTH" and arg.upper().startswith("PLAIN ") and tls:
                raw = base64.b64decode(arg[6:])
                _, user, pw = raw.split(b"\0")
                ok = user.decode() == self.user and pw.decode() == self.secret
                with self.lock:
                    self.auth.append((n, "PLAIN", user.decode(), ok, tls))
                if ok:
                    authed = user.decode()
                    send("235 2.7.0 authenticated")
                else:
                    send("535 5.7.8 authentication failed")
            elif verb == "ATRN":
                if not authed:
                    send("530 5.7.0 authentication required")
                    continue
                asked = set(d.strip().lower() for d in arg.split(",") if d.strip())
                reply = self._atrn_reply(n, asked)
                send(reply)
                if reply.startswith("250"):
                    self._deliver(sock, f, n, asked)
                    return
            elif verb == "QUIT":
                send("221 2.0.0 bye")
                return
            else:
                send("502 5.5.1 not here")

    def _atrn_reply(self, n, asked):
        if not asked <= self.domains:
            return "450 4.7.1 not your domain"
        if self.atrn_replies:
            r = self.atrn_replies[min(n, len(self.atrn_replies)) - 1]
            if not r.startswith("250"):
                return r
        with self.lock:
            waiting = any(h.rcpts for h in self.held)
        return "250 OK now reversing the connection" if waiting else "453 You have no mail"

    # ---- after the turn: smtplib is the client ----

    def _deliver(self, sock, f, n, asked):
        smtp = smtplib.SMTP(timeout=timeout(30))
        smtp.sock = sock
        smtp.file = f
        code, msg = smtp.getreply()
        self._note(n, "greeting", "%d %s" % (code, msg.decode("utf-8", "replace")))
        if code != 220:
            raise AssertionError("greeting after the turn: %d %r" % (code, msg))
        code, msg = smtp.ehlo("relay.test")
        self._note(n, "ehlo", "%d" % code)
        with self.lock:
            todo = [h for h in self.held if h.rcpts and
                    any(r.rsplit("@", 1)[1].lower() in asked for r in h.rcpts)]
        for i, h in enumerate(todo):
            code, msg = smtp.mail(h.sender, h.options)
            if code // 100 != 2:
                for r in h.rcpts:
                    self._record(n, h, r, code)
                smtp.rset()
                continue
            accepted = []
            for r in list(h.rcpts):
                code, _ = smtp.rcpt(r)
                if code // 100 == 2:
                    accepted.append(r)
                else:
                    self._record(n, h, r, code)
            if not accepted:
                smtp.rset()
                continue
            if self.cut == (n, i):
                # DATA, half the message, then the connection is gone.
                code, _ = smtp.docmd("DATA")
                if code == 354:
                    sock.sendall(h.body[:len(h.body) // 2])
                self._note(n, "cut", h.id)
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                return
            try:
                code, msg = smtp.data(h.body)
            except smtplib.SMTPDataError as e:
                code, msg = e.smtp_code, e.smtp_error
            with self.lock:
                self.data_replies.append((n, h.id, code, msg.decode("utf-8", "replace")))
            for r in accepted:
                self._record(n, h, r, code)
        smtp.quit()

    def _record(self, n, h, rcpt, code):
        with self.lock:
            self.results.append((n, h.id, rcpt, code))
            if code // 100 == 2:
                self.delivered.append((h.id, rcpt))
                h.rcpts.remove(rcpt)
            elif code // 100 == 5:
                self.bounced.append((h.id, rcpt, code))
                h.rcpts.remove(rcpt)


# ---- the local MTA ---------------------------------------------------------------------

class _LocalHandler:
    """The local MTA: refuses RCPT by local part (nobody 550, later 450), stores the rest."""

    def __init__(self, mta):
        self.mta = mta

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local == "nobody":
            return "550 5.1.1 no such user here"
        if local == "later":
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.mta.hold_first and not self.mta.entered.is_set():
            # Holds the first message's answer until the test opens the gate (bounded),
            # then refuses it for now: the local MTA keeps nothing of it.
            self.mta.entered.set()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.mta.gate.wait, timeout(60))
            return "451 4.3.0 not now"
        with self.mta.lock:
            self.mta.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content))
        return "250 2.0.0 stored"


class _LMTPController(Controller):
    def factory(self):
        return LMTP(self.handler, decode_data=False)


class LocalMTA:
    """hold_first: the first message's end of data is answered only after gate is set
    (entered is set when it arrives), and then with 451."""

    def __init__(self, lmtp=False, port=None, hold_first=False):
        self.port = port or free_port()
        self.lmtp = lmtp
        self.hold_first = hold_first
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.messages = []
        self.ctl = None

    def start(self):
        cls = _LMTPController if self.lmtp else Controller
        kw = {} if self.lmtp else {"decode_data": False}
        self.ctl = cls(_LocalHandler(self), hostname="127.0.0.1", port=self.port,
                       ready_timeout=timeout(10), **kw)
        self.ctl.start()
        return self

    def stop(self):
        self.gate.set()
        if self.ctl:
            self.ctl.stop()
            self.ctl = None

    def got(self):
        with self.lock:
            return list(self.messages)
