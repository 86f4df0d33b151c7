"""ETRN releases a domain's held mail to its most preferred MX over a fresh connection.

Mail goes in with swaks; ETRN comes from smtplib. The domain's MX are served by a dnslib
server on loopback; aiosmtpd sinks on 127.0.0.2/3/4 record what they get byte for byte.
"""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import a, bound, mx  # noqa: E402

ASKER = "127.0.0.6"


def swaks_send(relayd, sender, rcpt, data):
    """Sends data (bytes without a final CRLF: swaks adds CRLF . CRLF) with swaks; returns
    the queue id from relayd's reply."""
    with tempfile.NamedTemporaryFile(suffix=".eml", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % relayd.port,
                            "--helo", etrnlib.CLIENT_NAME, "--from", sender, "--to", rcpt,
                            "--data", "@" + path, "--timeout", str(int(bound(30)))],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=bound(60))
    finally:
        os.unlink(path)
    out = p.stdout.decode("utf-8", "replace")
    m = etrnlib.QUEUED_RE.search(out)
    if p.returncode != 0 or not m:
        raise AssertionError("swaks exited %d:\n%s\n%s"
                             % (p.returncode, out, p.stderr.decode("utf-8", "replace")))
    return m.group(1).upper()


class ReleaseToBestMX(etrnlib.ETRNTestCase):
    ZONE = {
        "branch.test": [mx("mx1.branch.test", 10), mx("mx2.branch.test", 20)],
        "mx1.branch.test": [a("127.0.0.2")],
        "mx2.branch.test": [a("127.0.0.3")],
        "relay.holdfast.test": [a("127.0.0.1")],
    }
    # 127.0.0.6 is the asker: it runs an SMTP server too, which must get nothing.
    UP = ("127.0.0.2", "127.0.0.3", ASKER)
    DOMAINS = {"branch.test": {}}

    def test_every_message_arrives_byte_exact_at_the_best_mx(self):
        r = self.relayd
        bodies = {}
        for i in range(4):
            data = etrnlib.make_body("release %d" % i,
                                     "line one of %d\r\n.a line starting with a dot\r\n"
                                     "\r\nlast line, no CRLF after it" % i,
                                     to="user%d@branch.test" % i)
            qid = swaks_send(r, "sender@example.org", "user%d@branch.test" % i, data)
            bodies[qid] = data + b"\r\n"  # swaks ends the data with CRLF . CRLF
        stored = {}
        for qid, data in bodies.items():
            st = r.body(qid)
            self.assertTrue(st.startswith(b"Received: "), st[:200])
            self.assertTrue(st.endswith(b"\r\n" + data), "stored %r, sent %r" % (st, data))
            stored[qid] = st
        listed = r.list_json("branch.test")
        self.assertEqual(sorted(m["id"] for m in listed), sorted(bodies))
        for m in listed:
            self.assertEqual([x["state"] for x in m["rcpts"]], ["pending"])

        # Nothing moves before ETRN.
        self.assertEqual(self.sinks.connections(),
                         {"127.0.0.2": 0, "127.0.0.3": 0, ASKER: 0})

        mark = r.mark()
        c = r.smtp(source=ASKER)
        try:
            c.ehlo("asker.branch.test")
            code, msg = c.docmd("ETRN", "branch.test")
            self.assertETRN((code, msg.decode()), 253,
                            r"^2\.0\.0 OK, 4 pending messages for node branch\.test started$")
            s = r.wait_flush("branch.test", after=mark)
            # The asking session is still an ordinary SMTP session: not turned around.
            self.assertEqual(c.noop()[0], 250)
        finally:
            c.quit()
        self.assertEqual((s["messages"], s["sent"], s["deferred"], s["bounced"]), (4, 4, 0, 0),
                         s["line"])

        got = self.sinks["127.0.0.2"].snapshot()
        self.assertEqual(len(got), 4, got)
        self.assertEqual(sorted(m.data for m in got), sorted(stored.values()))
        for m in got:
            self.assertEqual(m.mail_from, "sender@example.org")
            self.assertEqual(len(m.rcpts), 1)
            qid = [q for q, st in stored.items() if st == m.data][0]
            i = int(bodies[qid].split(b"release ", 1)[1][:1])
            self.assertEqual(m.rcpts, ["user%d@branch.test" % i])
        # Nothing to the less preferred MX, nothing back to the asker (relayd's own port is
        # not an MX, and no new message appeared in its queue).
        self.assertEqual(self.sinks["127.0.0.3"].connections, 0)
        self.assertEqual(self.sinks["127.0.0.3"].snapshot(), [])
        self.assertEqual(self.sinks[ASKER].connections, 0)
        asked = r.log_lines(r"c=\d+ etrn arg=branch\.test client=\[127\.0\.0\.6\] "
                            r"trusted=yes reply=253 messages=4", after=mark)
        self.assertEqual(len(asked), 1, "relayd's log of the ETRN from the asker")
        for qid in bodies:
            lines = r.log_lines(r"%s: to=<user\d@branch\.test>, relay=mx1\.branch\.test"
                                r"\[127\.0\.0\.2\]:%d, delay=\d+, delays=\d+/0/0/\d+, "
                                r"dsn=2\.\d\.\d, status=sent \(250 .*\) tls=none$"
                                % (qid, self.sinks.port), after=mark)
            self.assertEqual(len(lines), 1, "log line for %s" % qid)
        self.assertQueueEmpty()
        self.assertEqual(r.log_lines(r": client=\S+, c=\d+, helo=<relay\.holdfast\.test>"), [])

        # Asked again: nothing waits.
        self.assertETRN(r.etrn("branch.test"), 251,
                        r"^2\.0\.0 OK, no messages waiting for node branch\.test$")


class EqualPreference(etrnlib.ETRNTestCase):
    ZONE = {
        "tie.test": [mx("a.tie.test", 10), mx("b.tie.test", 10), mx("c.tie.test", 20)],
        "a.tie.test": [a("127.0.0.2")],
        "b.tie.test": [a("127.0.0.3")],
        "c.tie.test": [a("127.0.0.4")],
    }
    UP = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
    DOMAINS = {"tie.test": {}}
    CONF = {"flush_connections": "2"}

    def test_both_equal_mx_may_receive_never_the_worse_one(self):
        r = self.relayd
        sent = {}
        for i in range(8):
            body = etrnlib.make_body("tie %d" % i, "body %d\r\n" % i, to="u%d@tie.test" % i)
            qid = r.send("s@example.org", ["u%d@tie.test" % i], body)
            sent[qid] = r.body(qid)
        mark = r.mark()
        self.assertETRN(r.etrn("tie.test"), 253, r"OK, 8 pending messages for node tie\.test")
        s = r.wait_flush("tie.test", after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (8, 0, 0), s["line"])
        got = self.sinks["127.0.0.2"].snapshot() + self.sinks["127.0.0.3"].snapshot()
        # Every message exactly once, byte for byte, and only at the preference-10 hosts.
        self.assertEqual(sorted(m.data for m in got), sorted(sent.values()))
        self.assertEqual(self.sinks["127.0.0.4"].connections, 0)
        self.assertEqual(self.sinks["127.0.0.4"].snapshot(), [])
        relays = set()
        for line in r.log_lines(r" status=sent ", after=mark):
            relays.add(line.split(" relay=", 1)[1].split(",", 1)[0])
        self.assertTrue(relays <= {"a.tie.test[127.0.0.2]:%d" % self.sinks.port,
                                   "b.tie.test[127.0.0.3]:%d" % self.sinks.port}, relays)
        self.assertQueueEmpty()


if __name__ == "__main__":
    unittest.main()
