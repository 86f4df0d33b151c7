"""What DNS says decides an ETRN run: null MX, SERVFAIL, NXDOMAIN, no answer, implicit MX,
and a static next hop that bypasses DNS.

RFC 7505: a null MX means the domain accepts no mail, so its recipients fail (bounced).
A temporary DNS failure (SERVFAIL, no answer) and a name that does not exist keep the mail
queued (deferred) with the error recorded. A domain with an A record and no MX gets its
mail at that address (RFC 5321 5.1). next_hop = [addr]:port goes there without any lookup.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import a, mx  # noqa: E402

NOT_USED = "127.0.0.2"  # what DNS would say for static.test: must not be used
IMPLICIT = "127.0.0.3"
STATIC = "127.0.0.5"


class DNSDecides(etrnlib.ETRNTestCase):
    ZONE = {
        "nullmx.test": [mx(".", 0)],
        "implicit.test": [a(IMPLICIT)],
        "static.test": [mx("mx.static.test", 10)],
        "mx.static.test": [a(NOT_USED)],
    }
    SPECIAL = {"servfail.test": "SERVFAIL", "silent.test": "DROP"}
    UP = (NOT_USED, IMPLICIT, STATIC)

    def domains(self):
        return {"nullmx.test": {}, "servfail.test": {}, "nxdomain.test": {},
                "silent.test": {}, "implicit.test": {},
                "static.test": {"next_hop": "[%s]:%d" % (STATIC, self.sinks.port)}}

    def hold_and_etrn(self, domain, n=1, seconds=30):
        r = self.relayd
        ids = {}
        for i in range(n):
            qid = r.send("s@example.org", ["u%d@%s" % (i, domain)],
                         etrnlib.make_body("%s %d" % (domain, i), "text\r\n"))
            ids[qid] = r.body(qid)
        mark = r.mark()
        self.assertETRN(r.etrn(domain), 253)
        s = r.wait_flush(domain, after=mark, seconds=seconds)
        return ids, mark, s

    def assertNothingDelivered(self):
        self.assertEqual(self.sinks.connections(), {h: 0 for h in self.UP})

    def test_null_mx_fails_the_recipients(self):
        r = self.relayd
        ids, mark, s = self.hold_and_etrn("nullmx.test", 2)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (0, 0, 2), s["line"])
        self.assertNothingDelivered()
        # Bounced at once: the recipients are gone, one DSN per message is queued for the
        # sender (s@example.org, not in the test DNS: it waits there).
        rc = r.rcpts()
        self.assertEqual(sorted(rc), ["s@example.org"])
        for qid in ids:
            r.wait_log(r"%s: sender non-delivery notification: " % qid, after=mark)
        lines = r.log_lines(r" to=<u\d@nullmx\.test>, ", after=mark)
        self.assertEqual(len(lines), 2, lines)
        for line in lines:
            self.assertIn(" status=bounced ", line)
        # Bounced recipients are not tried again: nothing waits for delivery (251), no run
        # starts, and no line about them is logged. relayd logs its ETRN decision after
        # deciding whether to start a run, so the "etrn ... reply=" line bounds the check.
        mark2 = r.mark()
        reply = r.etrn("nullmx.test")
        r.wait_log(r" etrn arg=nullmx\.test .* reply=", after=mark2)
        self.assertEqual(r.log_lines(r"flush domain=nullmx\.test .*started", after=mark2), [])
        self.assertEqual(r.log_lines(r" to=<u\d@nullmx\.test>, ", after=mark2), [])
        with self.subTest("ETRN reply when every recipient was bounced"):
            self.assertETRN(reply, 251, r"OK, no messages waiting for node nullmx\.test")

    def _deferred_by_dns(self, domain, seconds=30):
        r = self.relayd
        ids, mark, s = self.hold_and_etrn(domain, 1, seconds)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (0, 1, 0), s["line"])
        self.assertNothingDelivered()
        (rec,) = r.rcpts().values()
        self.assertEqual(rec["state"], "deferred", rec)
        self.assertEqual(rec["attempts"], 1, rec)
        self.assertIn(domain, rec["last_error"], rec)
        self.assertRegex(rec["last_error"], r"(?i)DNS", rec)
        self.assertEqual(len(self.dns.queries_for(domain)) > 0, True)
        for qid, st in ids.items():
            self.assertEqual(r.body(qid), st)
        return rec

    def test_servfail_defers_not_bounces(self):
        self._deferred_by_dns("servfail.test")

    def test_nxdomain_defers_with_an_error(self):
        self._deferred_by_dns("nxdomain.test")

    def test_no_dns_answer_defers(self):
        # dns_timeout = 2 s per try: bounded by the run's summary line.
        self._deferred_by_dns("silent.test", seconds=60)

    def test_implicit_mx_a_record_only(self):
        r = self.relayd
        ids, mark, s = self.hold_and_etrn("implicit.test", 2)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (2, 0, 0), s["line"])
        self.assertEqual(sorted(m.data for m in self.sinks[IMPLICIT].snapshot()),
                         sorted(ids.values()))
        self.assertEqual(len(r.log_lines(r" to=<u\d@implicit\.test>, relay=implicit\.test"
                                         r"\[127\.0\.0\.3\]:\d+, .*status=sent", after=mark)), 2)
        self.assertQueueEmpty()

    def test_static_next_hop_without_dns(self):
        r = self.relayd
        ids, mark, s = self.hold_and_etrn("static.test", 2)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (2, 0, 0), s["line"])
        self.assertEqual(sorted(m.data for m in self.sinks[STATIC].snapshot()),
                         sorted(ids.values()))
        self.assertEqual(self.sinks[NOT_USED].connections, 0)
        self.assertEqual(self.dns.queries_for("static.test"), [])
        self.assertEqual(self.dns.queries_for("mx.static.test"), [])
        port = self.sinks.port
        self.assertEqual(len(r.log_lines(r"flush domain=static\.test next_hop=\[127\.0\.0\.5\]:%d"
                                         r" \(static, not DNS-verified\)" % port, after=mark)), 1)
        sent = r.log_lines(r" to=<u\d@static\.test>, .*status=sent", after=mark)
        self.assertEqual(len(sent), 2, sent)
        for line in sent:
            self.assertRegex(line, r" relay=static[^ ]*\[127\.0\.0\.5\]:%d, " % port)
        self.assertQueueEmpty()


if __name__ == "__main__":
    unittest.main()
