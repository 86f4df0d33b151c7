"""relayctl's read commands against a queue filled through SMTP (issue 6).

Four messages go in with smtplib for a.test, b.test, sub.b.test and c.test (one with DSN
parameters and 8BITMIME, one larger than a body chunk, one with a line that needs dot
stuffing); `relayctl queue`, `list`, `show` and `mailq` (human and --json) must say exactly
what was sent: senders, recipients, sizes, arrival times, the stored bytes. The read commands
must keep working on the queue directory when relayd is stopped, and the commands that act
must then exit 5 with "relayd is not running".

This file also holds RelayctlCase, the fixture the other test_relayctl_*.py files import:
a relayd (etrnlib.Relayd) with a control socket and a metrics endpoint, an aiosmtpd sink on
127.0.0.2 as the static next hop of a.test and b.test (with subdomains), and 127.0.0.3 as
the next hop of c.test, bound but never listening (connect() refused: "the MX is down").
"""

import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import CLIENT_NAME, QUEUED_RE, RELAYCTL, SANITIZER_RE, bound, free_port  # noqa: E402

SINK = "127.0.0.2"      # the test MX, up
DEAD = "127.0.0.3"      # bound, never listening: connection refused
NORELAYD = "relayd is not running"


# ---- relayctl -----------------------------------------------------------------------------

class Ctl:
    """One relayctl run: rc, out and err (text), raw (stdout bytes)."""

    def __init__(self, args, p):
        self.args = args
        self.rc = p.returncode
        self.raw = p.stdout
        self.out = p.stdout.decode("utf-8", "replace")
        self.err = p.stderr.decode("utf-8", "replace")

    def __repr__(self):
        return "relayctl %s -> exit %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(self.args), self.rc, self.out, self.err)


def _env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def run_ctl(argv, stdin=subprocess.DEVNULL, seconds=60):
    if not os.path.exists(RELAYCTL):
        raise unittest.SkipTest("relayctl not built at %s" % RELAYCTL)
    p = subprocess.run(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=bound(seconds), env=_env())
    c = Ctl(argv[1:], p)
    if SANITIZER_RE.search(c.err):
        raise AssertionError("sanitizer report from %r" % c)
    return c


# ---- SMTP -----------------------------------------------------------------------------------

def send(relayd, sender, rcpts, body, mail_options=(), rcpt_options=()):
    """One transaction with smtplib; body is bytes with CRLF line ends ending in CRLF (so the
    stored message is the Received: field followed by exactly these bytes). Returns the id."""
    s = relayd.smtp()
    try:
        s.ehlo(CLIENT_NAME)
        code, msg = s.mail(sender, list(mail_options))
        if code != 250:
            raise AssertionError("MAIL FROM:<%s>: %d %r" % (sender, code, msg))
        for rc in rcpts:
            code, msg = s.rcpt(rc, list(rcpt_options))
            if code != 250:
                raise AssertionError("RCPT TO:<%s>: %d %r" % (rc, code, msg))
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


def body_of(subject, text, to):
    if isinstance(text, str):
        text = text.encode("utf-8")
    return (b"From: Sender <sender@example.org>\r\nTo: " + to.encode() + b"\r\nSubject: " +
            subject.encode() + b"\r\nMessage-ID: <" + subject.replace(" ", ".").encode() +
            b"@example.org>\r\n\r\n" + text)


class Sent:
    """What fill() sent: id -> {"sender", "rcpts", "body", "flags", ...}; the time window of
    the sending."""

    def __init__(self):
        self.msgs = {}
        self.order = []
        self.t0 = self.t1 = None

    def add(self, qid, sender, rcpts, body, **extra):
        d = {"sender": sender, "rcpts": list(rcpts), "body": body}
        d.update(extra)
        self.msgs[qid] = d
        self.order.append(qid)

    def by_domain(self, domain, subdomains=False):
        """id -> recipients of that id in domain (and its subdomains)."""
        out = {}
        for qid in self.order:
            for r in self.msgs[qid]["rcpts"]:
                d = r.split("@", 1)[1]
                if d == domain or (subdomains and d.endswith("." + domain)):
                    out.setdefault(qid, []).append(r)
        return out


