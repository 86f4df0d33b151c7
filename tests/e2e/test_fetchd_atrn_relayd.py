"""fetchd's ATRN mode against the real relayd's ODMR listener (issues 13 and 14): relayd
holds mail (hold = yes) and serves ODMR on a loopback port with STARTTLS (the test CA's
certificate for relay.holdfast.test, which a loopback dnslib server resolves to 127.0.0.1),
CRAM-MD5 secrets from a cram_file and scrypt passwords from an auth_file (odmrlib); fetchd
pulls with mode = atrn and hands the mail to a python3-aiosmtpd local MTA.

  - STARTTLS (certificate checked) and AUTH PLAIN: every held message of the asked domains
    arrives byte-exact (as relayctl shows it), once; the other user's domain stays held;
    fetchd logs one line per message with relayd's queue id; relayd logs its audit line.
  - relayd sends by BDAT (fetchd offers CHUNKING); messages of 70 KiB to 1.2 MiB, far over
    fetchd's 64 KiB read-ahead while the local MTA answers MAIL, arrive byte-exact, once.
  - CRAM-MD5 without TLS (tls = no): released the same way.
  - per recipient: the local MTA refuses one recipient with 550 (relayd bounces it) and one
    with 450 (relayd keeps it queued); the rest is delivered once.
  - the local MTA down: nothing is lost (relayd keeps every recipient, deferred); once it
    is up the next run delivers all of it.
  - fetchd killed while relayd waits for the answer to a message: relayd keeps all of it
    (deferred); the next run delivers each message once.
  - nothing held: 453, exit 0; a domain of another user: 450, exit 1, not retried.

Every wait is bounded; only 127.0.0.1.
"""

import os
import re
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import odmrlib  # noqa: E402
import tlslib  # noqa: E402
from fetchdlib import Fetchd, wait_until  # noqa: E402
from hfharness import free_port  # noqa: E402
from odmr_standin import LocalMTA  # noqa: E402

RELAY_NAME = tlslib.SERVER_CN


