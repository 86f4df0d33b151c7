"""Helpers for the ETRN release end-to-end tests (tests/e2e/test_etrn_*.py).

Everything runs on loopback, in this process or as child processes, with software nobody
in this project wrote:

  ZoneDNS   a python3-dnslib server (UDP and TCP on one free 127.0.0.1 port, in threads)
            serving a test zone: MX, A, NXDOMAIN (any name not in the zone), SERVFAIL,
            a null MX, a name with only an A record (implicit MX). Every query is recorded.
  Sinks     python3-aiosmtpd receiving servers, one per 127.0.0.x address, all on one
            common port P (relayd's smtp_port is one global setting). They record every
            connection, every RCPT they were offered and every message byte for byte
            (envelope.original_content, decode_data=False). A sink can answer chosen
            recipients with 4xx/5xx, drop the connection in the middle of DATA, or hold its
            reply to the final dot until the test releases it. A "down" address is a
            socket bound to 127.0.0.x:P that never listens: connect() is refused, and the
            port cannot be taken by anything else meanwhile.
  Relayd    the real relayd in the foreground with a temporary config and queue; stderr is
            read by a thread into a log file and a line list, so a test waits for a log line
            (bounded, woken by the line itself) instead of sleeping. Always stopped:
            SIGTERM, bounded wait, SIGKILL; the log is printed when a test fails.
  relayctl  list --json / queue --json / show --body, run on the queue directory.
  ETRN      smtplib's docmd("ETRN", arg) from a chosen loopback source address.

Environment: HF_BIN_DIR (relayd, relayctl), HF_SOURCE_DIR, HF_SANITIZE=1 (every bound is
multiplied by SLOW). Only /usr/bin/python3 sees Debian's aiosmtpd and dnslib.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from dnslib import AAAA, A, MX, QTYPE, RCODE, RR, DNSLabel
from dnslib.server import BaseResolver, DNSError, DNSLogger, DNSServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hfharness  # noqa: E402  (paths, names and bounds shared with the inbound tests)
from hfharness import (  # noqa: E402,F401
    BIN_DIR, CLIENT_NAME, HOSTNAME, RELAYCTL, RELAYD, SANITIZE, SANITIZER_RE, SLOW, SOURCE_DIR,
    free_port)

# A search, not a match: smtplib hands the reply text with its enhanced code.
QUEUED_RE = re.compile(r"2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})")


def bound(seconds):
    """A wait bound, scaled for sanitizer builds."""
    return hfharness.timeout(seconds)


# ---- DNS ------------------------------------------------------------------------------

class _QuietLogger(DNSLogger):
    def __init__(self):
        super().__init__(log="-request,-reply,-truncated,-recv,-send,-data,-error")


def mx(host, pref):
    return ("MX", MX(host, pref))


def a(addr):
    return ("A", A(addr))


def aaaa(addr):
    return ("AAAA", AAAA(addr))


class _ZoneResolver(BaseResolver):
    def __init__(self, zone, special):
        self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}
        self.special = {k.lower().rstrip("."): v for k, v in special.items()}
        self.lock = threading.Lock()
        self.queries = []  # (name, type)

    def resolve(self, request, handler):
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((qname, qtype))
            special = self.special.get(qname)
            records = self.zone.get(qname)
        reply = request.reply()
        if special == "DROP":
            raise DNSError("dropped on purpose")
        if special == "SERVFAIL":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, rdata in records:
            if rtype == qtype:
                reply.add_answer(RR(DNSLabel(qname), QTYPE.reverse[rtype], rdata=rdata, ttl=60))
        return reply


class ZoneDNS:
    """A loopback DNS server. zone: name -> [("MX", MX(..)), ("A", A(..)), ...]; a name
    present answers NOERROR (NODATA for types it lacks); any other name is NXDOMAIN unless
    special[name] is "SERVFAIL" or "DROP" (never answers)."""

    def __init__(self, zone, special=None):
        self.resolver = _ZoneResolver(zone, special or {})
        self.udp = self.tcp = None
        self.port = None

    def start(self):
        last = None
        for _ in range(20):
            udp = DNSServer(self.resolver, port=0, address="127.0.0.1", logger=_QuietLogger())
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(self.resolver, port=port, address="127.0.0.1", tcp=True,
                                logger=_QuietLogger())
            except OSError as e:
                udp.server.server_close()
                last = e
                continue
            udp.start_thread()
            tcp.start_thread()
            self.udp, self.tcp, self.port = udp, tcp, port
            return self
        raise RuntimeError("no port free for both UDP and TCP: %s" % last)

    def stop(self):
        for srv in (self.udp, self.tcp):
            if srv is not None:
                try:
                    srv.stop()
                    srv.server.server_close()
                except Exception:  # noqa: BLE001 - best effort at teardown
                    pass
        self.udp = self.tcp = None

    def queries_for(self, name):
        name = name.lower().rstrip(".")
        with self.resolver.lock:
            return [q for q in self.resolver.queries if q[0] == name]

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port


# ---- receiving SMTP servers -------------------------------------------------------------

class Received:
    """One message a sink accepted."""

    def __init__(self, host, mail_from, rcpts, data, mail_options):
        self.host = host
        self.mail_from = mail_from
        self.rcpts = list(rcpts)
        self.data = bytes(data)
        self.mail_options = list(mail_options)

    def __repr__(self):
        return "Received(%s, from=%r, rcpts=%r, %d octets)" % (
            self.host, self.mail_from, self.rcpts, len(self.data))


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP that tells its sink about connections, and can drop mid-DATA."""

    def __init__(self, sink, *args, **kw):
        super().__init__(*args, **kw)
        self._sink = sink

    def connection_made(self, transport):
        self._sink._event("connect")
        super().connection_made(transport)

    async def smtp_DATA(self, arg):
        sink = self._sink
        if sink.drop_data and self.envelope.rcpt_tos and not arg:
            # The body starts to arrive, then the connection goes away without a reply.
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            got = b""
            try:
                got = await self._reader.readuntil(b"\r\n")
            except Exception:  # noqa: BLE001 - the peer may be gone already
                pass
            sink._event("dropped", got)
            self.transport.abort()
            # Let connection_lost run (it is scheduled by abort and ends this session)
            # before the command loop could read the rest of the body as commands.
            await asyncio.sleep(0)
            return
        await super().smtp_DATA(arg)