def human_bytes(n):
    """relayctl's human size: "512", "1.5K", "40K", "3.2M"."""
    if n < 1024:
        return str(n)
    v, u = float(n), -1
    while v >= 1024.0 and u < 5:
        v /= 1024.0
        u += 1
    return ("%.1f%s" if v < 10.0 else "%.0f%s") % (v, "KMGTPE"[u])


# ---- the fixture ----------------------------------------------------------------------------

class RelayctlCase(etrnlib.ETRNTestCase):
    UP = (SINK,)
    DOWN = (DEAD,)
    CONF = {}

    def domains(self):
        p = self.sinks.port
        return {
            "a.test": {"next_hop": "[%s]:%d" % (SINK, p)},
            "b.test": {"next_hop": "[%s]:%d" % (SINK, p), "subdomains": "yes", "hold": "yes"},
            "c.test": {"next_hop": "[%s]:%d" % (DEAD, p)},
        }

    def policy(self, domain):
        """The policy column relayctl derives from the configuration."""
        p = self.sinks.port
        return {"a.test": "next-hop [%s]:%d" % (SINK, p),
                "b.test": "next-hop [%s]:%d,hold" % (SINK, p),
                "sub.b.test": "next-hop [%s]:%d,hold" % (SINK, p),
                "c.test": "next-hop [%s]:%d" % (DEAD, p)}[domain]

    def start_relayd(self, conf=None, domains=None, groups=None):
        """etrnlib's relayd plus metrics_listen on a free port (another port when another
        process took it between the probe and relayd's bind)."""
        last = None
        for _ in range(5):
            c = dict(self.CONF)
            c.update(conf or {})
            mport = free_port()
            c["metrics_listen"] = "127.0.0.1:%d" % mport
            r = etrnlib.Relayd(self.dns.port, self.sinks.port,
                               self.domains() if domains is None else domains,
                               self.GROUPS if groups is None else groups, c)
            r.metrics_port = mport
            try:
                r.start()
            except etrnlib.RelaydError as e:
                text = r.log_text()
                r.stop()
                r.cleanup()
                if re.search(r"metrics_listen \S+: err=EADDRINUSE", text):
                    last = e
                    continue
                raise
            self._relayds = getattr(self, "_relayds", [])
            self._relayds.append(r)
            self.addCleanup(self._stop_relayd, r)
            return r
        raise last

    # -- relayctl with this relayd's configuration --
    def ctl(self, *args, relayd=None, stdin=subprocess.DEVNULL, seconds=60):
        r = relayd or self.relayd
        return run_ctl([RELAYCTL, "-c", r.conf_path] + list(args), stdin=stdin, seconds=seconds)

    def ok(self, *args, **kw):
        c = self.ctl(*args, **kw)
        self.assertEqual(c.rc, 0, c)
        return c

    def json(self, *args, **kw):
        c = self.ok(*(list(args) + ["--json"]), **kw)
        self.assertTrue(c.out.endswith("\n") and c.out.count("\n") == 1,
                        "--json must print one line: %r" % c)
        try:
            return json.loads(c.out)
        except ValueError as e:
            raise AssertionError("invalid JSON (%s): %r" % (e, c))

    def fails(self, code, *args, err_re=None, **kw):
        c = self.ctl(*args, **kw)
        self.assertEqual(c.rc, code, c)
        if err_re is not None:
            self.assertRegex(c.err, err_re, c)
        return c

    def stats(self):
        return self.json("stats")

    def queue_by_domain(self):
        return {d["domain"]: d for d in self.json("queue")["domains"]}

    def listed(self, *args):
        return {m["id"]: m for m in self.json("list", *args)["messages"]}

    def stored(self, qid):
        c = self.ok("show", qid, "--body")
        return c.raw

    def metrics(self, path="/metrics"):
        url = "http://127.0.0.1:%d%s" % (self.relayd.metrics_port, path)
        try:
            with urllib.request.urlopen(url, timeout=bound(10)) as resp:
                return resp.status, dict(resp.headers), resp.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode("utf-8", "replace")

    # -- the standard queue --
    def fill(self):
        """Four messages for a.test, b.test, sub.b.test and c.test. Returns Sent."""
        r = self.relayd
        s = Sent()
        s.t0 = int(time.time())
        # M1: two recipients in a.test; a line starting with a dot (stuffed on the wire).
        b1 = body_of("m1", "first line\r\n.a line starting with a dot\r\n..two dots\r\n",
                     "u1@a.test")
        s.add(send(r, "alice@example.org", ["u1@a.test", "u2@a.test"], b1), "alice@example.org",
              ["u1@a.test", "u2@a.test"], b1, flags=[])
        # M2: a.test, b.test and sub.b.test; ~40 KiB, more than one 32 KiB body chunk.
        lines = b"".join(b"line %05d of a long message for three domains.........\r\n" % i
                         for i in range(700))
        b2 = body_of("m2", lines, "u1@b.test")
        rc2 = ["u1@b.test", "u3@sub.b.test", "u4@a.test"]
        s.add(send(r, "bob@example.org", rc2, b2), "bob@example.org", rc2, b2, flags=[])
        # M3: null sender, 8BITMIME with UTF-8 text, DSN parameters.
        b3 = body_of("m3", "Gr\u00fc\u00dfe aus K\u00f6ln \u2013 8-bit body\r\n", "u5@c.test")
        s.add(send(r, "", ["u5@c.test"], b3,
                   mail_options=["BODY=8BITMIME", "RET=HDRS", "ENVID=env-m3"],
                   rcpt_options=["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;u5@c.test"]),
              "", ["u5@c.test"], b3, flags=["8BITMIME"], ret="HDRS", envid="env-m3",
              notify=["FAILURE", "DELAY"], orcpt="rfc822;u5@c.test")
        # M4: one recipient in sub.b.test.
        b4 = body_of("m4", "to the subdomain\r\n", "u6@sub.b.test")
        s.add(send(r, "carol@example.org", ["u6@sub.b.test"], b4), "carol@example.org",
              ["u6@sub.b.test"], b4, flags=[])
        s.t1 = int(time.time()) + 1
        # The stored message is the Received: field and then the bytes sent.
        for qid, m in s.msgs.items():
            st = self.stored(qid)
            self.assertTrue(st.startswith(b"Received: "), st[:300])
            rec, rest = st.split(b"\r\n", 1)
            self.assertIn(qid.encode(), st[:st.index(b"\r\nFrom: ")], "Received: names the id")
            self.assertTrue(st.endswith(b"\r\n" + m["body"]),
                            "stored message of %s does not end with the bytes sent" % qid)
            m["stored"] = st
            m["size"] = len(st)
        return s


