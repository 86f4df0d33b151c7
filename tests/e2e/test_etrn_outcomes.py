"""Per-recipient outcomes of an ETRN run, and a downstream that breaks in the middle.

The receiving aiosmtpd server answers one recipient 250, one 450 and one 550: the first is
delivered and gone, the second stays queued (deferred, attempts counted, the reply kept),
the third is bounced at once (a DSN to the sender, queued in the same commit) and never
offered again. A server that drops
the connection in the middle of DATA (or after the final dot, before its reply) loses
nothing: the message stays queued and a later ETRN delivers it.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import a, mx  # noqa: E402

MXA = "127.0.0.2"
TEMP_REPLY = "450 4.2.1 mailbox busy, try later"
PERM_REPLY = "550 5.1.1 no such user here"


class Outcomes(etrnlib.ETRNTestCase):
    ZONE = {
        "outcomes.test": [mx("mx.outcomes.test", 10)],
        "mx.outcomes.test": [a(MXA)],
        "drop.test": [mx("mx.drop.test", 10)],
        "mx.drop.test": [a(MXA)],
    }
    UP = (MXA,)
    DOMAINS = {"outcomes.test": {}, "drop.test": {}}

    def test_250_450_550_per_recipient(self):
        r = self.relayd
        sink = self.sinks[MXA]
        sink.rcpt_replies = {"temp@outcomes.test": TEMP_REPLY,
                             "perm@outcomes.test": PERM_REPLY}
        rcpts = ["ok@outcomes.test", "temp@outcomes.test", "perm@outcomes.test"]
        qid = r.send("sender@example.org", rcpts,
                     etrnlib.make_body("three outcomes", "one message, three recipients\r\n"))
        stored = r.body(qid)

        mark = r.mark()
        self.assertETRN(r.etrn("outcomes.test"), 253,
                        r"OK, 1 pending message for node outcomes\.test started")
        s = r.wait_flush("outcomes.test", after=mark)
        self.assertEqual((s["messages"], s["sent"], s["deferred"], s["bounced"]), (1, 1, 1, 1),
                         s["line"])

        got = sink.snapshot()
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0].rcpts, ["ok@outcomes.test"])
        self.assertEqual(got[0].data, stored)
        self.assertEqual(sorted(sink.rcpt_log), sorted(rcpts))

        rc = r.rcpts()
        self.assertNotIn("ok@outcomes.test", rc, "the delivered recipient is still queued")
        temp = rc["temp@outcomes.test"]
        self.assertEqual(temp["id"], qid)
        self.assertEqual(temp["state"], "deferred", temp)
        self.assertEqual(temp["attempts"], 1, temp)
        self.assertGreater(temp["next_attempt"], temp["last_attempt"], temp)
        # last_error holds the server's reply as it was sent (checked as subtests so the
        # rest of the scenario still runs when only the text is wrong).
        with self.subTest("last_error of the 450 recipient"):
            self.assertEqual(temp["last_error"], TEMP_REPLY, temp)
        # The 550 recipient is bounced at once: gone from the queue, its DSN queued for the
        # sender (example.org is not in the test DNS, so the DSN waits there, deferred).
        self.assertNotIn("perm@outcomes.test", rc)
        dsn = rc["sender@example.org"]
        self.assertNotEqual(dsn["id"], qid)
        r.wait_log(r"%s: sender non-delivery notification: %s" % (qid, dsn["id"]))
        # The message and its bytes are kept for the remaining recipients.
        self.assertEqual(r.body(qid), stored)
        self.assertRegex("\n".join(r.log_lines(r"to=<temp@outcomes\.test>, ", after=mark)),
                         r"status=deferred \(450 ")
        self.assertRegex("\n".join(r.log_lines(r"to=<perm@outcomes\.test>, ", after=mark)),
                         r"status=bounced \(550 ")

        # A second ETRN offers the deferred recipient only, never the bounced one.
        sink.rcpt_log.clear()
        mark = r.mark()
        self.assertETRN(r.etrn("outcomes.test"), 253)
        s = r.wait_flush("outcomes.test", after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (0, 1, 0), s["line"])
        self.assertEqual(sink.rcpt_log, ["temp@outcomes.test"])
        rc = r.rcpts()
        self.assertEqual(rc["temp@outcomes.test"]["attempts"], 2, rc)
        self.assertNotIn("perm@outcomes.test", rc)

        # The mailbox frees up: the third run delivers it.
        sink.rcpt_replies = {"perm@outcomes.test": PERM_REPLY}
        sink.rcpt_log.clear()
        mark = r.mark()
        self.assertETRN(r.etrn("outcomes.test"), 253)
        s = r.wait_flush("outcomes.test", after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (1, 0, 0), s["line"])
        self.assertEqual(sink.rcpt_log, ["temp@outcomes.test"])
        got = sink.snapshot()
        self.assertEqual(len(got), 2, got)
        self.assertEqual(got[1].rcpts, ["temp@outcomes.test"])
        self.assertEqual(got[1].data, stored)
        rc = r.rcpts()
        self.assertEqual(sorted(rc), ["sender@example.org"])  # only the DSN is left

    def _dropped_then_delivered(self, mode):
        r = self.relayd
        sink = self.sinks[MXA]
        setattr(sink, mode, True)
        big = b"".join(b"line %06d of a message large enough to be streamed in pieces\r\n" % i
                       for i in range(4000))
        qid = r.send("sender@example.org", ["x@drop.test"],
                     etrnlib.make_body("dropped " + mode, big))
        stored = r.body(qid)

        mark = r.mark()
        self.assertETRN(r.etrn("drop.test"), 253)
        s = r.wait_flush("drop.test", after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (0, 1, 0), s["line"])
        self.assertGreaterEqual(sink.drops, 1)
        self.assertEqual(sink.snapshot(), [])
        (rec,) = r.rcpts().values()
        self.assertEqual(rec["id"], qid)
        self.assertEqual(rec["state"], "deferred", rec)
        self.assertEqual(rec["attempts"], 1, rec)
        self.assertNotEqual(rec["last_error"], "", rec)
        self.assertEqual(r.body(qid), stored, "the stored message changed")

        setattr(sink, mode, False)
        mark = r.mark()
        self.assertETRN(r.etrn("drop.test"), 253)
        s = r.wait_flush("drop.test", after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (1, 0, 0), s["line"])
        got = sink.snapshot()
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0].data, stored)
        self.assertEqual(got[0].rcpts, ["x@drop.test"])
        self.assertQueueEmpty()

    def test_connection_dropped_mid_data_nothing_lost(self):
        self._dropped_then_delivered("drop_data")

    def test_connection_dropped_before_the_dot_reply_nothing_lost(self):
        self._dropped_then_delivered("drop_after_dot")


if __name__ == "__main__":
    unittest.main()
