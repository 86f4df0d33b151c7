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
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etrnlib import RELAYCTL, bound  # noqa: E402
from test_relayctl_inspect import RelayctlCase, run_ctl  # noqa: E402

UNKNOWN = "0123456789ABCDEF"


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
        self.assertEqual(c.out, q1 + "\n", c)
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
        self.assertEqual(c.out, q4 + "\n", c)
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
        self.assertEqual(c.out, q3 + "\n", c)
        self.gone(q3)
        # --yes on a terminal does not ask.
        c = self.on_terminal(b"n\n", "delete", q2, "--yes")
        self.assertEqual((c.rc, c.out), (0, q2 + "\n"), c)
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
        self.assertEqual(sorted(c.out.split()), sorted([q1, q4]), c)
        self.gone(q1)
        self.gone(q4)
        self.assertEqual(sorted(self.listed()), sorted([q2, q3]))

    def test_delete_domain(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        c = self.ok("delete", "--domain", "b.test", "--yes")
        self.assertRegex(c.out, r"1 recipient of b\.test", c)
        # When relayctl returns, the recipients are gone (checked at once, no waiting).
        listed = self.listed()
        self.assertEqual([x["addr"] for x in listed[q2]["rcpts"]],
                         ["u3@sub.b.test", "u4@a.test"],
                         "right after `relayctl delete --domain b.test --yes` returned")
        doms = self.queue_by_domain()
        self.assertNotIn("b.test", doms)
        self.assertEqual(doms["sub.b.test"]["messages"], 2, "only b.test itself, not @b.test")
        self.assertEqual(doms["a.test"]["rcpts"], 3)

        # A domain whose every message goes: the messages go too.
        c = self.ok("delete", "--domain", "c.test", "--yes")
        self.assertRegex(c.out, r"1 recipient of c\.test", c)
        self.gone(q3)
        self.assertNotIn("c.test", self.queue_by_domain())

        # Without --yes and stdin not a terminal: proceeds.
        c = self.ok("delete", "--domain", "sub.b.test")
        self.assertRegex(c.out, r"2 recipients of sub\.b\.test", c)
        self.gone(q4)
        self.assertEqual(sorted(self.listed()), sorted([q1, q2]))
        self.assertEqual([x["addr"] for x in self.listed()[q2]["rcpts"]], ["u4@a.test"])
        # The stored message of a survivor is untouched.
        self.assertEqual(self.stored(q2), sent.msgs[q2]["stored"])

        # On a terminal: asked, "n" keeps everything.
        c = self.on_terminal(b"n\n", "delete", "--domain", "a.test")
        self.assertEqual(c.rc, 0, c)
        self.assertIn("Delete every queued recipient of a.test?", c.err, c)
        self.assertEqual(self.queue_by_domain()["a.test"]["rcpts"], 3)

        self.fails(1, "delete", "--domain", "nothing.test", "--yes",
                   err_re=r"nothing\.test: no such domain in the queue")
        self.fails(1, "delete", "--domain", "c.test", "--yes", err_re=r"no such domain")

    def test_delete_domain_is_committed_when_relayctl_returns(self):
        """Many recipients in one domain: when `delete --domain` has returned, a read
        command must not see any of them any more (like delete ID, which waits for the
        commit)."""
        from test_relayctl_inspect import body_of, send
        ids = [send(self.relayd, "x@example.org", ["d%d@c.test" % i, "k%d@a.test" % i],
                    body_of("bulk %d" % i, "bulk\r\n", "d@c.test")) for i in range(20)]
        c = self.ok("delete", "--domain", "c.test", "--yes")
        self.assertRegex(c.out, r"20 recipients of c\.test", c)
        left = self.listed("c.test")
        self.assertEqual(left, {}, "%d message(s) with c.test recipients still listed right "
                         "after `delete --domain c.test --yes` returned" % len(left))
        self.assertEqual(sorted(self.listed()), sorted(ids))

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
        self.assertEqual(c.out, q3 + "\n", c)
        after = self.json("show", q3)["rcpts"][0]
        self.assertEqual(after["next_attempt"], 0, after)
        for k in ("state", "attempts", "last_attempt", "last_error", "addr"):
            self.assertEqual(after[k], before[k], k)
        self.assertRegex(self.ok("list", "c.test").out, r"deferred, attempts 1, last .*, next now\n")

        # Pending recipients stay pending; several ids at once.
        c = self.ok("requeue", q1, q2)
        self.assertEqual(c.out.split(), [q1, q2], c)
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