# ---- tests ----------------------------------------------------------------------------------

class Inspect(RelayctlCase):

    def check_message(self, m, sent, qid, rcpts=None, state="pending"):
        """A MESSAGE object of list/show --json against what was sent."""
        want = sent.msgs[qid]
        self.assertEqual(m["id"], qid)
        self.assertEqual(m["sender"], want["sender"])
        self.assertEqual(m["size"], want["size"], "size = octets stored (show --body)")
        self.assertTrue(sent.t0 <= m["arrival"] <= sent.t1, (m["arrival"], sent.t0, sent.t1))
        self.assertEqual(m["flags"], want["flags"])
        self.assertEqual(m["client_name"], CLIENT_NAME)
        self.assertEqual(m["client_addr"], "127.0.0.1")
        self.assertEqual(m["envid"], want.get("envid", ""))
        self.assertEqual(m["ret"], want.get("ret"))
        expect = want["rcpts"] if rcpts is None else rcpts
        self.assertEqual([x["addr"] for x in m["rcpts"]], expect)
        for x in m["rcpts"]:
            self.assertEqual(x["domain"], x["addr"].split("@", 1)[1])
            self.assertEqual(x["state"], state, x)
            self.assertEqual((x["attempts"], x["next_attempt"], x["last_attempt"],
                              x["last_error"]), (0, 0, 0, ""), x)
            self.assertEqual(x["orcpt"], want.get("orcpt", ""), x)
            self.assertEqual(x["notify"], want.get("notify", []), x)

    def test_queue_list_show_match_what_was_sent(self):
        sent = self.fill()
        size = {q: m["size"] for q, m in sent.msgs.items()}
        # Arrival times as relayctl reports them (checked against the sending window in
        # check_message); "oldest" is the earliest arrival among a domain's messages.
        arrival = {q: m["arrival"] for q, m in self.listed().items()}
        expect = {}
        for d in ("a.test", "b.test", "sub.b.test", "c.test"):
            ids = sent.by_domain(d)
            expect[d] = {"messages": len(ids), "rcpts": sum(len(v) for v in ids.values()),
                         "bytes": sum(size[q] for q in ids),
                         "oldest": min(arrival[q] for q in ids)}
        for q in sent.order:
            sent.msgs[q]["arrival"] = arrival[q]

        # ---- queue --json ----
        qj = self.json("queue")
        self.assertIs(qj["relayd_running"], True)
        doms = {d["domain"]: d for d in qj["domains"]}
        self.assertEqual(sorted(doms), sorted(expect))
        for d, e in expect.items():
            got = doms[d]
            self.assertEqual((got["messages"], got["rcpts"], got["bytes"], got["oldest"]),
                             (e["messages"], e["rcpts"], e["bytes"], e["oldest"]), (d, got))
            self.assertIs(got["held"], False, got)
            self.assertEqual(got["policy"], self.policy(d), got)
            self.assertEqual((got["last_attempt"], got["last_result"]), (0, ""), got)
            self.assertIs(got["flushing"], False, got)
        t = qj["totals"]
        self.assertEqual((t["messages"], t["rcpts"], t["bytes"]),
                         (4, 7, sum(size.values())), t)
        self.assertGreater(t["map_size"], 0)
        self.assertGreater(t["map_used"], 0)
        self.assertLessEqual(t["map_used"], t["map_size"])

        # ---- queue (human) ----
        out = self.ok("queue").out.splitlines()
        self.assertRegex(out[0], r"^DOMAIN\s+MESSAGES\s+RCPTS\s+SIZE\s+OLDEST\s+POLICY\s+LAST"
                                 r"\s+STATE$")
        for d, e in expect.items():
            rx = (r"^%s\s+%d\s+%d\s+%s\s+\d+s\s+%s\s+never\s+waiting$"
                  % (re.escape(d), e["messages"], e["rcpts"], re.escape(human_bytes(e["bytes"])),
                     re.escape(self.policy(d))))
            self.assertEqual(len([x for x in out if re.match(rx, x)]), 1,
                             "no line %r in\n%s" % (rx, "\n".join(out)))
        self.assertRegex(out[-1], r"^-- total: 4 messages, 7 recipients, %s \(map \S+ of \S+\)$"
                         % re.escape(human_bytes(sum(size.values()))))
        self.assertEqual(len(out), 1 + 4 + 1, out)

        # ---- list --json: everything, in arrival (queue id) order ----
        msgs = self.json("list")["messages"]
        self.assertEqual([m["id"] for m in msgs], sent.order)
        for m in msgs:
            self.check_message(m, sent, m["id"])

        # ---- list DOMAIN and @DOMAIN ----
        for arg, dom, sub in (("a.test", "a.test", False), ("b.test", "b.test", False),
                              ("sub.b.test", "sub.b.test", False), ("@b.test", "b.test", True),
                              ("@B.Test", "b.test", True), ("c.test", "c.test", False),
                              ("@test", "test", True)):
            want = sent.by_domain(dom, sub)
            got = self.json("list", arg)["messages"]
            self.assertEqual([m["id"] for m in got], [q for q in sent.order if q in want], arg)
            for m in got:
                self.check_message(m, sent, m["id"], rcpts=want[m["id"]])
        self.assertEqual(self.json("list", "nothing.test")["messages"], [])
        self.assertEqual(self.json("list", "@a.test")["messages"],
                         self.json("list", "a.test")["messages"])
        self.assertEqual(self.ok("list", "nothing.test").out, "no messages for nothing.test\n")
        for bad in ("a..test", ".a.test", "[127.0.0.1]", "user@a.test"):
            self.fails(2, "list", bad, err_re=r"bad domain")

        # ---- list (human) ----
        out = self.ok("list").out
        blocks = out.rstrip("\n").split("\n\n")
        self.assertRegex(blocks[0].splitlines()[0], r"^QUEUE ID\s+SIZE\s+ARRIVAL\s+SENDER$")
        blocks[0] = "\n".join(blocks[0].splitlines()[1:])
        self.assertEqual(len(blocks), 5, out)  # four messages and the summary
        for q, blk in zip(sent.order, blocks):
            m = sent.msgs[q]
            lines = blk.splitlines()
            arr = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["arrival"]))
            flags = "".join(" " + f for f in m["flags"])
            self.assertRegex(lines[0], r"^%s\s+%d\s+%s\s+<%s>%s$"
                             % (q, m["size"], re.escape(arr), re.escape(m["sender"]),
                                re.escape(flags)))
            self.assertEqual(lines[1:], ["    <%s>  pending, attempts 0" % x for x in m["rcpts"]])
        self.assertEqual(blocks[4], "-- 4 messages, %s" % human_bytes(sum(size.values())))

        # ---- show --json ----
        for q in sent.order:
            m = self.json("show", q)
            self.check_message(m, sent, q)
            st = sent.msgs[q]["stored"]
            self.assertEqual(m["headers"], st[:st.index(b"\r\n\r\n") + 2].decode("utf-8"))
            self.assertNotIn("headers_truncated", m)
            self.assertEqual(self.json("show", q.lower())["id"], q)

        # ---- show (human) ----
        q2 = sent.order[1]
        m2 = sent.msgs[q2]
        out = self.ok("show", q2).out
        self.assertIn("id:          %s\n" % q2, out)
        self.assertIn("size:        %d\n" % m2["size"], out)
        self.assertIn("sender:      <bob@example.org>\n", out)
        self.assertIn("client:      %s [127.0.0.1]\n" % CLIENT_NAME, out)
        self.assertIn("recipients:  3\n", out)
        for x in m2["rcpts"]:
            self.assertIn("    <%s>  pending, attempts 0\n" % x, out)
        hdr = m2["stored"][:m2["stored"].index(b"\r\n\r\n") + 2].replace(b"\r\n", b"\n")
        self.assertTrue(out.endswith("headers:\n" + hdr.decode()), out)
        out3 = self.ok("show", sent.order[2]).out
        self.assertIn("sender:      <>\n", out3)
        self.assertIn("flags:       8BITMIME\n", out3)
        self.assertIn("envid:       env-m3\n", out3)
        self.assertIn("ret:         HDRS\n", out3)

        # ---- show --body: byte for byte ----
        for q in sent.order:
            self.assertEqual(self.stored(q), sent.msgs[q]["stored"])

        # ---- errors ----
        self.fails(1, "show", "0123456789ABCDEF", err_re=r"no message 0123456789ABCDEF in the queue")
        self.fails(1, "show", "0123456789ABCDEF", "--body", err_re=r"no message")
        for bad in ("xyz", sent.order[0][:15], sent.order[0] + "0", "0123456789ABCDEG"):
            self.fails(2, "show", bad, err_re=r"bad queue id")
        self.fails(2, "show", sent.order[0], "--body", "--json")
        self.fails(2, "nosuchcommand", err_re=r"unknown command")

    def test_queue_human_columns_are_aligned(self):
        """Issue 6: human output "aligned". Every row of `relayctl queue` has its values
        under its header's columns: numbers right-aligned to the end of their header word,
        DOMAIN, POLICY and STATE starting where their header word starts. The policy of a
        domain with a next hop ("next-hop [127.0.0.2]:PORT", 26 octets) is longer than the
        POLICY column's width."""
        self.fill()
        out = self.ok("queue").out.splitlines()
        head = out[0]
        col = {w: (head.index(w), head.index(w) + len(w))
               for w in ("DOMAIN", "MESSAGES", "RCPTS", "SIZE", "OLDEST", "POLICY", "LAST",
                         "STATE")}
        rows = [ln for ln in out[1:] if re.match(r"^[a-z]", ln)]
        self.assertEqual(len(rows), 4, out)
        bad = []
        for ln in rows:
            dom = ln.split()[0]
            pol = self.policy(dom)
            nums = re.match(r"^(\S+\s+)(\d+)(\s+)(\d+)(\s+)(\S+)(\s+)(\S+)", ln)
            ends = {"MESSAGES": nums.end(2), "RCPTS": nums.end(4), "SIZE": nums.end(6),
                    "OLDEST": nums.end(8)}
            p = ln.index(pol)
            last = re.match(r"\s+(\S+)\s+(\S+)", ln[p + len(pol):])
            ends["LAST"] = p + len(pol) + last.end(1)
            starts = {"DOMAIN": 0, "POLICY": p, "STATE": p + len(pol) + last.start(2)}
            for w, e in ends.items():
                if e != col[w][1]:
                    bad.append("%s: %s ends at column %d, header at %d" % (dom, w, e, col[w][1]))
            for w, s in starts.items():
                if s != col[w][0]:
                    bad.append("%s: %s starts at column %d, header at %d"
                               % (dom, w, s, col[w][0]))
        self.assertEqual(bad, [], "\n".join(out))

    def test_mailq_symlink_and_subcommand(self):
        sent = self.fill()
        # One message held and one recipient deferred, as mailq shows them.
        q1, q2, q3, q4 = sent.order
        self.ok("hold", q4)
        c = self.ok("flush", "c.test", "--wait")
        self.assertIn("status=deferred", c.out)
        err = self.json("show", q3)["rcpts"][0]["last_error"]
        self.assertIn("refused", err)

        d = tempfile.mkdtemp(prefix="hf-mailq-")
        self.addCleanup(shutil.rmtree, d, True)
        link = os.path.join(d, "mailq")
        os.symlink(RELAYCTL, link)
        via_link = run_ctl([link, "-c", self.relayd.conf_path])
        self.assertEqual(via_link.rc, 0, via_link)
        via_cmd = self.ok("mailq")
        self.assertEqual(via_link.out, via_cmd.out)
        out = via_link.out
        self.assertTrue(out.endswith("\n"), out)
        lines = out.splitlines()
        self.assertEqual(lines[0], "-Queue ID-       --Size-- ----Arrival Time---- "
                                   "-Sender/Recipient-------")
        blocks = "\n".join(lines[1:]).split("\n\n")
        self.assertEqual(len(blocks), 5, out)
        listed = self.listed()
        for q, blk in zip(sent.order, blocks):
            m = sent.msgs[q]
            bl = blk.splitlines()
            # The fields scripts split on whitespace (awk $1..$7): id with '!' when held,
            # size, "Sun Nov 22 10:09:03", sender (MAILER-DAEMON for <>).
            f = bl[0].split()
            self.assertEqual(f[0], q + ("!" if q == q4 else ""), bl[0])
            self.assertEqual(int(f[1]), m["size"], bl[0])
            arr = time.strftime("%a %b %e %H:%M:%S", time.localtime(listed[q]["arrival"]))
            self.assertEqual(f[2:-1], arr.split(), bl[0])
            self.assertEqual(f[-1], m["sender"] or "MAILER-DAEMON", bl[0])
            self.assertTrue(bl[0].startswith(q), bl[0])
            # Then each recipient on its own indented line, the last error above it in ().
            rest = bl[1:]
            want = []
            for x in m["rcpts"]:
                if q == q3:
                    want.append("(" + err + ")")
                want.append(x)
            self.assertEqual([x.strip() for x in rest], want, blk)
            for x in rest:
                if not x.strip().startswith("("):
                    self.assertRegex(x, r"^\s{8,}\S+$", "recipient lines are indented")
        total = sum(m["size"] for m in sent.msgs.values())
        self.assertEqual(blocks[4], "-- %d Kbytes in 4 Requests." % ((total + 1023) // 1024))

        # mailq DOMAIN / @DOMAIN through the symlink, and one request is singular.
        one = run_ctl([link, "-c", self.relayd.conf_path, "c.test"])
        self.assertEqual(one.rc, 0, one)
        self.assertTrue(one.out.rstrip("\n").endswith(
            "-- %d Kbytes in 1 Request." % ((sent.msgs[q3]["size"] + 1023) // 1024)), one)
        sub = run_ctl([link, "-c", self.relayd.conf_path, "@b.test"])
        self.assertEqual([ln.split()[0].rstrip("!") for ln in sub.out.splitlines()
                          if re.match(r"^[0-9A-F]{16}", ln)], [q2, q4], sub)
        self.assertNotIn("u4@a.test", sub.out)

        # An empty listing, by domain and for a whole queue.
        none = run_ctl([link, "-c", self.relayd.conf_path, "nothing.test"])
        self.assertEqual((none.rc, none.out), (0, "Mail queue is empty\n"), none)
        self.ok("delete", *sent.order, "--yes")
        empty = run_ctl([link, "-c", self.relayd.conf_path])
        self.assertEqual((empty.rc, empty.out), (0, "Mail queue is empty\n"), empty)
        self.assertEqual(self.ok("mailq").out, "Mail queue is empty\n")
        self.assertEqual(self.json("list"), {"messages": []})
        self.assertEqual(self.ok("queue").out.splitlines()[0], "queue is empty")

    def test_read_commands_work_and_actions_exit_5_when_relayd_is_stopped(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        c = self.ok("flush", "c.test", "--wait")  # leaves a last attempt and its error
        before_list = self.json("list")
        before_queue = self.json("queue")
        before_mailq = self.ok("mailq").out
        r = self.relayd
        r.stop()
        self.assertFalse(os.path.exists(r.conf["control_socket"]),
                         "relayd left its control socket behind")

        after_queue = self.json("queue")
        self.assertIs(after_queue["relayd_running"], False)
        for d in after_queue["domains"]:
            self.assertIsNone(d["flushing"], d)
            d["flushing"] = False
        before_queue["relayd_running"] = False
        for d in before_queue["domains"]:
            self.assertIs(d["flushing"], False)
        self.assertEqual(after_queue["domains"], before_queue["domains"])
        self.assertEqual(after_queue["totals"]["messages"], 4)
        human = self.ok("queue").out
        self.assertIn("relayd not reachable", human)
        self.assertIn("last result: connect to", human)
        self.assertEqual(self.json("list"), before_list)
        self.assertEqual(self.ok("mailq").out, before_mailq)
        for q in sent.order:
            self.assertEqual(self.stored(q), sent.msgs[q]["stored"])
            self.assertEqual(self.json("show", q)["id"], q)
        # -q DIR works without any configuration too.
        direct = run_ctl([RELAYCTL, "-q", r.queue_dir, "list", "--json"])
        self.assertEqual((direct.rc, json.loads(direct.out)), (0, before_list), direct)

        for args in (("flush", "a.test"), ("flush", "a.test", "--wait"), ("flush", "--all"),
                     ("hold", "a.test"), ("release", "a.test"), ("hold", q1),
                     ("release", q1), ("delete", q1, "--yes"), ("delete", q1),
                     ("delete", "--domain", "a.test", "--yes"), ("requeue", q3),
                     ("stats",), ("stats", "--json")):
            c = self.fails(5, *args)
            self.assertIn(NORELAYD, c.err, c)
            self.assertEqual(c.out, "", c)
        # Nothing changed.
        self.assertEqual(self.json("list"), before_list)


if __name__ == "__main__":
    unittest.main()
