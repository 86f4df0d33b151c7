"""End-to-end harness: a real relayd on loopback with a temporary config and queue.

Each Relayd owns a tempfile.mkdtemp() directory holding its config, its queue and the log
it writes on stderr. The daemon runs in the foreground (`relayd -c CONF`); start() waits
for the 220 greeting with a bounded retry, stop() sends SIGTERM, waits a bounded time and
then SIGKILLs. Used as a context manager (or through HFTestCase.start_relayd) the daemon is
always stopped, even when the test fails; the log is printed when a test fails.

Clients: smtplib (send_smtplib), a raw socket dialogue (RawSMTP) for the byte-level tests
smtplib would normalise (pipelining, bare LF, smuggling), and relayctl (run, JSON parsed).

Environment (set by tests/CMakeLists.txt):
  HF_BIN_DIR     directory holding relayd and relayctl
  HF_SOURCE_DIR  source tree
  HF_SANITIZE    "1" when built with ASan/UBSan: every bound is multiplied by SLOW
No sleeps are used to synchronise; every wait has a bound.
"""

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
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HF_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))


def _default_bin_dir():
    for cand in ("build", "build-e2e"):
        d = os.path.join(SOURCE_DIR, cand, "bin")
        if os.path.exists(os.path.join(d, "relayd")):
            return d
    return os.path.join(SOURCE_DIR, "build", "bin")


BIN_DIR = os.environ.get("HF_BIN_DIR") or _default_bin_dir()
RELAYD = os.path.join(BIN_DIR, "relayd")
RELAYCTL = os.path.join(BIN_DIR, "relayctl")
SANITIZE = os.environ.get("HF_SANITIZE", "0") in ("1", "ON", "on", "true", "TRUE")
SLOW = 4.0 if SANITIZE else 1.0

HOSTNAME = "relay.holdfast.test"
CLIENT_NAME = "client.example.test"
QUEUED_RE = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})$")
SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:|"
    r"SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer"
)

# Default relay domains: a recipients file for branch.test, subdomains for backup.test,
# and open.test that accepts any local part.
DEFAULT_DOMAINS = {
    "branch.test": {"recipients": ["alice", "bob", "postmaster", "carol@branch.test"]},
    "backup.test": {"subdomains": "yes"},
    "open.test": {},
}


def timeout(seconds):
    """A bound scaled for sanitizer builds."""
    return seconds * SLOW


