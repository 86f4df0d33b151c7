"""Helpers for fetchd's end-to-end tests (tests/e2e/test_fetchd_*.py).

  Fetchd     the real fetchd with a temporary config: `--once` runs (exit code + log), or a
             foreground daemon (-f) whose stderr goes to a log file that tests poll with a
             deadline. Optionally inside a network namespace (ip netns exec).
  Sink       a python3-aiosmtpd server standing in for the branch office's MX / local MTA
             on 127.0.0.x:P; it records every message.
  ZoneDNS    a python3-dnslib server on a free 127.0.0.1 port serving a small zone (MX, A).
  Netns      two network namespaces joined by a veth pair (fetchd's link is one end), always
             deleted by cleanup(); NetnsRelayd runs relayd inside one of them.

Relayd itself is hfharness.Relayd. Every wait has a bound (scaled by SLOW under ASan); the
only polling is of log files and process state, never a sleep standing in for an event.
Only 127.0.0.0/8 and the tests' own namespaces are used.
"""

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from aiosmtpd.controller import Controller
from dnslib import A, MX, QTYPE, RR, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer

import hfharness
from hfharness import BIN_DIR, SANITIZER_RE, SLOW, free_port, timeout

FETCHD = os.path.join(BIN_DIR, "fetchd")


def wait_until(pred, seconds, what, poll=0.05):
    """Polls pred() until it is true or the (scaled) bound runs out."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout(seconds), what))
        threading.Event().wait(poll)  # bounded poll interval, not a synchronisation sleep


# ---- receiving SMTP server ----------------------------------------------------------------

class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        with self.sink.lock:
            self.sink.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                       envelope.original_content or envelope.content))
        return "250 2.0.0 Ok: stored"


class Sink:
    """aiosmtpd on host:port recording (mail_from, rcpts, data) per message."""

    def __init__(self, host="127.0.0.2", port=None):
        self.host = host
        self.port = port or free_port(host)
        self.lock = threading.Lock()
        self.messages = []
        self.ctl = None

    def start(self):
        self.ctl = Controller(_Handler(self), hostname=self.host, port=self.port,
                              decode_data=False, ready_timeout=timeout(10))
        self.ctl.start()
        return self

    def stop(self):
        if self.ctl:
            self.ctl.stop()
            self.ctl = None

    def wait_messages(self, n, seconds=20):
        def have():
            with self.lock:
                return len(self.messages) >= n
        wait_until(have, seconds, "%d message(s) at %s:%d" % (n, self.host, self.port))
        with self.lock:
            return list(self.messages)


# ---- DNS ------------------------------------------------------------------------------------

class _Zone(BaseResolver):
    def __init__(self, zone):
        self.zone = zone

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        if name not in self.zone:
            reply.header.rcode = 3  # NXDOMAIN
            return reply
        for rtype, rdata in self.zone[name]:
            if rtype == qtype:
                reply.add_answer(RR(DNSLabel(name), getattr(QTYPE, rtype), rdata=rdata, ttl=60))
        return reply


class ZoneDNS:
    """UDP and TCP on one free 127.0.0.1 port. zone: name -> [("MX", MX(..)), ("A", A(..))]."""

    def __init__(self, zone):
        self.zone = zone
        self.servers = []
        self.port = None

    def start(self):
        logger = DNSLogger(log="-request,-reply,-truncated,-recv,-send,-data,-error")
        self.port = free_port()
        for tcp in (False, True):
            s = DNSServer(_Zone(self.zone), address="127.0.0.1", port=self.port, tcp=tcp,
                          logger=logger)
            s.start_thread()
            self.servers.append(s)
        return self

    def stop(self):
        for s in self.servers:
            s.stop()
        self.servers = []


# ---- fetchd ----------------------------------------------------------------------------------

class Fetchd:
    """One fetchd config in its own directory. globals: key -> value; relays: name -> dict."""

    def __init__(self, globals_=None, relays=None, netns=None, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="hf-fetchd-")
        self.conf_path = os.path.join(self.dir, "fetchd.conf")
        self.log_path = os.path.join(self.dir, "fetchd.log")
        self.globals = {"log": "stderr", "log_level": "debug", "hostname": "branch.example.test",
                        "local_mta_wait": "0", "retry_delay": "1", "retry_limit": "3"}
        self.globals.update(globals_ or {})
        self.relays = relays or {}
        self.netns = netns
        self.proc = None
        self.logf = None
        self.problems = []

    def write_config(self, extra=""):
        lines = ["# written by tests/e2e/fetchdlib.py"]
        lines += ["%s = %s" % kv for kv in self.globals.items()]
        for name, opts in self.relays.items():
            lines += ["", "[relay %s]" % name] + ["%s = %s" % kv for kv in opts.items()]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)
        return self.conf_path

    def _cmd(self, *args):
        if not os.path.exists(FETCHD):
            raise unittest.SkipTest("fetchd not built at %s" % FETCHD)
        cmd = [FETCHD, "-c", self.conf_path] + list(args)
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd

    def _env(self):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return env

    def run(self, *args, seconds=60):
        """Runs fetchd with args to its exit. Returns (exit code, stdout+stderr text)."""
        r = subprocess.run(self._cmd(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout(seconds), env=self._env())
        text = r.stdout.decode("utf-8", "replace")
        with open(self.log_path, "a") as f:
            f.write("==== %s\n%s" % (" ".join(args), text))
        if SANITIZER_RE.search(text):
            self.problems.append("sanitizer report from fetchd %s" % " ".join(args))
        return r.returncode, text

    def start(self, *args):
        """Starts fetchd (by default -f: foreground) with its log going to log_path."""
        assert self.proc is None
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._cmd(*(args or ("-f",))), stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf, env=self._env())
        return self

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def count(self, pattern):
        return len(re.findall(pattern, self.log_text(), re.M))

    def wait_log(self, pattern, seconds=20, count=1):
        """Waits until pattern (a regex, multiline) matches count times in the log."""
        def seen():
            if self.proc is not None and self.proc.poll() is not None and \
                    self.count(pattern) < count:
                raise AssertionError("fetchd exited (%s) before %r\n%s"
                                     % (self.proc.returncode, pattern, self.log_text()))
            return self.count(pattern) >= count
        wait_until(seen, seconds, "%d x %r in fetchd's log" % (count, pattern))

    def wait_exit(self, seconds=60):
        try:
            return self.proc.wait(timeout(seconds))
        except subprocess.TimeoutExpired:
            raise AssertionError("fetchd did not exit within %.0f s\n%s"
                                 % (timeout(seconds), self.log_text()))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, seconds=15):
        if self.proc is None:
            return None
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout(seconds))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout(10))
                self.problems.append("fetchd ignored SIGTERM (SIGKILLed)")
        self.logf.close()
        if SANITIZER_RE.search(self.log_text()):
            self.problems.append("sanitizer report in fetchd's log")
        return p.returncode


# ---- network namespaces ------------------------------------------------------------------

def _ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout(20), check=check)


class Netns:
    """Two namespaces, `inner` (fetchd's) and `peer`, joined by a veth pair: `dev` in inner,
    its peer in `peer`. Nothing is added to the host's own namespace."""

    def __init__(self):
        tag = "%d" % (os.getpid() % 100000)
        self.inner = "hf-fetchd-%s" % tag
        self.peer = "hf-fetchp-%s" % tag
        self.dev = "hfl%s" % tag
        self.peer_dev = "hfp%s" % tag
        self.made = []

    def create(self):
        """Creates both namespaces and the link; raises unittest.SkipTest when this
        machine cannot (not root, no CAP_SYS_ADMIN, no veth)."""
        for ns in (self.inner, self.peer):
            _ip("netns", "del", ns, check=False)
        try:
            for ns in (self.inner, self.peer):
                _ip("netns", "add", ns)
                self.made.append(ns)
            _ip("link", "add", self.dev, "netns", self.inner, "type", "veth", "peer", "name",
                self.peer_dev, "netns", self.peer)
        except (subprocess.CalledProcessError, FileNotFoundError, PermissionError) as e:
            err = getattr(e, "stderr", b"") or b""
            self.cleanup()
            raise unittest.SkipTest("cannot create network namespaces here (%s): %s"
                                    % (e, err.decode("utf-8", "replace").strip()))
        self.exec_ip(self.inner, "link", "set", "lo", "up")
        self.exec_ip(self.peer, "link", "set", self.peer_dev, "up")
        self.exec_ip(self.inner, "addr", "add", "10.213.7.2/24", "dev", self.dev)
        self.exec_ip(self.peer, "addr", "add", "10.213.7.1/24", "dev", self.peer_dev)
        return self

    def exec_ip(self, ns, *args, check=True):
        return _ip("-n", ns, *args, check=check)

    def link(self, up):
        """Takes fetchd's end of the link down or up; up also restores the default route
        (the kernel drops it with the link)."""
        self.exec_ip(self.inner, "link", "set", self.dev, "up" if up else "down")
        if up:
            self.exec_ip(self.inner, "route", "replace", "default", "via", "10.213.7.1",
                         "dev", self.dev, check=False)

    def cleanup(self):
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made = []


class NetnsRelayd(hfharness.Relayd):
    """hfharness.Relayd, run inside a namespace; ready when it logs "listening on"."""

    def __init__(self, netns, **kw):
        super().__init__(**kw)
        self.netns = netns

    def start(self, expect_ready=True):
        assert self.proc is None
        if not os.path.exists(hfharness.RELAYD):
            raise unittest.SkipTest("relayd not built at %s" % hfharness.RELAYD)
        self.port = free_port()  # the namespace's loopback is empty: any port is free there
        self.conf["listen"] = "127.0.0.1:%d" % self.port
        self.write_config()
        self.starts += 1
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, hfharness.RELAYD, "-c",
                                      self.conf_path], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, cwd=self.dir)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("relayd exited in the namespace\n" + self.log_text())
            return "listening on" in self.log_text()
        wait_until(listening, 20, "relayd listening in namespace %s" % self.netns)
        return self
