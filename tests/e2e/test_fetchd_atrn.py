"""fetchd's ATRN mode (issue 14) against an ODMR relay stand-in written for the test
(odmr_standin.py: a socket server that plays the relay up to ATRN, then python's smtplib as the
relay's client on the turned connection) and a python3-aiosmtpd local MTA.

  - byte-exact: two held messages (dot lines, 8-bit, CRLF only) reach the local MTA exactly
    as held; fetchd --once exits 0; one log line per message (relay= domain= id= local=250);
    AUTH CRAM-MD5 in clear (tls = no), never PLAIN without TLS.
  - per recipient: the local MTA refuses one recipient with 550 and another with 450: the
    relay gets 550 (bounced) and 450 (still held) for those and 250 for the rest; nothing
    delivered twice; --once exits 1 (450 retried, then given up).
  - the local MTA down: MAIL gets 451, the relay keeps everything; once it is up a second
    run delivers everything, once.
  - the connection cut in the middle of a message's data: the local MTA gets nothing of it;
    the retry delivers it once.
  - a message with a bare LF: 554 5.6.0 from fetchd itself (bounced by the relay), never at
    the local MTA, logged.
  - SIGTERM while the local MTA holds a message's answer: fetchd exits 0 in time, the relay
    keeps everything.
  - 453 ends quietly (exit 0, one connection); 450 is reported and not retried (exit 1);
    451 is retried with the backoff (retry_limit + 1 connections, exit 1).
  - STARTTLS (tls = require, the stand-in's certificate from the test CA, checked) and AUTH
    PLAIN under TLS; a certificate for another name is refused before AUTH; without a tls
    key ATRN requires TLS (a relay without STARTTLS gets no AUTH and no ATRN).
  - two [relay] sections released in the same run, each retried on its own (one answers
    451 first).
  - LMTP as the local protocol (aiosmtpd's LMTP server).

Every wait is bounded; only 127.0.0.1.
"""

import os
import re
import shutil
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlslib  # noqa: E402
from dnslib import A  # noqa: E402
from fetchdlib import Fetchd, ZoneDNS, wait_until  # noqa: E402
from hfharness import free_port  # noqa: E402
from odmr_standin import Held, LocalMTA, OdmrStandIn  # noqa: E402

SECRET = "s3cret cram"


BODY1 = (b"From: a@example.org\r\nTo: u@branch.test\r\nSubject: one\r\n\r\n"
         b".a line starting with a dot\r\n..two dots\r\n.\r\nend\r\n")
BODY2 = (b"From: b@example.org\r\nSubject: =?utf-8?q?zwei?=\r\n\r\n"
         b"8-bit: \xc3\xa4\xc3\xb6\xc3\xbc\r\n" + b"x" * 998 + b"\r\n")