class Sink:
    """One receiving server on host:port (aiosmtpd Controller in its own thread).

    rcpt_replies: address (lower case) -> reply string such as "450 4.2.0 try later"
    drop_data:    abort the connection after the first line of DATA content
    drop_after_dot: abort the connection after the final dot, before replying
    hold_data:    delay the reply to the final dot until release() is called
    """

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.cond = threading.Condition()
        self.messages = []
        self.rcpt_log = []   # every RCPT address offered, in order
        self.connections = 0
        self.drops = 0
        self.data_started = 0  # DATA bodies received (before the reply)
        self.rcpt_replies = {}
        self.drop_data = False
        self.drop_after_dot = False
        self.hold_data = False
        self._release = None
        self._loop = None
        self.controller = None

    # -- aiosmtpd handler hooks (run on the controller's loop thread) --
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.cond:
            self.rcpt_log.append(address)
            reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        if data is None:
            data = envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with self.cond:
            self.data_started += 1
            self._loop = asyncio.get_running_loop()
            hold = self.hold_data
            if self.drop_after_dot:
                # The whole message arrived; the connection goes before the reply.
                self.drops += 1
                self.cond.notify_all()
                server.transport.abort()
                return "421 4.4.2 not reached: the connection is gone"
            if hold and self._release is None:
                self._release = asyncio.Event()
            ev = self._release
            self.cond.notify_all()
        if hold:
            await ev.wait()
        with self.cond:
            self.messages.append(Received(self.host, envelope.mail_from, envelope.rcpt_tos,
                                          data, envelope.mail_options))
            self.cond.notify_all()
        return "250 2.0.0 Ok: stored by sink %s" % self.host

    def _event(self, what, arg=None):
        with self.cond:
            if what == "connect":
                self.connections += 1
            elif what == "dropped":
                self.drops += 1
            self.cond.notify_all()

    # -- control from the test thread --
    def release(self):
        """Lets held DATA replies go (and future ones too)."""
        with self.cond:
            self.hold_data = False
            ev, loop = self._release, self._loop
            self._release = None
        if ev is not None and loop is not None:
            loop.call_soon_threadsafe(ev.set)

    def wait_for(self, pred, seconds, what):
        deadline = time.monotonic() + bound(seconds)
        with self.cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("sink %s: timed out after %.0f s waiting for %s "
                                         "(connections=%d messages=%r rcpts=%r)"
                                         % (self.host, bound(seconds), what, self.connections,
                                            self.messages, self.rcpt_log))
                self.cond.wait(left)

    def snapshot(self):
        with self.cond:
            return list(self.messages)

    def start(self):
        sink = self

        class _Controller(Controller):
            def factory(self):
                return _SinkSMTP(sink, self.handler, **self.SMTP_kwargs)

        c = _Controller(self, hostname=self.host, port=self.port, decode_data=False,
                        enable_SMTPUTF8=True, ready_timeout=bound(10))
        c.start()
        self.controller = c
        # Controller.start() checks readiness with a connection of its own: forget it.
        with self.cond:
            self.connections = 0
        return self

    def stop(self):
        if self.controller is not None:
            self.release()
            try:
                self.controller.stop()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
            self.controller = None


