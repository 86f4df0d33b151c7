"""The backup-MX rule (RFC 5321 5.1) and failover between exchangers during an ETRN run.

relayd is relay.holdfast.test (hostname, self_names) and listens on 127.0.0.1. It must
deliver only to exchangers more preferred than itself, never to itself and never to a
less preferred one; when it is the best MX, nothing is delivered. A refused connection to
one exchanger moves on to the next one that is still allowed.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import a, mx  # noqa: E402

UP = "127.0.0.2"     # a working exchanger
DOWN = "127.0.0.3"   # connection refused
WORSE = "127.0.0.4"  # a working exchanger less preferred than relayd


class BackupMX(etrnlib.ETRNTestCase):
    ZONE = {
        "relay.holdfast.test": [a("127.0.0.1")],
        # Primary up, relayd second, a third behind it.
        "backup.test": [mx("primary.backup.test", 10), mx("relay.holdfast.test", 20),
                        mx("third.backup.test", 30)],
        "primary.backup.test": [a(UP)],
        "third.backup.test": [a(WORSE)],
        # Primary down, relayd second, a third behind it.
        "downprimary.test": [mx("primary.downprimary.test", 10),
                             mx("RELAY.holdfast.test.", 20),
                             mx("third.downprimary.test", 30)],
        "primary.downprimary.test": [a(DOWN)],
        "third.downprimary.test": [a(WORSE)],
        # relayd is the best MX, by name.
        "selfbest.test": [mx("relay.holdfast.test", 10), mx("other.selfbest.test", 20)],
        "other.selfbest.test": [a(WORSE)],
        # relayd is the best MX, known by its listening address only.
        "selfaddr.test": [mx("alias.selfaddr.test", 10), mx("other.selfaddr.test", 20)],
        "alias.selfaddr.test": [a("127.0.0.1")],
        "other.selfaddr.test": [a(WORSE)],
        # First exchanger refuses connections, the second works.
        "failover.test": [mx("dead.failover.test", 10), mx("live.failover.test", 20)],
        "dead.failover.test": [a(DOWN)],
        "live.failover.test": [a(UP)],
    }
    UP = (UP, WORSE)
    DOWN = (DOWN,)
    DOMAINS = {"backup.test": {}, "downprimary.test": {}, "selfbest.test": {},
               "selfaddr.test": {}, "failover.test": {}}

    def hold(self, domain, n=2):
        r = self.relayd
        ids = {}
        for i in range(n):
            qid = r.send("s@example.org", ["u%d@%s" % (i, domain)],
                         etrnlib.make_body("%s %d" % (domain, i), "text %d\r\n" % i))
            ids[qid] = r.body(qid)
        return ids

    def assertNoSelfDelivery(self, ids_before):
        r = self.relayd
        now = sorted(m["id"] for m in r.list_json())
        self.assertEqual(now, sorted(ids_before), "relayd queued new mail (delivered to itself?)")
        self.assertEqual(r.log_lines(r": client=\S+, c=\d+, helo=<relay\.holdfast\.test>"), [])

    def test_delivery_goes_to_the_primary_only(self):
        r = self.relayd
        ids = self.hold("backup.test", 3)
        mark = r.mark()
        self.assertETRN(r.etrn("backup.test"), 253)
        s = r.wait_flush("backup.test", after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (3, 0, 0), s["line"])
        self.assertEqual(sorted(m.data for m in self.sinks[UP].snapshot()),
                         sorted(ids.values()))
        self.assertEqual(self.sinks[WORSE].connections, 0)
        self.assertQueueEmpty()

    def test_primary_down_mail_stays_queued_not_to_backup_nor_self(self):
        r = self.relayd
        ids = self.hold("downprimary.test", 2)
        mark = r.mark()
        self.assertETRN(r.etrn("downprimary.test"), 253)
        s = r.wait_flush("downprimary.test", after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (0, 2, 0), s["line"])
        # Nothing to the exchanger behind relayd, nothing to relayd itself.
        self.assertEqual(self.sinks[WORSE].connections, 0)
        self.assertEqual(self.sinks[UP].connections, 0)
        self.assertNoSelfDelivery(ids)
        rc = r.rcpts()
        self.assertEqual(sorted(rc), ["u0@downprimary.test", "u1@downprimary.test"])
        for addr, rec in rc.items():
            self.assertEqual(rec["state"], "deferred", rec)
            self.assertEqual(rec["attempts"], 1, rec)
            self.assertGreater(rec["last_attempt"], 0, rec)
            self.assertGreater(rec["next_attempt"], rec["last_attempt"], rec)
            self.assertIn(DOWN, rec["last_error"], rec)
            self.assertRegex(rec["last_error"], r"(?i)refused", rec)
            self.assertNotIn(WORSE, rec["last_error"], rec)
        # The stored bytes are untouched.
        for qid, st in ids.items():
            self.assertEqual(r.body(qid), st)
        for line in r.log_lines(r" to=<u\d@downprimary\.test>, ", after=mark):
            self.assertRegex(line, r" status=deferred ")
            self.assertNotIn(WORSE, line)

    def _self_best(self, domain):
        r = self.relayd
        ids = self.hold(domain, 1)
        mark = r.mark()
        self.assertETRN(r.etrn(domain), 253)
        s = r.wait_flush(domain, after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (0, 1, 0), s["line"])
        self.assertEqual(self.sinks.connections(), {UP: 0, WORSE: 0})
        self.assertNoSelfDelivery(ids)
        said = r.log_lines(r"flush domain=%s this relay is the best MX for %s"
                           % (domain.replace(".", r"\."), domain.replace(".", r"\.")),
                           after=mark)
        self.assertEqual(len(said), 1, "the log should say relayd is the best MX")
        (rec,) = r.rcpts().values()
        self.assertEqual(rec["state"], "deferred", rec)
        self.assertIn("best MX", rec["last_error"], rec)

    def test_relay_is_best_mx_by_name_nothing_delivered(self):
        self._self_best("selfbest.test")

    def test_relay_is_best_mx_by_address_nothing_delivered(self):
        self._self_best("selfaddr.test")

    def test_refused_exchanger_then_next_one(self):
        r = self.relayd
        ids = self.hold("failover.test", 2)
        mark = r.mark()
        self.assertETRN(r.etrn("failover.test"), 253)
        s = r.wait_flush("failover.test", after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (2, 0, 0), s["line"])
        self.assertEqual(sorted(m.data for m in self.sinks[UP].snapshot()),
                         sorted(ids.values()))
        self.assertTrue(r.log_lines(r"flush domain=failover\.test relay=dead\.failover\.test"
                                    r"\[127\.0\.0\.3\]:\d+ connect failed", after=mark))
        for qid in ids:
            self.assertEqual(len(r.log_lines(r"%s: to=<u\d@failover\.test>, relay=live\.failover"
                                             r"\.test\[127\.0\.0\.2\]:\d+, .*status=sent" % qid,
                                             after=mark)), 1)
        self.assertQueueEmpty()


if __name__ == "__main__":
    unittest.main()
