"""relayctl delete and requeue through relayd's control socket (issue 6).

delete ID --yes removes the message for good; without --yes relayctl asks only on a terminal
(relayctl.c ctl_act_delete: `if (!o->yes && isatty(STDIN_FILENO))`), so with stdin not a
terminal it proceeds, and on a terminal "n" keeps the message and "y" deletes it.
delete --domain D --yes removes D's recipients (and the messages left with none) and keeps
every other domain's recipients. An unknown id is a clear error (exit 1), a malformed one a
usage error (exit 2). requeue makes a deferred recipient due now without touching its
history.
"""

import os
import pty
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etrnlib import CLIENT_NAME, QUEUED_RE, RELAYCTL, bound  # noqa: E402
from test_relayctl_inspect import RelayctlCase, body_of, run_ctl, send  # noqa: E402

UNKNOWN = "0123456789ABCDEF"


class BigMessage:
    """An SMTP transaction for big@a.test whose DATA (mb megabytes) and final dot are sent
    on entry; queued() reads relayd's answer to the dot."""

    def __init__(self, relayd, mb):
        self.relayd = relayd
        self.mb = mb

    def __enter__(self):
        self.sock = socket.create_connection(("127.0.0.1", self.relayd.port),
                                             timeout=bound(60))
        self.f = self.sock.makefile("rb")
        self._read()
        for cmd, code in ((b"EHLO " + CLIENT_NAME.encode(), b"250"),
                          (b"MAIL FROM:<big@example.org>", b"250"),
                          (b"RCPT TO:<big@a.test>", b"250"), (b"DATA", b"354")):
            self.sock.sendall(cmd + b"\r\n")
            rep = self._read()
            assert rep.startswith(code), "%r: %r" % (cmd, rep)
        line = b"y" * 998 + b"\r\n"
        self.sock.sendall(b"Subject: big\r\n\r\n" + line * (self.mb * 1048576 // 1000) +
                          b".\r\n")
        return self

    def _read(self):
        while True:
            ln = self.f.readline()
            if not ln:
                raise AssertionError("relayd closed the connection")
            if ln[3:4] != b"-":
                return ln

    def queued(self):
        """Reads the reply to the final dot; returns the queue id."""
        rep = self._read().decode("utf-8", "replace")
        m = QUEUED_RE.search(rep)
        assert rep.startswith("250 ") and m, rep
        return m.group(1).upper()

    def __exit__(self, *exc):
        self.f.close()
        self.sock.close()
        return False


class Delete(RelayctlCase):

    def gone(self, qid):
        self.fails(1, "show", qid, err_re=r"no message %s in the queue" % qid)
        self.fails(1, "show", qid, "--body", err_re=r"no message %s" % qid)
        self.assertNotIn(qid, self.listed())

    def on_terminal(self, answer, *args):
        """Runs relayctl with a pseudo-terminal as stdin holding `answer` as typed input."""
        master, slave = pty.openpty()
        try:
            os.write(master, answer)
            c = run_ctl([RELAYCTL, "-c", self.relayd.conf_path] + list(args), stdin=slave)
        finally:
            os.close(slave)
            os.close(master)
        return c

    def test_delete_by_id(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        total = self.json("queue")["totals"]

        # --yes
        c = self.ok("delete", q1, "--yes")
        self.assertEqual(c.out, "deleted %s\n" % q1, c)
        self.gone(q1)
        d = self.queue_by_domain()
        self.assertEqual((d["a.test"]["messages"], d["a.test"]["rcpts"]), (1, 1), d)
        self.assertEqual(d["a.test"]["bytes"], sent.msgs[q2]["size"], d)
        t = self.json("queue")["totals"]
        self.assertEqual((t["messages"], t["rcpts"], t["bytes"]),
                         (total["messages"] - 1, total["rcpts"] - 2,
                          total["bytes"] - sent.msgs[q1]["size"]), t)

        # No --yes, stdin not a terminal (/dev/null): no question, the message is deleted.
        c = self.ok("delete", q4)
        self.assertEqual(c.out, "deleted %s\n" % q4, c)
        self.assertNotIn("[y/N]", c.err, c)
        self.gone(q4)

        # On a terminal without --yes: asked; "n" keeps it, "y" deletes it.
        c = self.on_terminal(b"n\n", "delete", q3)
        self.assertEqual(c.rc, 0, c)
        self.assertIn("Delete 1 message? This cannot be undone [y/N]", c.err, c)
        self.assertIn("nothing deleted", c.err, c)
        self.assertIn(q3, self.listed())
        c = self.on_terminal(b"y\n", "delete", q3)
        self.assertEqual(c.rc, 0, c)
        self.assertIn("[y/N]", c.err, c)
        self.assertEqual(c.out, "deleted %s\n" % q3, c)
        self.gone(q3)
        # --yes on a terminal does not ask.
        c = self.on_terminal(b"n\n", "delete", q2, "--yes")
        self.assertEqual((c.rc, c.out), (0, "deleted %s\n" % q2), c)
        self.assertNotIn("[y/N]", c.err, c)
        self.gone(q2)
        self.assertEqual(self.json("list"), {"messages": []})
        self.assertEqual(self.json("queue")["totals"]["messages"], 0)

        # Unknown and malformed ids.
        c = self.fails(1, "delete", UNKNOWN, "--yes",
                       err_re=r"%s: no such message in the queue" % UNKNOWN)
        self.assertEqual(c.out, "", c)
        self.fails(1, "delete", q1, "--yes", err_re=r"%s: no such message" % q1)  # again
        for bad in ("xyz", UNKNOWN[:15], UNKNOWN + "0", "0123456789ABCDEG", "a.test"):
            self.fails(2, "delete", bad, "--yes", err_re=r"bad queue id")
        self.fails(2, "delete", "--yes")
        self.fails(2, "delete", UNKNOWN, "--domain", "a.test", "--yes")
        self.fails(2, "list", "--yes")

    def test_delete_several_ids_one_unknown(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        c = self.fails(1, "delete", q1, UNKNOWN, q4, "--yes",
                       err_re=r"%s: no such message" % UNKNOWN)
        self.assertEqual(sorted(c.out.splitlines()), sorted(["deleted " + q1, "deleted " + q4]), c)
        self.gone(q1)
        self.gone(q4)
        self.assertEqual(sorted(self.listed()), sorted([q2, q3]))

    def delete_domain(self, domain, n, *extra):
        """relayctl delete --domain DOMAIN [extra]: answers "deleted N recipient(s)" once the
        change is committed (checked by test_delete_domain_is_committed_when_relayctl_returns),
        so the checks that follow need no wait."""
        c = self.ok("delete", "--domain", domain, *extra)
        self.assertEqual(c.out, "deleted %d recipient%s\n" % (n, "" if n == 1 else "s"), c)
        return c

    def test_delete_domain(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        self.delete_domain("b.test", 1, "--yes")
        listed = self.listed()
        self.assertEqual([x["addr"] for x in listed[q2]["rcpts"]],
                         ["u3@sub.b.test", "u4@a.test"])
        doms = self.queue_by_domain()
        self.assertNotIn("b.test", doms)
        self.assertEqual(doms["sub.b.test"]["messages"], 2, "only b.test itself, not @b.test")
        self.assertEqual(doms["a.test"]["rcpts"], 3)

        # A domain whose every message goes: the messages go too.
        self.delete_domain("c.test", 1, "--yes")
        self.gone(q3)
        self.assertNotIn("c.test", self.queue_by_domain())

        # Without --yes and stdin not a terminal: proceeds.
        self.delete_domain("sub.b.test", 2)
        self.gone(q4)
        self.assertEqual(sorted(self.listed()), sorted([q1, q2]))
        self.assertEqual([x["addr"] for x in self.listed()[q2]["rcpts"]], ["u4@a.test"])
        # The stored message of a survivor is untouched.
        self.assertEqual(self.stored(q2), sent.msgs[q2]["stored"])
        t = self.json("queue")["totals"]
        self.assertEqual((t["messages"], t["rcpts"]), (2, 3), t)

        # On a terminal: asked, "n" keeps everything.
        c = self.on_terminal(b"n\n", "delete", "--domain", "a.test")
        self.assertEqual(c.rc, 0, c)
        self.assertIn("Delete every queued recipient of a.test? This cannot be undone [y/N]",
                      c.err, c)
        self.assertIn("nothing deleted", c.err, c)
        self.assertEqual(self.queue_by_domain()["a.test"]["rcpts"], 3)

        self.fails(1, "delete", "--domain", "nothing.test", "--yes",
                   err_re=r"nothing\.test: no such domain in the queue")
        self.fails(1, "delete", "--domain", "c.test", "--yes", err_re=r"no such domain")

    def test_delete_domain_is_committed_when_relayctl_returns(self):
        """When `relayctl delete --domain D --yes` has returned, a read command must not see
        D's recipients any more, as after `delete ID` (whose answer waits for the commit).
        To make the window wide enough to see, the queue's writer is kept busy meanwhile
        with the commit of an 8 MB message (its final dot is sent, its reply not read yet,
        when relayctl runs)."""
        r = self.relayd
        rounds = 2
        for rnd in range(rounds):
            ids = [send(r, "x@example.org", ["d%d@c.test" % i, "k%d@a.test" % i],
                        body_of("bulk %d" % i, "bulk\r\n", "d@c.test")) for i in range(3)]
            # The same conditions for delete ID, which waits for its commit: gone at once.
            with BigMessage(r, 8) as big:
                self.ok("delete", ids[0], "--yes")
                self.assertNotIn(ids[0], self.listed())
                self.ok("delete", big.queued(), "--yes")
            mark = r.mark()
            with BigMessage(r, 8) as big:
                c = self.ok("delete", "--domain", "c.test", "--yes")
                left = self.listed("c.test")
                self.ok("delete", big.queued(), "--yes")
            self.assertEqual(sorted(left), [], "round %d of %d: message(s) with c.test "
                             "recipients still listed right after `relayctl delete --domain "
                             "c.test --yes` returned (%s)" % (rnd + 1, rounds, c.out.strip()))
            self.assertEqual(c.out, "deleted 2 recipients\n", c)
            r.wait_log(r"relayctl action=delete-domain rcpts=2 removed=2$", after=mark)
            self.assertEqual(self.listed("c.test"), {})
            self.assertTrue(set(ids[1:]) <= set(self.listed()))

    def test_requeue(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        c = self.ok("flush", "c.test", "--wait")
        self.assertIn("status=deferred", c.out, c)
        before = self.json("show", q3)["rcpts"][0]
        self.assertEqual((before["state"], before["attempts"]), ("deferred", 1), before)
        self.assertGreater(before["next_attempt"], int(time.time()) - 1, before)
        self.assertRegex(self.ok("list", "c.test").out, r"deferred, attempts 1, last .*, next "
                                                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n")

        c = self.ok("requeue", q3)
        self.assertEqual(c.out, "requeued %s\n" % q3, c)
        after = self.json("show", q3)["rcpts"][0]
        self.assertEqual(after["next_attempt"], 0, after)
        for k in ("state", "attempts", "last_attempt", "last_error", "addr"):
            self.assertEqual(after[k], before[k], k)
        self.assertRegex(self.ok("list", "c.test").out, r"deferred, attempts 1, last .*, next now\n")

        # Pending recipients stay pending; several ids at once.
        c = self.ok("requeue", q1, q2)
        self.assertEqual(c.out.splitlines(), ["requeued " + q1, "requeued " + q2], c)
        for q in (q1, q2):
            for x in self.json("show", q)["rcpts"]:
                self.assertEqual((x["state"], x["attempts"], x["next_attempt"]),
                                 ("pending", 0, 0), x)

        self.fails(1, "requeue", UNKNOWN, err_re=r"%s: no such message" % UNKNOWN)
        self.fails(2, "requeue", "xyz", err_re=r"bad queue id")
        self.fails(2, "requeue")
        self.assertEqual(sorted(self.listed()), sorted(sent.order))


if __name__ == "__main__":
    unittest.main()
