"""relayctl flush, hold and release through relayd's control socket (issue 6).

The queue is filled through SMTP for a.test, b.test, sub.b.test (static next hop: an aiosmtpd
sink on 127.0.0.2) and c.test (next hop 127.0.0.3, refusing connections). `flush DOMAIN
--wait` prints one line per recipient and a final "done" line, and only that domain leaves
the queue, byte for byte to the sink; `flush @b.test` takes the subdomains too, `flush --all`
everything; a refused connection leaves the recipient deferred with the error in `queue`.
A held domain is not flushed (relayctl says so, ETRN gets 458) until it is released; a held
message stays queued through a flush of its domain until it is released.
"""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_relayctl_inspect import DEAD, SINK, RelayctlCase, body_of, send  # noqa: E402

# "tls=" says how TLS went on that connection (absent when no connection was made).
EVENT_RE = re.compile(r"^([0-9A-F]{16}) to=<([^>]*)> relay=(\S+)(?: tls=\S+)? status=(\w+) "
                      r"\((.*)\)$")
DONE_RE = re.compile(r"^done domain=(\S+) messages=(\d+) sent=(\d+) deferred=(\d+) "
                     r"bounced=(\d+)(?: last_error=(.*))?$")


def parse_flush(out):
    """stdout of flush --wait -> (started domains, [(id, rcpt, relay, status, text)],
    {domain: (messages, sent, deferred, bounced, last_error)}, other lines)."""
    started, events, done, other = [], [], {}, []
    for ln in out.splitlines():
        m = re.match(r"^flush started domain=(\S+)$", ln)
        if m:
            started.append(m.group(1))
            continue
        m = EVENT_RE.match(ln)
        if m:
            events.append(m.groups())
            continue
        m = DONE_RE.match(ln)
        if m:
            done[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)),
                                int(m.group(5)), m.group(6))
            continue
        other.append(ln)
    return started, events, done, other