def free_port(host="127.0.0.1"):
    """Returns a port that was free on host a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def project_version():
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*holdfast\s+VERSION\s+([0-9.]+)", f.read())
    return m.group(1) if m else None


class RelaydError(AssertionError):
    pass


class Relayd:
    """One relayd process with its own directory, config and queue."""

    def __init__(self, conf=None, domains=None, workdir=None, log_level="info"):
        self.own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="hf-e2e-")
        self.port = None
        self.proc = None
        self.conf_path = os.path.join(self.dir, "relayd.conf")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.log_path = os.path.join(self.dir, "relayd.log")
        self.conf = {
            "hostname": HOSTNAME,
            "queue_dir": "./queue",  # relative to the config file's directory
            "control_socket": "./relayd.sock",
            "log": "stderr",
            "log_level": log_level,
        }
        self.conf.update(conf or {})
        self.fixed_listen = "listen" in self.conf
        self.domains = DEFAULT_DOMAINS if domains is None else domains
        self.starts = 0
        self.exit_problems = []

    # ---- config -----------------------------------------------------------------------

    def write_config(self):
        lines = ["# written by tests/e2e/hfharness.py"]
        for k, v in self.conf.items():
            lines.append("%s = %s" % (k, v))
        for name, opts in self.domains.items():
            lines.append("")
            lines.append("[domain %s]" % name)
            for k, v in opts.items():
                if k == "recipients":
                    fname = "%s.recipients" % name
                    with open(os.path.join(self.dir, fname), "w") as f:
                        f.write("".join(r + "\n" for r in v))
                    lines.append("recipients = %s" % fname)
                else:
                    lines.append("%s = %s" % (k, v))
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    # ---- process ----------------------------------------------------------------------

    def start(self, expect_ready=True):
        """Starts relayd on a fresh free port and waits for its 220 greeting."""
        assert self.proc is None, "already running"
        if not os.path.exists(RELAYD):
            raise unittest.SkipTest("relayd not built at %s" % RELAYD)
        if self.fixed_listen:
            self.port = int(self.conf["listen"].split()[0].rsplit(":", 1)[1])
        else:
            # A fresh port each start: a restart never races a lingering socket.
            self.port = free_port()
            self.conf["listen"] = "127.0.0.1:%d" % self.port
        self.write_config()
        self.starts += 1
        self.log = open(self.log_path, "ab")
        self.log.write(b"==== start %d: %s -c %s\n" % (self.starts, RELAYD.encode(),
                                                      self.conf_path.encode()))
        self.log.flush()
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen([RELAYD, "-c", self.conf_path], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, cwd=self.dir, env=env)
        if expect_ready:
            self.wait_ready()
        return self

    def wait_ready(self, bound=20.0):
        """Polls connect() every 50 ms until the greeting arrives (at most bound seconds).
        The probe connects from 127.0.0.2 so it never counts against 127.0.0.1's
        per-address connection limit."""
        deadline = time.monotonic() + timeout(bound)
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RelaydError("relayd exited with status %s before greeting\n%s"
                                  % (self.proc.returncode, self.log_text()))
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.bind(("127.0.0.2", 0))
                except OSError:
                    pass
                s.settimeout(timeout(5))
                s.connect(("127.0.0.1", self.port))
            except OSError as e:
                s.close()
                last = e
                # Not listening yet: wait for the process to change state, at most 50 ms.
                try:
                    self.proc.wait(0.05)
                except subprocess.TimeoutExpired:
                    pass
                continue
            try:
                f = s.makefile("rb")
                line = f.readline()
            except OSError as e:
                f.close()
                s.close()
                last = e
                continue
            if not line.startswith(b"220"):
                f.close()
                s.close()
                raise RelaydError("unexpected greeting %r\n%s" % (line, self.log_text()))
            try:
                s.sendall(b"QUIT\r\n")
                while f.readline():  # 221, then EOF: the session is gone
                    pass
            except OSError:
                pass
            finally:
                f.close()
                s.close()
            return
        raise RelaydError("relayd did not greet within %.0f s (%s)\n%s"
                          % (timeout(bound), last, self.log_text()))

    def stop(self, bound=15.0):
        """SIGTERM, bounded wait, then SIGKILL. Records a problem (checked by the test
        case) when relayd needed SIGKILL, exited non-zero or left a sanitizer report."""
        if self.proc is None:
            return None
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout(bound))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout(10))
                self.exit_problems.append("relayd ignored SIGTERM for %.0f s (SIGKILLed)"
                                          % timeout(bound))
        if p.returncode != 0 and not any("SIGKILL" in x for x in self.exit_problems):
            self.exit_problems.append("relayd exited with status %s after SIGTERM"
                                      % p.returncode)
        self.log.close()
        self.check_sanitizer()
        return p.returncode

    def kill(self):
        """SIGKILL, as a crash would; waits for the process to be gone."""
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        p.kill()
        p.wait(timeout(10))
        self.log.close()
        self.check_sanitizer()

    def run_to_exit(self, bound=20.0):
        """Starts relayd expecting it to exit by itself (bad config, bad queue). Returns
        (status, log text of this start). Kills it when it does not exit in time."""
        self.start(expect_ready=False)
        p = self.proc
        try:
            p.wait(timeout(bound))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout(10))
            self.proc = None
            self.log.close()
            raise RelaydError("relayd did not exit within %.0f s\n%s"
                              % (timeout(bound), self.log_text()))
        self.proc = None
        self.log.close()
        text = self.log_text().split("==== start %d:" % self.starts, 1)[-1]
        return p.returncode, text

    def check_sanitizer(self):
        text = self.log_text()
        if SANITIZER_RE.search(text):
            self.exit_problems.append("sanitizer report in relayd's log")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- clients ----------------------------------------------------------------------

    def raw(self, greet=True, source=None):
        return RawSMTP(self.port, greet=greet, source=source)

    def smtp(self):
        s = smtplib.SMTP(timeout=timeout(30))
        s.connect("127.0.0.1", self.port)
        return s

    def relayctl(self, *args, **kw):
        return relayctl(*args, queue=self.queue_dir, **kw)

    def relayctl_json(self, *args):
        return relayctl_json(*args, queue=self.queue_dir)


# ---- relayctl ---------------------------------------------------------------------------

def relayctl(*args, queue=None, conf=None, check=False, bound=60.0):
    """Runs relayctl with -q QUEUE (or -c CONF) and args. Returns CompletedProcess with
    bytes stdout/stderr."""
    if not os.path.exists(RELAYCTL):
        raise unittest.SkipTest("relayctl not built at %s" % RELAYCTL)
    cmd = [RELAYCTL]
    if queue is not None:
        cmd += ["-q", queue]
    if conf is not None:
        cmd += ["-c", conf]
    cmd += list(args)
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout(bound))
    if SANITIZER_RE.search(r.stderr.decode("utf-8", "replace")):
        raise AssertionError("sanitizer report from %s:\n%s" % (cmd, r.stderr.decode()))
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (cmd, r.returncode,
                                                   r.stderr.decode("utf-8", "replace")))
    return r


def relayctl_json(*args, queue=None, conf=None):
    r = relayctl(*args, "--json", queue=queue, conf=conf, check=True)
    try:
        return json.loads(r.stdout.decode("utf-8"))
    except ValueError as e:
        raise AssertionError("relayctl %s --json printed invalid JSON (%s): %r"
                             % (" ".join(args), e, r.stdout[:2000]))


# ---- raw SMTP -------------------------------------------------------------------------

class Reply:
    """One SMTP reply: code, lines (text after "NNN-" / "NNN "), and the raw bytes."""

    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines
        self.raw = raw

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def first(self):
        return self.lines[0] if self.lines else ""

    def enhanced(self):
        """The enhanced status code (RFC 3463) at the start of the first line, or None."""
        m = re.match(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)", self.first)
        return m.group(0).strip() if m else None

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


class ConnectionClosed(AssertionError):
    pass


class RawSMTP:
    """A byte-level SMTP dialogue: send exactly these octets, read replies in order."""

    def __init__(self, port, greet=True, source=None, bound=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout(bound))
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.eof = False
        self.greeting = self.reply() if greet else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, bound):
        self.sock.settimeout(timeout(bound))
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _line(self, bound):
        while b"\r\n" not in self.buf:
            if self.eof or not self._fill(bound):
                raise ConnectionClosed("connection closed; unparsed %r" % self.buf)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self, bound=10.0):
        """Reads one (possibly multi-line) reply; raises socket.timeout after bound s."""
        lines, raw, code = [], b"", None
        while True:
            line = self._line(bound)
            raw += line + b"\r\n"
            m = re.match(rb"^(\d{3})([ -])(.*)$", line) or re.match(rb"^(\d{3})()()$", line)
            if not m:
                raise AssertionError("malformed reply line %r" % line)
            c = int(m.group(1))
            if code is not None and c != code:
                raise AssertionError("reply code changed within reply: %r" % raw)
            code = c
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) != b"-":
                return Reply(code, lines, raw)

    def replies(self, n, bound=10.0):
        return [self.reply(bound) for _ in range(n)]

    def cmd(self, line, bound=10.0):
        self.send(line.encode("utf-8") + b"\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(bound)

    def pending(self, bound=0.3):
        """True if bytes (an unexpected reply) arrive within bound seconds (not scaled).
        Used only to check that nothing more was said, never to wait for progress."""
        if self.buf:
            return True
        if self.eof:
            return False
        self.sock.settimeout(bound)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def wait_closed(self, bound=10.0):
        """Reads until EOF (at most bound seconds); returns the replies read meanwhile."""
        out = []
        deadline = time.monotonic() + timeout(bound)
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection not closed within %.0f s" % timeout(bound))
            if b"\r\n" in self.buf:
                out.append(self.reply(left / SLOW))
                continue
            try:
                self._fill(left / SLOW)
            except socket.timeout:
                raise AssertionError("connection not closed within %.0f s" % timeout(bound))
        while b"\r\n" in self.buf:
            out.append(self.reply())
        return out

    def ehlo(self, name=CLIENT_NAME):
        r = self.cmd("EHLO " + name)
        if r.code != 250:
            raise AssertionError("EHLO refused: %r" % r)
        return r

    def data_reply(self, body, stuff=True, bound=60.0):
        """After a 354: sends body (dot-stuffed when stuff), then CRLF.CRLF; returns the
        reply. body must end with CRLF unless empty (the terminator adds '.' CRLF)."""
        payload = dot_stuff(body) if stuff else body
        self.send(payload + b".\r\n")
        return self.reply(bound)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def dot_stuff(body):
    """RFC 5321 4.5.2: a line starting with '.' gets one more."""
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..")


def queued_id(reply):
    """The queue id of a '250 2.0.0 Ok: queued as ID' reply (Reply or smtplib's pair)."""
    if isinstance(reply, Reply):
        code, text = reply.code, reply.text
    else:
        code, text = reply[0], reply[1].decode("utf-8", "replace")
    m = QUEUED_RE.match(text)
    if code != 250 or not m:
        raise AssertionError("expected '250 2.0.0 Ok: queued as <16 hex>', got %d %r"
                             % (code, text))
    return m.group(1).upper()


def send_raw(relayd, sender, rcpts, body, mail_params="", helo=CLIENT_NAME):
    """One transaction over a raw socket; body bytes are sent dot-stuffed, unchanged
    otherwise. Returns the queue id; fails the test on any refusal."""
    with relayd.raw() as c:
        c.ehlo(helo)
        r = c.cmd("MAIL FROM:<%s>%s" % (sender, (" " + mail_params) if mail_params else ""))
        assert r.code == 250, "MAIL: %r" % r
        for rc in rcpts:
            r = c.cmd("RCPT TO:<%s>" % rc)
            assert r.code == 250, "RCPT %s: %r" % (rc, r)
        r = c.cmd("DATA")
        assert r.code == 354, "DATA: %r" % r
        qid = queued_id(c.data_reply(body))
        c.cmd("QUIT")
        return qid


def send_smtplib(relayd, sender, rcpts, body, mail_options=(), rcpt_options=()):
    """One transaction with smtplib (low-level calls, so the DATA reply with the queue id
    is seen). body should use CRLF line ends (smtplib rewrites bare ones). Returns the
    queue id."""
    s = relayd.smtp()
    try:
        s.ehlo(CLIENT_NAME)
        code, msg = s.mail(sender, list(mail_options))
        assert code == 250, "MAIL: %d %r" % (code, msg)
        for rc in rcpts:
            code, msg = s.rcpt(rc, list(rcpt_options))
            assert code == 250, "RCPT %s: %d %r" % (rc, code, msg)
        return queued_id(s.data(body))
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()


def split_received(stored):
    """Splits a stored message into (Received: header field with its CRLF, the rest).
    The field ends at the first CRLF not followed by a folding blank."""
    assert stored.startswith(b"Received: "), "stored message does not start with " \
        "'Received: ': %r" % stored[:200]
    pos = 0
    while True:
        i = stored.find(b"\r\n", pos)
        assert i >= 0, "unterminated Received: header: %r" % stored[:500]
        if stored[i + 2:i + 3] in (b" ", b"\t"):
            pos = i + 2
            continue
        return stored[:i + 2], stored[i + 2:]


def make_body(subject, text, extra_headers=()):
    hdrs = [b"From: Sender <sender@example.test>", b"To: alice@branch.test",
            b"Subject: " + subject.encode()] + [h.encode() if isinstance(h, str) else h
                                                for h in extra_headers]
    if isinstance(text, str):
        text = text.encode()
    return b"\r\n".join(hdrs) + b"\r\n\r\n" + text


# ---- test case base -------------------------------------------------------------------

class HFTestCase(unittest.TestCase):
    """Stops every daemon a test started, prints their logs when the test failed, and
    fails the test when a daemon left a sanitizer report or did not stop cleanly."""

    def start_relayd(self, conf=None, domains=None, workdir=None, start=True, **kw):
        d = Relayd(conf=conf, domains=domains, workdir=workdir, **kw)
        self._daemons.append(d)
        if start:
            d.start()
        return d

    def run(self, result=None):
        self._daemons = []
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            failed = len(result.failures) + len(result.errors) > before
            for d in self._daemons:
                if failed:
                    sys.stderr.write("\n---- relayd log (%s) ----\n%s---- end of log ----\n"
                                     % (d.dir, d.log_text()))
                d.cleanup()

    def setUp(self):
        self.addCleanup(self._check_daemons)

    def _check_daemons(self):
        problems = []
        for d in self._daemons:
            d.stop()
            problems += d.exit_problems
        if problems:
            self.fail("; ".join(problems))

    # ---- assertions -------------------------------------------------------------------

    def assertReply(self, reply, code, enhanced=None, msg=None):
        what = "%r" % reply
        self.assertEqual(reply.code, code, msg or what)
        if enhanced is not None:
            self.assertEqual(reply.enhanced(), enhanced, msg or what)


class HFClassTestCase(HFTestCase):
    """One relayd for the whole class (CONF/DOMAINS class attributes); tests use fresh
    connections. A failure in any test prints the shared log."""

    CONF = None
    DOMAINS = None

    @classmethod
    def setUpClass(cls):
        cls.relayd = Relayd(conf=cls.CONF, domains=cls.DOMAINS)
        try:
            cls.relayd.start()
        except BaseException:
            sys.stderr.write(cls.relayd.log_text())
            cls.relayd.cleanup()
            raise
        cls.any_failed = False

    @classmethod
    def tearDownClass(cls):
        d = cls.relayd
        d.stop()
        if cls.any_failed or d.exit_problems:
            sys.stderr.write("\n---- relayd log (%s) ----\n%s---- end of log ----\n"
                             % (d.dir, d.log_text()))
        d.cleanup()
        if d.exit_problems:
            raise AssertionError("; ".join(d.exit_problems))

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
        super().setUp()
        if not self.relayd.running():
            self.fail("shared relayd is not running (crashed?)")
