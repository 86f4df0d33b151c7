"""ETRN reply codes (RFC 1985 section 5) from the real relayd, asked with smtplib:

  253 OK, <n> pending message(s) for node X started   (trusted client, a run starts)
  251 OK, no messages waiting for node X              (trusted client)
  250 OK, queuing for node X started                  (untrusted client: no counts)
  458 a run for X is already going / rate limited
  459 not a domain served, no such #group, client not in etrn_allow
  501 syntax, 503 inside a mail transaction (or before EHLO)

The "already running" case is made deterministic by a receiving server that holds its
reply to the final dot until the test lets it go.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import a, mx  # noqa: E402

SLOW_MX = "127.0.0.2"


class Replies(etrnlib.ETRNTestCase):
    ZONE = {
        "slow.test": [mx("mx.slow.test", 10)],
        "mx.slow.test": [a(SLOW_MX)],
        "quick.test": [mx("mx.slow.test", 10)],
    }
    UP = (SLOW_MX,)
    DOMAINS = {"slow.test": {}, "quick.test": {}}
    CONF = {"flush_connections": "1"}

    def hold(self, domain, n, relayd=None):
        r = relayd or self.relayd
        return [r.send("s@example.org", ["u%d@%s" % (i, domain)],
                       etrnlib.make_body("%s %d" % (domain, i), "x\r\n")) for i in range(n)]

    def test_ehlo_offers_etrn(self):
        s = self.relayd.smtp()
        try:
            code, _ = s.ehlo(etrnlib.CLIENT_NAME)
            self.assertEqual(code, 250)
            self.assertTrue(s.has_extn("etrn"), s.esmtp_features)
        finally:
            s.quit()

    def test_253_458_while_running_then_251(self):
        r = self.relayd
        sink = self.sinks[SLOW_MX]
        sink.hold_data = True
        self.hold("slow.test", 2)
        mark = r.mark()
        self.assertETRN(r.etrn("slow.test"), 253,
                        r"^2\.0\.0 OK, 2 pending messages for node slow\.test started$")
        # The run is in the middle of its first message: the server holds the dot reply.
        sink.wait_for(lambda sk: sk.data_started >= 1, 20, "the first message's DATA")
        self.assertETRN(r.etrn("slow.test"), 458,
                        r"^4\.3\.0 Unable to queue messages for node slow\.test: ")
        self.assertETRN(r.etrn("@slow.test"), 458, r"node @slow\.test")
        self.assertETRN(r.etrn("SLOW.TEST"), 458)
        # Another domain is not blocked by it.
        self.assertETRN(r.etrn("quick.test"), 251)
        self.assertEqual(r.log_lines(r"flush domain=slow\.test reason=\S+ messages=\d+ rcpts=\d+ sent=",
                                     after=mark), [])
        sink.release()
        s = r.wait_flush("slow.test", after=mark)
        self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (2, 0, 0), s["line"])
        self.assertEqual(len(r.log_lines(r"flush domain=slow\.test reason=etrn messages=\d+ "
                                         r"started", after=mark)), 1, "one run only")
        self.assertETRN(r.etrn("slow.test"), 251,
                        r"^2\.0\.0 OK, no messages waiting for node slow\.test$")
        self.assertEqual(len(sink.snapshot()), 2)

    def test_one_message_singular(self):
        r = self.relayd
        self.hold("quick.test", 1)
        mark = r.mark()
        self.assertETRN(r.etrn("quick.test"), 253,
                        r"^2\.0\.0 OK, 1 pending message for node quick\.test started$")
        r.wait_flush("quick.test", after=mark)

    def test_459_not_served(self):
        r = self.relayd
        self.assertETRN(r.etrn("example.org"), 459, r"^4\.7\.1 Node example\.org not allowed")
        # slow.test has subdomains = no.
        self.assertETRN(r.etrn("sub.slow.test"), 459)
        self.assertETRN(r.etrn("#nosuchgroup"), 459, r"Node #nosuchgroup not allowed")
        self.assertETRN(r.etrn("@example.org"), 459)

    def test_501_syntax(self):
        r = self.relayd
        for arg in (None, "slow.test extra", "@", "#", "bad..test", "#bad/group",
                    "bad!name.test"):
            with self.subTest(arg=arg):
                self.assertETRN(r.etrn(arg), 501)

    def test_503_inside_a_transaction_and_before_ehlo(self):
        r = self.relayd
        self.hold("slow.test", 1)
        s = r.smtp()
        try:
            code, _ = s.docmd("ETRN", "slow.test")
            self.assertEqual(code, 503, "ETRN before EHLO")
            s.ehlo(etrnlib.CLIENT_NAME)
            code, _ = s.mail("s@example.org")
            self.assertEqual(code, 250)
            code, msg = s.docmd("ETRN", "slow.test")
            self.assertEqual(code, 503, msg)
            code, _ = s.rcpt("u9@slow.test")
            self.assertEqual(code, 250, "the transaction goes on after the refused ETRN")
            code, _ = s.rset()
            self.assertEqual(code, 250)
        finally:
            s.quit()
        self.assertEqual(r.log_lines(r"flush domain=slow\.test"), [])
        self.assertEqual(self.sinks[SLOW_MX].connections, 0)

    def test_untrusted_client_gets_plain_250(self):
        # A second relayd that trusts no loopback client with queue counts.
        u = self.start_relayd(conf={"etrn_trusted": "10.255.255.255/32"})
        self.assertETRN(u.etrn("slow.test"), 250,
                        r"^2\.0\.0 OK, queuing for node slow\.test started$")
        self.assertEqual(u.log_lines(r"flush domain=slow\.test"), [])
        self.hold("slow.test", 2, u)
        mark = u.mark()
        reply = u.etrn("slow.test")
        self.assertETRN(reply, 250, r"^2\.0\.0 OK, queuing for node slow\.test started$")
        self.assertNotIn("2", reply[1].replace("2.0.0", ""), "no count for untrusted clients")
        s = u.wait_flush("slow.test", after=mark)
        self.assertEqual(s["sent"], 2, s["line"])
        self.assertETRN(u.etrn("example.org"), 459)

    def test_client_on_an_mx_host_of_the_domain_gets_counts(self):
        # Untrusted by configuration, but connecting from mx.slow.test's address: the
        # domain's own side, so it is told how much is queued (RFC 1985 lets the server
        # choose; DNS says who the domain's hosts are).
        u = self.start_relayd(conf={"etrn_trusted": "10.255.255.255/32"})
        self.assertETRN(u.etrn("slow.test", source=SLOW_MX), 251,
                        r"^2\.0\.0 OK, no messages waiting for node slow\.test$")
        # The log is read by a thread: wait (bounded) for the line rather than race it.
        u.wait_log(r"etrn client=\[%s\] is an MX host of slow\.test"
                   % SLOW_MX.replace(".", r"\."), seconds=etrnlib.bound(10))
        # Another loopback address is not one of slow.test's hosts: still a plain 250.
        self.assertETRN(u.etrn("slow.test", source="127.0.0.9"), 250,
                        r"^2\.0\.0 OK, queuing for node slow\.test started$")

    def test_etrn_allow_refuses_other_clients(self):
        u = self.start_relayd(conf={"etrn_allow": "10.255.255.255/32"})
        self.hold("slow.test", 1, u)
        self.assertETRN(u.etrn("slow.test"), 459, r"not allowed")
        self.assertEqual(u.log_lines(r"flush domain=slow\.test"), [])
        self.assertEqual(self.sinks[SLOW_MX].connections, 0)
        self.assertEqual(len(u.list_json()), 1)

    def test_rate_limit_per_client(self):
        u = self.start_relayd(conf={"etrn_rate_client": "3"})
        for _ in range(3):
            self.assertETRN(u.etrn("quick.test"), 251)
        self.assertETRN(u.etrn("quick.test"), 458, r"^4\.7\.0 Unable to queue messages")
        # Another client address has its own budget.
        self.assertETRN(u.etrn("quick.test", source="127.0.0.9"), 251)

    def test_rate_limit_per_domain(self):
        u = self.start_relayd(conf={"etrn_rate_domain": "1"})
        self.hold("quick.test", 1, u)
        mark = u.mark()
        self.assertETRN(u.etrn("quick.test"), 253)
        u.wait_flush("quick.test", after=mark)
        self.hold("quick.test", 1, u)
        mark = u.mark()
        self.assertETRN(u.etrn("quick.test"), 458, r"^4\.7\.0 Unable to queue messages for node "
                                                   r"quick\.test")
        self.assertEqual(u.log_lines(r"flush domain=quick\.test", after=mark), [])
        self.assertEqual(len(u.list_json()), 1)


if __name__ == "__main__":
    unittest.main()
