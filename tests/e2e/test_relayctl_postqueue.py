"""relayctl mailq --json: what Postfix's "postqueue -j" prints, for scripts written for Postfix
(issue 11).

The queue of test_relayctl_inspect's fixture: M1 pending for a.test, M2 for b.test and
sub.b.test (hold = yes: they wait for ETRN) and a.test, M3 with the null sender deferred for
c.test (its next hop refuses connections), M4 on hold (relayctl hold ID). Each output line is
parsed with Python's json on its own; the objects carry postqueue -j's fields with its
meanings (queue_name, queue_id, arrival_time, message_size, forced_expire, sender,
recipients[].address, recipients[].delay_reason), a domain argument narrows the recipients,
a domain held with relayctl hold moves its messages to the hold queue, and an empty queue
prints nothing, as postqueue -j does. The native JSON of list --json is unchanged.
"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etrnlib import RELAYCTL  # noqa: E402
from test_relayctl_inspect import RelayctlCase, run_ctl  # noqa: E402

FIELDS = ["queue_name", "queue_id", "arrival_time", "message_size", "forced_expire", "sender",
          "recipients"]


class PostqueueJSON(RelayctlCase):

    def postq(self, *args, ctl=None):
        c = ctl or self.ok("mailq", *args, "--json")
        self.assertTrue(c.out == "" or c.out.endswith("\n"), c)
        out = []
        for line in c.out.splitlines():
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise AssertionError("line is not one JSON object (%s): %r" % (e, line))
            self.assertIsInstance(obj, dict, line)
            self.assertEqual(sorted(obj), sorted(FIELDS), line)
            for r in obj["recipients"]:
                self.assertTrue(set(r) <= {"address", "delay_reason"}, r)
            out.append(obj)
        return out

    def test_postqueue_fields_and_meanings(self):
        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        self.ok("hold", q4)
        c = self.ok("flush", "c.test", "--wait")
        self.assertIn("status=deferred", c.out)
        err = self.json("show", q3)["rcpts"][0]["last_error"]
        self.assertIn("refused", err)
        native = self.listed()

        got = self.postq()
        self.assertEqual([m["queue_id"] for m in got], sent.order, "one line per message")
        by = {m["queue_id"]: m for m in got}
        for q in sent.order:
            m = by[q]
            self.assertEqual(m["arrival_time"], native[q]["arrival"], m)
            self.assertEqual(m["message_size"], sent.msgs[q]["size"], m)
            self.assertIs(m["forced_expire"], False, m)
            self.assertEqual(m["sender"], sent.msgs[q]["sender"], m)
            self.assertEqual([r["address"] for r in m["recipients"]], sent.msgs[q]["rcpts"], m)
        etrn = {"delay_reason": "held for ETRN"}
        # M1: waiting for its first attempt, nothing to explain.
        self.assertEqual(by[q1]["queue_name"], "active")
        self.assertEqual(by[q1]["recipients"], [{"address": "u1@a.test"},
                                                {"address": "u2@a.test"}])
        # M2: two recipients wait for ETRN (hold = yes, with subdomains), one does not.
        self.assertEqual(by[q2]["queue_name"], "deferred")
        self.assertEqual(by[q2]["recipients"], [dict(address="u1@b.test", **etrn),
                                                dict(address="u3@sub.b.test", **etrn),
                                                {"address": "u4@a.test"}])
        # M3: the null sender is "", the reason is the last error as list --json keeps it.
        self.assertEqual(by[q3]["queue_name"], "deferred")
        self.assertEqual(by[q3]["sender"], "")
        self.assertEqual(by[q3]["recipients"], [{"address": "u5@c.test", "delay_reason": err}])
        # M4: held by relayctl hold ID.
        self.assertEqual(by[q4]["queue_name"], "hold")
        self.assertEqual(by[q4]["recipients"], [dict(address="u6@sub.b.test", **etrn)])

        # The native JSON is what it was: one object, its own field names.
        self.assertEqual(sorted(native), sorted(sent.order))
        self.assertIn("rcpts", native[q1])
        self.assertNotIn("queue_name", native[q1])

        # A domain narrows the recipients, @DOMAIN takes the subdomains too.
        a = self.postq("a.test")
        self.assertEqual([(m["queue_id"], [r["address"] for r in m["recipients"]]) for m in a],
                         [(q1, ["u1@a.test", "u2@a.test"]), (q2, ["u4@a.test"])])
        sub = self.postq("@b.test")
        self.assertEqual([(m["queue_id"], [r["address"] for r in m["recipients"]]) for m in sub],
                         [(q2, ["u1@b.test", "u3@sub.b.test"]), (q4, ["u6@sub.b.test"])])
        self.assertEqual(self.postq("nothing.test"), [])

        # Without the configuration (-q DIR) hold = yes is not known: no "held for ETRN".
        bare = self.postq(ctl=run_ctl([RELAYCTL, "-q", self.relayd.queue_dir, "mailq",
                                       "--json"]))
        self.assertEqual([m["queue_id"] for m in bare], sent.order)
        self.assertNotIn("held for ETRN", json.dumps(bare))

        # relayctl hold DOMAIN puts the domain's messages in the hold queue.
        self.ok("hold", "a.test")
        names = {m["queue_id"]: m["queue_name"] for m in self.postq()}
        self.assertEqual(names, {q1: "hold", q2: "hold", q3: "deferred", q4: "hold"})
        self.ok("release", "a.test")
        self.assertEqual(self.postq()[0]["queue_name"], "active")

        # An empty queue prints nothing (postqueue -j's behaviour), and exits 0.
        self.ok("delete", *sent.order, "--yes")
        c = self.ok("mailq", "--json")
        self.assertEqual(c.out, "", c)


if __name__ == "__main__":
    unittest.main()