class FetchdATRNRelayd(odmrlib.ODMRCase):
    ZONE = {RELAY_NAME: [etrnlib.a("127.0.0.1")]}

    def setUp(self):
        super().setUp()
        self.fetchds = []
        self.locals = []
        self.addCleanup(self._stop_all)

    def _stop_all(self):
        for m in self.locals:
            m.stop()
        for f in self.fetchds:
            if self._failed():
                sys.stderr.write("\n---- fetchd log ----\n%s---- end ----\n" % f.log_text())
            shutil.rmtree(f.dir, ignore_errors=True)

    def local(self, port=None, **kw):
        m = LocalMTA(port=port, **kw).start()
        self.locals.append(m)
        return m

    def fetchd(self, mta_port, user="branch", secret=None, domains="branch.test second.test",
               **relay):
        opts = {"host": RELAY_NAME, "port": self.relayd.odmr_port, "domains": domains,
                "mode": "atrn", "tls": "require", "auth_user": user}
        opts.update(relay)
        f = Fetchd({"dns_servers": "127.0.0.1:%d" % self.dns.port, "dns_timeout": "2",
                    "tls_ca_file": self.pki.ca_cert, "retry_limit": "0",
                    "local_mta": "127.0.0.1:%d" % mta_port}, {"isp": opts})
        path = os.path.join(f.dir, "isp.password")
        with open(path, "w") as fh:
            fh.write((secret or odmrlib.ODMR_USERS[user][0]) + "\n")
        os.chmod(path, 0o600)
        opts["auth_password_file"] = path
        f.write_config()
        self.fetchds.append(f)
        return f

    def test_starttls_plain_byte_exact(self):
        r = self.relayd
        held = self.hold("branch.test", 3)
        held.update(self.hold("second.test", 1))
        self.hold("other.test", 1)
        mark = r.mark()
        mta = self.local()
        f = self.fetchd(mta.port)
        rc, text = f.run("--once")
        self.assertEqual(rc, 0, text)
        got = mta.got()
        self.assertEqual(sorted(m[2] for m in got), sorted(held.values()))
        # relayd commits the results before its run's last line, not before our 250s.
        r.wait_log(r"atrn done user=branch .*tls=TLSv1\.[23]\S* messages=4 .*sent=4 "
                   r"deferred=0 bounced=0", after=mark)
        self.assertEqual(self.queued_domains(), ["other.test"])
        self.assertRegex(text, r"tls established version=TLSv1\.[23] cipher=\S+ verified=yes")
        self.assertRegex(text, r"authenticated user=branch")
        ids = re.findall(r"relay=isp domain=(?:branch|second)\.test id=(\S+) local=250 ", text)
        self.assertEqual(sorted(ids), sorted(held.keys()), text)
        # fetchd offers CHUNKING and PIPELINING, so relayd sends every message by BDAT
        # (RFC 3030): MAIL, RCPT and the chunks in one write, no wait for a 354.
        self.assertEqual(len(re.findall(r"relay=isp domain=\S+ id=\S+ local=250 .*via=BDAT ",
                                        text)), 4, text)
        self.assertNotIn(odmrlib.ODMR_USERS["branch"][0], text)

    def test_large_messages_by_bdat(self):
        # Messages far over fetchd's 64 KiB read-ahead: relayd sends MAIL, RCPT and every
        # chunk at once, fetchd stops reading while the local MTA answers MAIL and RCPT, then
        # reads on. Each arrives byte-exact, once, by BDAT.
        r = self.relayd
        held = {}
        for i, kib in enumerate((300, 1200, 70)):
            line = ("%d line of a large message " % i).ljust(76, "x") + "\r\n"
            text = line * (kib * 1024 // len(line)) + ".leading dot, kept as it is\r\n"
            qid = r.send("big@example.org", ["user%d@branch.test" % i],
                         etrnlib.make_body("large %d" % i, text))
            held[qid] = r.body(qid)
        mta = self.local()
        f = self.fetchd(mta.port, domains="branch.test")
        rc, text = f.run("--once")
        self.assertEqual(rc, 0, text)
        got = sorted(m[2] for m in mta.got())
        self.assertEqual(len(got), 3)
        self.assertEqual(got, sorted(held.values()))
        self.assertEqual(len(re.findall(r"local=250 .*via=BDAT ", text)), 3, text)
        r.wait_log(r"atrn done user=branch .*messages=3 .*sent=3 deferred=0 bounced=0")
        self.assertEqual(r.rcpts(), {})

    def test_cram_md5_without_tls(self):
        held = self.hold("branch.test", 2)
        mta = self.local()
        f = self.fetchd(mta.port, secret=odmrlib.ODMR_USERS["branch"][1], tls="no",
                        domains="branch.test")
        rc, text = f.run("--once")
        self.assertEqual(rc, 0, text)
        self.assertEqual(sorted(m[2] for m in mta.got()), sorted(held.values()))
        self.relayd.wait_log(r"atrn done user=branch .*tls=none messages=2")
        self.assertEqual(self.relayd.rcpts(), {})

    def test_local_refusals_per_recipient(self):
        r = self.relayd
        qid = r.send("sender@example.org",
                     ["ok@branch.test", "nobody@branch.test", "later@branch.test"],
                     etrnlib.make_body("three", "three recipients\r\n"))
        stored = r.body(qid)
        mta = self.local()
        f = self.fetchd(mta.port, domains="branch.test")
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)  # 450: not everything released
        self.assertEqual(mta.got(), [("sender@example.org", ["ok@branch.test"], stored)])
        r.wait_log(r"atrn done user=branch .* sent=1 deferred=1 bounced=1")
        left = r.rcpts()
        self.assertNotIn("ok@branch.test", left)
        self.assertNotIn("nobody@branch.test", left)
        self.assertIn("later@branch.test", left)
        self.assertTrue(r.log_lines(r"to=<nobody@branch\.test>.*status=bounced \(550 5\.1\.1"))
        self.assertTrue(r.log_lines(r"to=<later@branch\.test>.*status=deferred \(450 4\.2\.1"))
        self.assertRegex(text, r"relay=isp rcpt=<nobody@branch\.test> local=550 reply=550")

    def test_local_mta_down_loses_nothing(self):
        held = self.hold("branch.test", 2)
        port = free_port()
        f = self.fetchd(port, domains="branch.test")
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)
        self.assertEqual(len(self.relayd.rcpts()), 2)
        self.relayd.wait_log(r"atrn done user=branch .* sent=0 deferred=2 bounced=0")
        mta = self.local(port=port)
        mark = self.relayd.mark()
        rc, text = f.run("--once")
        self.assertEqual(rc, 0, text)
        self.assertEqual(sorted(m[2] for m in mta.got()), sorted(held.values()))
        self.relayd.wait_log(r"atrn done user=branch .* sent=2 deferred=0 bounced=0", after=mark)
        self.assertEqual(self.relayd.rcpts(), {})

    def test_fetchd_killed_mid_release_loses_nothing(self):
        # fetchd dies (SIGKILL) while relayd waits for the answer to the first message's end
        # of data: relayd keeps everything; the next run delivers each message once.
        r = self.relayd
        held = self.hold("branch.test", 3)
        mta = self.local(hold_first=True)
        f = self.fetchd(mta.port, domains="branch.test")
        mark = r.mark()
        f.start("--once")
        wait_until(mta.entered.is_set, 60, "the first message at the local MTA")
        f.proc.kill()
        f.wait_exit(30)
        f.stop()
        mta.gate.set()
        r.wait_log(r"atrn done user=branch .* sent=0 deferred=3 bounced=0", after=mark)
        self.assertEqual(len(r.rcpts()), 3)
        self.assertEqual(mta.got(), [])
        mta.hold_first = False
        mark = r.mark()
        f.proc = None
        rc, text = f.run("--once")
        self.assertEqual(rc, 0, text)
        self.assertEqual(sorted(m[2] for m in mta.got()), sorted(held.values()))
        r.wait_log(r"atrn done user=branch .* sent=3 deferred=0 bounced=0", after=mark)
        self.assertEqual(r.rcpts(), {})

    def test_453_and_450(self):
        mta = self.local()
        f = self.fetchd(mta.port, domains="branch.test")
        rc, text = f.run("--once")
        self.assertEqual(rc, 0, text)
        self.assertRegex(text, r"domain=branch\.test reply=453 .*verdict=done")
        self.hold("other.test", 1)
        f = self.fetchd(mta.port, domains="other.test")
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)
        self.assertRegex(text, r"domain=other\.test reply=450 .*verdict=fatal")
        self.assertEqual(mta.got(), [])
        self.assertEqual(self.queued_domains(), ["other.test"])


if __name__ == "__main__":
    unittest.main()