class Flush(RelayctlCase):

    def assert_delivered(self, sent, pairs, before=0):
        """The sink got exactly these (id, [rcpts]) after its first `before` messages, each
        message byte for byte as stored."""
        sink = self.sinks[SINK]
        n = before + len(pairs)
        sink.wait_for(lambda s: len(s.messages) >= n, 10, "%d messages" % n)
        got = sink.snapshot()[before:]
        want = sorted((sent.msgs[q]["stored"], sorted(rc)) for q, rc in pairs)
        self.assertEqual(sorted((g.data, sorted(g.rcpts)) for g in got), want)
        for g in got:
            self.assertEqual(g.host, SINK)

    def test_flush_domain_subtree_all_and_mx_down(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order

        # ---- flush a.test --wait: every a.test recipient sent, the rest stays ----
        c = self.ok("flush", "a.test", "--wait")
        started, events, done, other = parse_flush(c.out)
        self.assertEqual(started, ["a.test"], c)
        self.assertEqual(other, [], c)
        self.assertEqual(sorted((e[0], e[1]) for e in events),
                         sorted([(q1, "u1@a.test"), (q1, "u2@a.test"), (q2, "u4@a.test")]), c)
        for e in events:
            self.assertEqual(e[3], "sent", c)
            self.assertIn(SINK, e[2], c)
            self.assertRegex(e[4], r"^250 ", c)
        self.assertEqual(done, {"a.test": (2, 3, 0, 0, None)}, c)
        self.assertTrue(c.out.splitlines()[-1].startswith("done domain=a.test"), c)
        self.assert_delivered(sent, [(q1, ["u1@a.test", "u2@a.test"]), (q2, ["u4@a.test"])])

        doms = self.queue_by_domain()
        self.assertNotIn("a.test", doms)
        self.assertEqual(sorted(doms), ["b.test", "c.test", "sub.b.test"])
        self.assertEqual((doms["b.test"]["messages"], doms["sub.b.test"]["messages"]), (1, 2))
        listed = self.listed()
        self.assertNotIn(q1, listed)
        self.assertEqual([x["addr"] for x in listed[q2]["rcpts"]],
                         ["u1@b.test", "u3@sub.b.test"])
        self.fails(1, "show", q1, err_re=r"no message")
        self.assertEqual(self.json("list", "a.test"), {"messages": []})

        # A second flush of a.test finds nothing.
        c = self.ok("flush", "a.test", "--wait")
        self.assertIn("nothing queued", c.out)
        self.assertNotIn("status=", c.out)

        # ---- flush @b.test: b.test and sub.b.test ----
        c = self.ok("flush", "@b.test", "--wait")
        started, events, done, other = parse_flush(c.out)
        self.assertEqual(sorted(started), ["b.test", "sub.b.test"], c)
        self.assertEqual(other, [], c)
        self.assertEqual(sorted((e[0], e[1], e[3]) for e in events),
                         sorted([(q2, "u1@b.test", "sent"), (q2, "u3@sub.b.test", "sent"),
                                 (q4, "u6@sub.b.test", "sent")]), c)
        self.assertEqual(done, {"b.test": (1, 1, 0, 0, None), "sub.b.test": (2, 2, 0, 0, None)},
                         c)
        self.assert_delivered(sent, [(q2, ["u1@b.test"]), (q2, ["u3@sub.b.test"]),
                                     (q4, ["u6@sub.b.test"])], before=2)
        self.assertEqual(sorted(self.queue_by_domain()), ["c.test"])
        self.assertEqual(sorted(self.listed()), [q3])

        # ---- the MX is down: deferred, and queue shows when and why ----
        t0 = int(time.time())
        c = self.ok("flush", "c.test", "--wait")
        t1 = int(time.time()) + 1
        started, events, done, other = parse_flush(c.out)
        self.assertEqual((started, other), (["c.test"], []), c)
        self.assertEqual(len(events), 1, c)
        qid, rcpt, relay, status, text = events[0]
        self.assertEqual((qid, rcpt, status), (q3, "u5@c.test", "deferred"), c)
        self.assertIn(DEAD, text, c)
        self.assertRegex(text, r"(?i)refused", c)
        self.assertEqual(done["c.test"][:4], (1, 0, 1, 0), c)
        self.assertEqual(done["c.test"][4], text, c)

        d = self.queue_by_domain()["c.test"]
        self.assertTrue(t0 <= d["last_attempt"] <= t1, d)
        self.assertEqual(d["last_result"], text, d)
        self.assertEqual((d["messages"], d["rcpts"]), (1, 1), d)
        human = self.ok("queue").out
        self.assertRegex(human, r"(?m)^c\.test\s+1\s+1\s.*\s\d+s\s+waiting$")
        self.assertIn("last result: " + text, human)
        r3 = self.json("show", q3)["rcpts"][0]
        self.assertEqual((r3["state"], r3["attempts"], r3["last_error"]), ("deferred", 1, text))
        self.assertTrue(t0 <= r3["last_attempt"] <= t1, r3)
        self.assertGreater(r3["next_attempt"], r3["last_attempt"], r3)
        self.assertEqual(len(self.sinks[SINK].snapshot()), 5)

        # ---- flush --all: more mail, then everything at once ----
        q5 = self.send_one("dave@example.org", ["u7@a.test", "u8@sub.b.test"])
        c = self.ok("flush", "--all", "--wait")
        started, events, done, other = parse_flush(c.out)
        self.assertEqual(sorted(started), ["a.test", "c.test", "sub.b.test"], c)
        self.assertEqual(other, [], c)
        self.assertEqual(sorted((e[0], e[1], e[3]) for e in events),
                         sorted([(q5, "u7@a.test", "sent"), (q5, "u8@sub.b.test", "sent"),
                                 (q3, "u5@c.test", "deferred")]), c)
        self.assertEqual(done["a.test"][:4], (1, 1, 0, 0), c)
        self.assertEqual(done["sub.b.test"][:4], (1, 1, 0, 0), c)
        self.assertEqual(done["c.test"][:4], (1, 0, 1, 0), c)
        self.assertEqual(sorted(self.listed()), [q3])
        self.assertEqual(self.json("show", q3)["rcpts"][0]["attempts"], 2)

        # Without --wait: the run starts, relayctl returns at once.
        mark = self.relayd.mark()
        c = self.ok("flush", "c.test")
        self.assertEqual(c.out, "flush started domain=c.test\n", c)
        s = self.relayd.wait_flush("c.test", after=mark)
        self.assertEqual((s["messages"], s["sent"], s["deferred"]), (1, 0, 1), s["line"])

        # Usage errors.
        self.fails(2, "flush")
        self.fails(2, "flush", "a.test", "--all")
        self.fails(2, "flush", "a.test", "b.test")

    def send_one(self, sender, rcpts):
        return send(self.relayd, sender, rcpts, body_of("extra", "one more\r\n", rcpts[0]))

    def test_flushing_shows_in_queue_while_a_run_is_in_progress(self):
        self.fill()
        sink = self.sinks[SINK]
        sink.hold_data = True  # the sink keeps its reply to the final dot
        r = self.relayd
        mark = r.mark()
        c = self.ok("flush", "a.test")
        self.assertEqual(c.out, "flush started domain=a.test\n", c)
        sink.wait_for(lambda s: s.data_started >= 1, 10, "the first DATA of the run")
        d = self.queue_by_domain()
        self.assertIs(d["a.test"]["flushing"], True, d)
        self.assertIs(d["c.test"]["flushing"], False, d)
        self.assertRegex(self.ok("queue").out, r"(?m)^a\.test\s.*\sflushing\s*$")
        # A second flush of the same domain meanwhile is refused, clearly.
        c = self.fails(1, "flush", "a.test", err_re=r"flush already running domain=a\.test")
        sink.release()
        s = r.wait_flush("a.test", after=mark)
        self.assertEqual((s["messages"], s["sent"], s["deferred"]), (2, 3, 0), s["line"])
        d = self.queue_by_domain()
        self.assertNotIn("a.test", d)
        self.assertIs(d["b.test"]["flushing"], False, d)

    def test_hold_and_release_a_domain(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        c = self.ok("hold", "a.test")
        self.assertEqual(c.out, "held a.test\n", c)
        d = self.queue_by_domain()
        self.assertIs(d["a.test"]["held"], True, d)
        self.assertIs(d["b.test"]["held"], False, d)
        self.assertRegex(self.ok("queue").out, r"(?m)^a\.test\s.*\sheld\s*$")

        c = self.ctl("flush", "a.test", "--wait")
        self.assertNotEqual(c.rc, 0, c)
        self.assertRegex(c.err, r"a\.test is on hold", c)
        self.assertIn("release", c.err, c)
        self.assertNotIn("status=", c.out, c)
        self.assertNotEqual(self.ctl("flush", "A.TEST").rc, 0)

        # ETRN: 458, the operator holds the queue.
        code, text = self.relayd.etrn("a.test")
        self.assertEqual(code, 458, text)
        self.assertRegex(text, r"(?i)\bhold")
        self.assertEqual(self.stats()["etrn_458"], 1)
        self.assertEqual(self.sinks[SINK].connections, 0, "a held domain was delivered")
        self.assertEqual(len(self.listed("a.test")), 2)

        # flush --all and @ skip the held domain but do the others.
        c = self.ctl("flush", "--all", "--wait")
        self.assertIn("a.test is on hold", c.err, c)
        self.assertIn("done domain=sub.b.test", c.out, c)
        self.assertEqual(len(self.listed("a.test")), 2)

        c = self.ok("release", "a.test")
        self.assertEqual(c.out, "released a.test\n", c)
        self.assertIs(self.queue_by_domain()["a.test"]["held"], False)
        c = self.ok("flush", "a.test", "--wait")
        self.assertIn("done domain=a.test messages=2 sent=3 deferred=0 bounced=0", c.out, c)
        self.assertEqual(self.listed("a.test"), {})

        # b.test went with flush --all; held while empty, it stays held for mail that
        # comes later.
        self.assertEqual(self.listed("b.test"), {})
        self.ok("hold", "b.test")
        self.assertIs(self.queue_by_domain()["b.test"]["held"], True)
        q5 = self.send_one("erin@example.org", ["u9@b.test"])
        d = self.queue_by_domain()["b.test"]
        self.assertEqual((d["messages"], d["held"]), (1, True), d)
        self.assertEqual(self.relayd.etrn("b.test")[0], 458)
        self.fails(1, "flush", "b.test", "--wait", err_re=r"b\.test is on hold")
        self.ok("release", "b.test")
        c = self.ok("flush", "b.test", "--wait")
        self.assertEqual([(e[0], e[1], e[3]) for e in parse_flush(c.out)[1]],
                         [(q5, "u9@b.test", "sent")], c)

        # Errors.
        self.fails(1, "release", "nothing.test", err_re=r"nothing\.test: no such domain")
        self.fails(1, "hold", "0123456789ABCDEF", err_re=r"0123456789ABCDEF: no such message")
        self.fails(2, "hold")
        self.fails(2, "release")

    def test_hold_and_release_one_message(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        c = self.ok("hold", q2)
        self.assertEqual(c.out, "held %s\n" % q2, c)
        listed = self.listed()
        self.assertEqual(listed[q2]["flags"], ["HELD"])
        self.assertEqual(listed[q1]["flags"], [])
        self.assertEqual(self.json("show", q2)["flags"], ["HELD"])
        self.assertRegex(self.ok("list").out, r"(?m)^%s\s.*<bob@example\.org> HELD$" % q2)

        # A flush of a.test delivers q1 and leaves the held q2 (u4@a.test) queued.
        c = self.ok("flush", "a.test", "--wait")
        started, events, done, other = parse_flush(c.out)
        self.assertEqual(sorted((e[0], e[1], e[3]) for e in events),
                         [(q1, "u1@a.test", "sent"), (q1, "u2@a.test", "sent")], c)
        self.assertEqual(done["a.test"][:4], (1, 2, 0, 0), c)
        self.assertEqual(list(self.listed("a.test")), [q2])
        # @b.test: only q4 goes, q2's b.test and sub.b.test recipients stay.
        c = self.ok("flush", "@b.test", "--wait")
        self.assertEqual(sorted((e[0], e[1]) for e in parse_flush(c.out)[1]),
                         [(q4, "u6@sub.b.test")], c)
        self.assertEqual([x["addr"] for x in self.listed()[q2]["rcpts"]],
                         ["u1@b.test", "u3@sub.b.test", "u4@a.test"])
        for m in self.sinks[SINK].snapshot():
            self.assertNotIn(b"Subject: m2\r\n", m.data, "the held message was delivered")

        c = self.ok("release", q2)
        self.assertEqual(c.out, "released %s\n" % q2, c)
        self.assertEqual(self.listed()[q2]["flags"], [])
        c = self.ok("flush", "a.test", "--wait")
        self.assertEqual([(e[0], e[1], e[3]) for e in parse_flush(c.out)[1]],
                         [(q2, "u4@a.test", "sent")], c)
        self.assertEqual(self.listed("a.test"), {})
        self.ok("flush", "@b.test", "--wait")
        self.assertEqual(sorted(self.listed()), [q3])

        # Several ids at once, one unknown: the known one is held, the exit says 1.
        c = self.fails(1, "hold", q3, "0123456789ABCDEF", err_re=r"0123456789ABCDEF: no such")
        self.assertEqual(self.listed()[q3]["flags"], ["8BITMIME", "HELD"])
        self.ok("release", q3)
        self.assertEqual(self.listed()[q3]["flags"], ["8BITMIME"])

    def test_bad_domain_syntax_is_a_usage_error(self):
        """relayctl's exit codes (relayctl --help, relayctl.c): 2 for "bad queue id or domain
        syntax", as `list` does for these arguments; flush, hold and release take the same
        DOMAIN|@DOMAIN, so the same syntax errors must give 2 there too, before relayd is
        asked."""
        sent = self.fill()
        for bad in ("bad..domain", ".a.test", "[127.0.0.1]", "@", "user@a.test"):
            self.fails(2, "list", bad, err_re=r"bad domain")
        problems = []
        for args in (("flush", "bad..domain"), ("flush", "@"), ("flush", "[127.0.0.1]"),
                     ("flush", ""), ("hold", "bad..domain"), ("release", "bad..domain"),
                     ("hold", ".a.test")):
            c = self.ctl(*args)
            if c.rc != 2:
                problems.append("relayctl %s: exit %d (%s%s), expected 2"
                                % (" ".join(repr(a) if not a else a for a in args), c.rc,
                                   c.out.strip(), c.err.strip()))
        self.assertEqual(problems, [], "\n".join(problems))
        self.assertEqual(sorted(self.listed()), sorted(sent.order))


if __name__ == "__main__":
    unittest.main()