class Sinks:
    """Receiving servers on 127.0.0.x, all on one port; addresses in `down` refuse
    connections (bound, never listening)."""

    def __init__(self, up, down=()):
        self.up_hosts = list(up)
        self.down_hosts = list(down)
        self.port = None
        self.by_host = {}
        self.down_socks = []

    def start(self):
        last = None
        for _ in range(20):
            port = free_port("127.0.0.1")
            started, socks = [], []
            try:
                for h in self.down_hosts:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    socks.append(s)
                    s.bind((h, port))  # no listen(): connect() gets RST (refused)
                for h in self.up_hosts:
                    sk = Sink(h, port)
                    sk.start()
                    started.append(sk)
            except Exception as e:  # noqa: BLE001 - a bind race: try another port
                last = e
                for sk in started:
                    sk.stop()
                for s in socks:
                    s.close()
                continue
            self.port = port
            self.by_host = {sk.host: sk for sk in started}
            self.down_socks = socks
            return self
        raise RuntimeError("no common free port for the sinks: %s" % last)

    def __getitem__(self, host):
        return self.by_host[host]

    def stop(self):
        for sk in self.by_host.values():
            sk.stop()
        for s in self.down_socks:
            s.close()
        self.down_socks = []

    def all_messages(self):
        out = []
        for sk in self.by_host.values():
            out += sk.snapshot()
        return out

    def connections(self):
        return {h: sk.connections for h, sk in self.by_host.items()}


# ---- relayd ------------------------------------------------------------------------------

class RelaydError(AssertionError):
    pass