class ATRNCase(unittest.TestCase):
    pki = None

    @classmethod
    def setUpClass(cls):
        cls.pki = tlslib.PKI().make()

    @classmethod
    def tearDownClass(cls):
        cls.pki.cleanup()

    def setUp(self):
        self.things = []
        self.fetchds = []
        self.addCleanup(self._cleanup)

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        errs = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(t is self for t, _ in errs)

    def _cleanup(self):
        for t in self.things:
            t.stop()
        problems = []
        for f in self.fetchds:
            f.stop()
            problems += f.problems
            if self._failed() or problems:
                sys.stderr.write("\n---- fetchd log ----\n%s---- end ----\n" % f.log_text())
            shutil.rmtree(f.dir, ignore_errors=True)
        if problems:
            self.fail("; ".join(problems))

    def relay(self, held, **kw):
        r = OdmrStandIn(held, secret=SECRET, **kw).start()
        self.things.append(r)
        return r

    def local(self, **kw):
        m = LocalMTA(**kw).start()
        self.things.append(m)
        return m

    def fetchd(self, relays, mta_port, **glob):
        g = {"local_mta": "127.0.0.1:%d" % mta_port, "retry_limit": "1", "retry_delay": "1"}
        g.update(glob)
        f = Fetchd(globals_=g, relays={})
        pw = os.path.join(f.dir, "pw")
        with open(pw, "w") as fh:
            fh.write(SECRET + "\n")
        os.chmod(pw, 0o600)
        for name, (relay, extra) in relays.items():
            opts = {"host": "127.0.0.1", "port": relay.port, "domains": "branch.test",
                    "mode": "atrn", "tls": "no", "auth_user": "alice",
                    "auth_password_file": pw}
            opts.update(extra)
            f.relays[name] = opts
        f.write_config()
        self.fetchds.append(f)
        return f

    def run_once(self, f, seconds=90):
        rc, text = f.run("--once", seconds=seconds)
        return rc, text

    # ---- tests ----

    def test_byte_exact_with_cram_md5(self):
        mta = self.local()
        relay = self.relay([Held("Q1", "a@example.org", ["u@branch.test", "v@branch.test"],
                                 BODY1),
                            Held("Q2", "b@example.org", ["w@branch.test"], BODY2,
                                 options=["BODY=8BITMIME"])])
        f = self.fetchd({"isp": (relay, {})}, mta.port)
        rc, text = self.run_once(f)
        self.assertEqual(rc, 0, text)
        got = mta.got()
        self.assertEqual(len(got), 2, text)
        self.assertEqual(got[0], ("a@example.org", ["u@branch.test", "v@branch.test"], BODY1))
        self.assertEqual(got[1], ("b@example.org", ["w@branch.test"], BODY2))
        self.assertEqual(relay.held_rcpts(), [])
        self.assertEqual(relay.bounced, [])
        self.assertEqual(relay.errors, [])
        # CRAM-MD5 in clear, never PLAIN; one ATRN for the domain.
        self.assertEqual([(m, u, ok, tls) for _, m, u, ok, tls in relay.auth],
                         [("CRAM-MD5", "alice", True, False)])
        self.assertIn((1, "ATRN", "branch.test"), relay.log)
        self.assertEqual(len(re.findall(
            r"relay=isp domain=branch\.test id=msg\d+ local=250 rcpts=\d.* via=DATA ", text)),
            2, text)  # smtplib's data(): the stand-in does not use CHUNKING
        # The relay saw fetchd's own greeting after the turn.
        self.assertTrue(any(e == "greeting" and d.startswith("220 branch.example.test")
                            for _, e, d in relay.log), relay.log)

    def test_local_refusals_mapped_per_recipient(self):
        mta = self.local()
        relay = self.relay([Held("Q1", "a@example.org",
                                 ["u@branch.test", "nobody@branch.test", "later@branch.test"],
                                 BODY1)])
        f = self.fetchd({"isp": (relay, {})}, mta.port)
        rc, text = self.run_once(f)
        self.assertEqual(rc, 1, text)  # 450: retried, then given up
        first = sorted((r, c) for n, _, r, c in relay.results if n == 1)
        self.assertEqual(first, [("later@branch.test", 450), ("nobody@branch.test", 550),
                                 ("u@branch.test", 250)])
        self.assertEqual(relay.bounced, [("Q1", "nobody@branch.test", 550)])
        self.assertEqual(relay.held_rcpts(), [("Q1", "later@branch.test")])
        self.assertEqual(relay.delivered, [("Q1", "u@branch.test")])
        got = mta.got()
        self.assertEqual(got, [("a@example.org", ["u@branch.test"], BODY1)])
        self.assertGreaterEqual(relay.connections, 2)  # the 450 was retried
        self.assertRegex(text, r"relay=isp rcpt=<nobody@branch\.test> local=550 reply=550")

    def test_local_mta_down_loses_nothing(self):
        port = free_port()
        relay = self.relay([Held("Q1", "a@example.org", ["u@branch.test"], BODY1),
                            Held("Q2", "b@example.org", ["w@branch.test"], BODY2,
                                 options=["BODY=8BITMIME"])])
        f = self.fetchd({"isp": (relay, {})}, port)
        rc, text = self.run_once(f)
        self.assertEqual(rc, 1, text)
        self.assertTrue(relay.results)
        self.assertTrue(all(c // 100 == 4 for _, _, _, c in relay.results), relay.results)
        self.assertEqual(relay.held_rcpts(), [("Q1", "u@branch.test"), ("Q2", "w@branch.test")])
        mta = self.local(port=port)
        rc, text = self.run_once(f)
        self.assertEqual(rc, 0, text)
        self.assertEqual(sorted(m[2] for m in mta.got()), sorted([BODY1, BODY2]))
        self.assertEqual(relay.held_rcpts(), [])

    def test_connection_cut_mid_message(self):
        mta = self.local()
        relay = self.relay([Held("Q1", "a@example.org", ["u@branch.test"], BODY1),
                            Held("Q2", "b@example.org", ["w@branch.test"], BODY2)],
                           cut=(1, 1))
        f = self.fetchd({"isp": (relay, {})}, mta.port, retry_limit="2")
        rc, text = self.run_once(f)
        self.assertEqual(rc, 0, text)
        self.assertIn((1, "cut", "Q2"), relay.log)
        got = [m[2] for m in mta.got()]
        self.assertEqual(got, [BODY1, BODY2])  # Q2 once, from the second connection
        self.assertEqual(relay.held_rcpts(), [])
        self.assertRegex(text, r"atrn session ended .*quit=no verdict=retry")

    def test_atrn_replies(self):
        mta = self.local()
        cases = [("453 You have no mail", 0, 1), ("450 4.7.1 not now for you", 1, 1),
                 ("451 4.3.0 a flush is running", 1, 3)]
        for reply, want_rc, want_conns in cases:
            with self.subTest(reply=reply):
                relay = self.relay([Held("Q1", "a@example.org", ["u@branch.test"], BODY1)],
                                   atrn_replies=[reply])
                f = self.fetchd({"isp": (relay, {})}, mta.port, retry_limit="2")
                rc, text = self.run_once(f)
                self.assertEqual(rc, want_rc, text)
                self.assertEqual(relay.connections, want_conns, text)
                self.assertEqual(mta.got(), [])
                self.assertEqual(relay.held_rcpts(), [("Q1", "u@branch.test")])
                self.assertRegex(text, r"domain=branch\.test reply=%s" % reply[:3])

    def test_starttls_and_plain(self):
        mta = self.local()
        dns = ZoneDNS({"odmr.relay.test": [("A", A("127.0.0.1"))],
                       "wrong.relay.test": [("A", A("127.0.0.1"))]}).start()
        self.things.append(dns)
        cert = self.pki.leaf("odmr", "odmr.relay.test")
        relay = self.relay([Held("Q1", "a@example.org", ["u@branch.test"], BODY1)], cert=cert)
        glob = {"tls_ca_file": self.pki.ca_cert, "dns_servers": "127.0.0.1:%d" % dns.port}
        # The certificate does not name the host fetchd asked for: no AUTH, no ATRN.
        f = self.fetchd({"isp": (relay, {"tls": "require", "host": "wrong.relay.test"})},
                        mta.port, **glob)
        rc, text = self.run_once(f)
        self.assertEqual(rc, 1, text)
        self.assertEqual(relay.auth, [])
        self.assertNotIn("ATRN", [e for _, e, _ in relay.log])
        self.assertRegex(text, r"tls failed host=wrong\.relay\.test verify=yes")
        # The right name: checked (tls_verify auto with auth_user), AUTH PLAIN under TLS.
        f = self.fetchd({"isp": (relay, {"tls": "require", "host": "odmr.relay.test"})},
                        mta.port, **glob)
        rc, text = self.run_once(f)
        self.assertEqual(rc, 0, text)
        self.assertEqual([(m, ok, tls) for _, m, _, ok, tls in relay.auth],
                         [("PLAIN", True, True)])
        self.assertEqual(mta.got(), [("a@example.org", ["u@branch.test"], BODY1)])
        self.assertRegex(text, r"tls established version=TLS\S+ cipher=\S+ verified=yes")

    def test_bad_message_refused_and_logged(self):
        # A bare LF in the content (RFC 5321 2.3.8): refused by fetchd itself with 554 5.6.0
        # (the relay bounces it), never handed to the local MTA, and logged.
        mta = self.local()
        relay = self.relay([Held("Q1", "a@example.org", ["u@branch.test"],
                                 b"Subject: bad\r\n\r\nbare\nLF\r\n"),
                            Held("Q2", "b@example.org", ["w@branch.test"], BODY1)])
        f = self.fetchd({"isp": (relay, {})}, mta.port)
        rc, text = self.run_once(f)
        self.assertEqual(rc, 0, text)
        self.assertEqual(relay.bounced, [("Q1", "u@branch.test", 554)])
        self.assertEqual(mta.got(), [("b@example.org", ["w@branch.test"], BODY1)])
        self.assertRegex(text, r'relay=isp refused count=1 last="554 5\.6\.0 bare CR or LF')

    def test_sigterm_mid_session(self):
        # fetchd stopped (SIGTERM) while the local MTA holds the first message's answer: it
        # exits in time, cleanly (no sanitizer report, no leak), and the relay keeps
        # everything; nothing reached the local MTA.
        mta = self.local(hold_first=True)
        relay = self.relay([Held("Q1", "a@example.org", ["u@branch.test"], BODY1),
                            Held("Q2", "b@example.org", ["w@branch.test"], BODY2)])
        f = self.fetchd({"isp": (relay, {})}, mta.port)
        f.start("-f")
        wait_until(mta.entered.is_set, 60, "the first message at the local MTA")
        f.signal(signal.SIGTERM)
        self.assertEqual(f.wait_exit(30), 0, f.log_text())
        mta.gate.set()
        self.assertEqual(mta.got(), [])
        self.assertEqual(relay.held_rcpts(), [("Q1", "u@branch.test"), ("Q2", "w@branch.test")])
        self.assertEqual(relay.delivered, [])

    def test_tls_required_by_default(self):
        # mode = atrn without a tls key means tls = require: a relay without STARTTLS gets
        # neither AUTH nor ATRN.
        mta = self.local()
        relay = self.relay([Held("Q1", "a@example.org", ["u@branch.test"], BODY1)])
        f = self.fetchd({"isp": (relay, {})}, mta.port, retry_limit="0")
        del f.relays["isp"]["tls"]
        f.write_config()
        rc, text = self.run_once(f)
        self.assertEqual(rc, 1, text)
        self.assertEqual(relay.auth, [])
        self.assertNotIn("ATRN", [e for _, e, _ in relay.log])
        self.assertRegex(text, r"TLS required but the server does not offer STARTTLS")
        self.assertEqual(relay.held_rcpts(), [("Q1", "u@branch.test")])

    def test_two_relays_in_parallel(self):
        mta = self.local()
        r1 = self.relay([Held("A1", "a@example.org", ["u@branch.test"], BODY1)])
        r2 = self.relay([Held("B1", "b@example.org", ["w@branch.test"], BODY2,
                              options=["BODY=8BITMIME"])],
                        atrn_replies=["451 4.3.0 busy", "250 OK"])
        f = self.fetchd({"one": (r1, {}), "two": (r2, {})}, mta.port, retry_limit="2")
        rc, text = self.run_once(f)
        self.assertEqual(rc, 0, text)
        self.assertEqual(sorted(m[2] for m in mta.got()), sorted([BODY1, BODY2]))
        self.assertEqual(r1.connections, 1)
        self.assertEqual(r2.connections, 2)
        self.assertRegex(text, r"relay=one domain=branch\.test id=\S+ local=250")
        self.assertRegex(text, r"relay=two domain=branch\.test id=\S+ local=250")

    def test_lmtp_local(self):
        mta = self.local(lmtp=True)
        relay = self.relay([Held("Q1", "a@example.org", ["u@branch.test", "nobody@branch.test"],
                                 BODY1)])
        f = self.fetchd({"isp": (relay, {})}, mta.port, local_mta_protocol="lmtp")
        rc, text = self.run_once(f)
        self.assertEqual(rc, 0, text)
        self.assertEqual(mta.got(), [("a@example.org", ["u@branch.test"], BODY1)])
        self.assertEqual(relay.bounced, [("Q1", "nobody@branch.test", 550)])
        self.assertEqual(relay.held_rcpts(), [])


if __name__ == "__main__":
    unittest.main()