class Relayd:
    """The real relayd with a temporary directory, config and queue.

    conf: extra top-level keys; domains: name -> {key: value}; groups: name -> "d1 d2".
    """

    def __init__(self, dns_port, smtp_port, domains, groups=None, conf=None):
        self.dir = tempfile.mkdtemp(prefix="hf-etrn-")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.conf_path = os.path.join(self.dir, "relayd.conf")
        self.log_path = os.path.join(self.dir, "relayd.log")
        self.port = None
        self.conf = {
            "hostname": HOSTNAME,
            "self_names": HOSTNAME,
            "queue_dir": self.queue_dir,
            "control_socket": os.path.join(self.dir, "relayd.sock"),
            "log": "stderr",
            "log_level": "info",
            "dns_servers": "127.0.0.1:%d" % dns_port,
            "dns_timeout": "2",
            "timeout_connect": "3",
            "smtp_port": str(smtp_port),
            # Many ETRNs come from 127.0.0.1 within a minute in these tests; the limits
            # themselves are tested with their own configuration.
            "etrn_rate_client": "1000",
            "etrn_rate_domain": "1000",
        }
        self.conf.update(conf or {})
        self.domains = domains
        self.groups = groups or {}
        self.proc = None
        self.lines = []
        self.cond = threading.Condition()
        self.reader = None
        self.problems = []

    def write_config(self):
        out = ["# written by tests/e2e/etrnlib.py"]
        out += ["%s = %s" % kv for kv in self.conf.items()]
        for name, opts in self.domains.items():
            out += ["", "[domain %s]" % name]
            out += ["%s = %s" % kv for kv in (opts or {}).items()]
        for name, doms in self.groups.items():
            out += ["", "[group %s]" % name, "domains = %s" % doms]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(out) + "\n")

    def _read(self, pipe, logf):
        for raw in iter(pipe.readline, b""):
            logf.write(raw)
            logf.flush()
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        logf.close()
        with self.cond:
            self.lines.append(None)  # EOF marker
            self.cond.notify_all()

    def start(self):
        """Starts relayd on a free port; when another process took the port between the
        probe and relayd's bind ("listen on ... failed ... EADDRINUSE"), tries another one
        (at most 5 times)."""
        if not os.path.exists(RELAYD):
            raise unittest.SkipTest("relayd not built at %s" % RELAYD)
        for attempt in range(5):
            try:
                return self._start_once()
            except RelaydError:
                if self.proc is None or self.proc.poll() is None or attempt == 4 or \
                        not self.log_lines(r"listen on \S+ failed err=EADDRINUSE"):
                    raise
                self.stop()
                self.problems = []
        return self

    def _start_once(self):
        self.port = free_port()
        self.conf["listen"] = "127.0.0.1:%d" % self.port
        self.write_config()
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen([RELAYD, "-c", self.conf_path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=self.dir, env=env)
        logf = open(self.log_path, "ab")
        self.reader = threading.Thread(target=self._read, args=(self.proc.stderr, logf),
                                       daemon=True)
        self.reader.start()
        self._wait_greeting(20)
        return self

    def _wait_greeting(self, seconds):
        deadline = time.monotonic() + bound(seconds)
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RelaydError("relayd exited with status %s before its greeting\n%s"
                                  % (self.proc.returncode, self.log_text()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=bound(5)) as s, \
                        s.makefile("rb") as f:
                    line = f.readline()
                    if line.startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        f.readline()
                        return
                    last = line
            except OSError as e:
                last = e
                # Not listening yet: wait for the process (at most 50 ms), then retry.
                try:
                    self.proc.wait(0.05)
                except subprocess.TimeoutExpired:
                    pass
        raise RelaydError("relayd did not greet within %.0f s (%r)\n%s"
                          % (bound(seconds), last, self.log_text()))

    def stop(self, seconds=15):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(bound(seconds))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(bound(10))
                self.problems.append("relayd ignored SIGTERM for %.0f s (SIGKILLed)"
                                     % bound(seconds))
        if p.returncode != 0 and not self.problems:
            self.problems.append("relayd exited with status %s after SIGTERM" % p.returncode)
        if self.reader is not None:
            self.reader.join(bound(10))
        if p.stderr is not None:
            p.stderr.close()
        if SANITIZER_RE.search(self.log_text()):
            self.problems.append("sanitizer report in relayd's log")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        with self.cond:
            return "\n".join(x for x in self.lines if x is not None) + "\n"

    def mark(self):
        """Index for wait_log(after=...): only lines logged from now on."""
        with self.cond:
            return len(self.lines)

    def wait_log(self, pattern, seconds=20, after=0, count=1):
        """Waits (bounded) until `count` lines logged at or after index `after` match
        pattern; returns the match objects."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + bound(seconds)
        with self.cond:
            while True:
                found = [m for m in (rx.search(x) for x in self.lines[after:] if x is not None)
                         if m]
                if len(found) >= count:
                    return found
                if self.lines and self.lines[-1] is None:
                    raise RelaydError("relayd's log ended before %d line(s) matching %r"
                                      % (count, pattern))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RelaydError("no %d line(s) matching %r within %.0f s (found %d)"
                                      % (count, pattern, bound(seconds), len(found)))
                self.cond.wait(left)

    def log_lines(self, pattern, after=0):
        rx = re.compile(pattern)
        with self.cond:
            return [x for x in self.lines[after:] if x is not None and rx.search(x)]

    def wait_flush(self, domain, seconds=30, after=0):
        """Waits for the summary line of a queue run of domain; returns a dict of its
        counters (messages, sent, deferred, bounced) and the line."""
        m = self.wait_log(r"flush domain=%s reason=\S+ messages=(\d+) rcpts=\d+ sent=(\d+) "
                          r"deferred=(\d+) bounced=(\d+) duration=" % re.escape(domain),
                          seconds, after)[0]
        return {"messages": int(m.group(1)), "sent": int(m.group(2)),
                "deferred": int(m.group(3)), "bounced": int(m.group(4)),
                "line": m.string}

    # -- clients --
    def smtp(self, source=None):
        s = smtplib.SMTP(timeout=bound(30), source_address=(source, 0) if source else None)
        s.connect("127.0.0.1", self.port)
        return s

    def send(self, sender, rcpts, body):
        """One message with smtplib; body bytes with CRLF line ends. Returns the queue id."""
        s = self.smtp()
        try:
            s.ehlo(CLIENT_NAME)
            code, msg = s.mail(sender)
            if code != 250:
                raise AssertionError("MAIL: %d %r" % (code, msg))
            for r in rcpts:
                code, msg = s.rcpt(r)
                if code != 250:
                    raise AssertionError("RCPT %s: %d %r" % (r, code, msg))
            code, msg = s.data(body)
            m = QUEUED_RE.search(msg.decode("utf-8", "replace"))
            if code != 250 or not m:
                raise AssertionError("DATA: %d %r" % (code, msg))
            return m.group(1).upper()
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()

    def etrn(self, arg, source=None, helo=CLIENT_NAME):
        """One session: EHLO, ETRN arg, QUIT. Returns (code, text)."""
        s = self.smtp(source)
        try:
            s.ehlo(helo)
            code, msg = s.docmd("ETRN", arg) if arg is not None else s.docmd("ETRN")
            return code, msg.decode("utf-8", "replace")
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()

    # -- relayctl --
    def relayctl(self, *args):
        r = subprocess.run([RELAYCTL, "-q", self.queue_dir] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=bound(60))
        if SANITIZER_RE.search(r.stderr.decode("utf-8", "replace")):
            raise AssertionError("sanitizer report from relayctl %s:\n%s"
                                 % (args, r.stderr.decode("utf-8", "replace")))
        return r

    def relayctl_json(self, *args):
        r = self.relayctl(*(list(args) + ["--json"]))
        if r.returncode != 0:
            raise AssertionError("relayctl %s --json exited %d: %s"
                                 % (" ".join(args), r.returncode, r.stderr.decode()))
        return json.loads(r.stdout.decode("utf-8"))

    def list_json(self, domain=None):
        return self.relayctl_json("list", *([domain] if domain else []))["messages"]

    def queue_json(self):
        return self.relayctl_json("queue")

    def body(self, qid):
        r = self.relayctl("show", qid, "--body")
        if r.returncode != 0:
            raise AssertionError("relayctl show %s --body exited %d: %s"
                                 % (qid, r.returncode, r.stderr.decode()))
        return r.stdout

    def rcpts(self):
        """address -> recipient record (with the message id added as "id")."""
        out = {}
        for m in self.list_json():
            for r in m["rcpts"]:
                rr = dict(r)
                rr["id"] = m["id"]
                out[r["addr"]] = rr
        return out


# ---- test case base -----------------------------------------------------------------------

def make_body(subject, text, to="someone@example.test"):
    if isinstance(text, str):
        text = text.encode("utf-8")
    return (b"From: Sender <sender@example.org>\r\nTo: " + to.encode() +
            b"\r\nSubject: " + subject.encode() + b"\r\nMessage-ID: <" +
            subject.replace(" ", ".").encode() + b"@example.org>\r\n\r\n" + text)


class ETRNTestCase(unittest.TestCase):
    """Starts a ZoneDNS (ZONE, SPECIAL), Sinks (UP, DOWN) and a relayd (DOMAINS, GROUPS,
    CONF) per test; stops them all even on failure; prints relayd's log when a test failed
    and fails a test whose relayd left a sanitizer report or did not stop cleanly."""

    ZONE = {}
    SPECIAL = {}
    UP = ()
    DOWN = ()
    DOMAINS = {}
    GROUPS = {}
    CONF = {}

    def domains(self):
        """The [domain] sections; may use self.sinks.port (e.g. for next_hop)."""
        return self.DOMAINS

    def setUp(self):
        self.dns = ZoneDNS(self.ZONE, self.SPECIAL).start()
        self.addCleanup(self.dns.stop)
        self.sinks = Sinks(self.UP, self.DOWN).start()
        self.addCleanup(self.sinks.stop)
        self.relayd = self.start_relayd()

    def start_relayd(self, conf=None, domains=None, groups=None):
        c = dict(self.CONF)
        c.update(conf or {})
        r = Relayd(self.dns.port, self.sinks.port,
                   self.domains() if domains is None else domains,
                   self.GROUPS if groups is None else groups, c)
        self._relayds = getattr(self, "_relayds", [])
        self._relayds.append(r)
        self.addCleanup(self._stop_relayd, r)
        r.start()
        return r

    def _stop_relayd(self, r):
        r.stop()
        failed = self._failed()
        if failed or r.problems:
            sys.stderr.write("\n---- relayd log (%s) ----\n%s---- end of log ----\n"
                             % (r.dir, r.log_text()))
        r.cleanup()
        if r.problems:
            self.fail("; ".join(r.problems))

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = getattr(outcome, "result", None)
        if result is not None:
            for test, _ in list(result.failures) + list(result.errors):
                if test is self or getattr(test, "test_case", None) is self:
                    return True
        errors = getattr(outcome, "errors", None)  # Python < 3.11
        if errors:
            return any(exc is not None for _, exc in errors)
        return not getattr(outcome, "success", True)

    # -- assertions --
    def assertETRN(self, reply, code, text_re=None):
        self.assertEqual(reply[0], code, "ETRN reply %r, expected %d" % (reply, code))
        if text_re is not None:
            self.assertRegex(reply[1], text_re)

    def assertQueueEmpty(self, relayd=None):
        r = relayd or self.relayd
        msgs = r.list_json()
        self.assertEqual(msgs, [], "queue should be empty")
        q = r.queue_json()
        self.assertEqual(q["totals"]["messages"], 0, q)


class SharedRelaydCase(unittest.TestCase):
    """One DNS server (cls.dns), receiving servers (cls.sinks) and relayd for a whole class:
    the subclass's setUpClass starts dns and sinks, then calls start_shared(relayd). relayd's
    log is printed when any test of the class failed, and a sanitizer report or an unclean
    exit fails the class."""

    @classmethod
    def start_shared(cls, relayd):
        cls.relayd = relayd
        cls.any_failed = False
        try:
            relayd.start()
        except BaseException:
            sys.stderr.write(relayd.log_text())
            relayd.cleanup()
            cls.sinks.stop()
            cls.dns.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        r = cls.relayd
        r.stop()
        if cls.any_failed or r.problems:
            sys.stderr.write("\n---- relayd log (%s) ----\n%s---- end of log ----\n"
                             % (r.dir, r.log_text()))
        r.cleanup()
        cls.sinks.stop()
        cls.dns.stop()
        if r.problems:
            raise AssertionError("; ".join(r.problems))

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            if len(result.failures) + len(result.errors) > before:
                type(self).any_failed = True

    def setUp(self):
        if self.relayd.proc is None or self.relayd.proc.poll() is not None:
            self.fail("relayd is not running (crashed?)")
