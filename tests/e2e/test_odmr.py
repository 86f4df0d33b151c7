"""ODMR (RFC 2645, issue 13): ATRN on relayd's ODMR listener, with a client written for the
test (odmrlib.ODMRClient: CRAM-MD5 from Python's hmac, the server side after the reversal).

What each kind of input gets:
  EHLO on the ODMR port     AUTH CRAM-MD5 and ATRN, STARTTLS; no SIZE, ETRN, CHUNKING
  MAIL / RCPT / ETRN there  502 5.5.1 (the ODMR port takes no mail)
  ATRN before AUTH          530 5.7.0
  AUTH PLAIN before TLS     538 5.7.11; CRAM-MD5 with a wrong digest or unknown user 535
  ATRN of a foreign domain  450 4.7.1, naming it; nothing released
  ATRN with nothing waiting 453; bad syntax 501; a release of it already running 451
  TURN anywhere             502 5.5.1 with a hint; ATRN on the SMTP port 502 naming the
                            ODMR port
  ATRN accepted             250, then relayd waits for our 220 and delivers the domain's held
                            mail byte-exact over the same connection, QUIT; per-recipient
                            replies decide (550 bounces, 450 stays queued); a cut
                            mid-message loses nothing and repeats nothing that was taken.
Every refusal leaves a log line; a release leaves "atrn start" and "atrn done" lines.
"""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import odmrlib  # noqa: E402
from odmrlib import ODMR_USERS  # noqa: E402


class ODMRDialogue(odmrlib.ODMRCase):

    def test_ehlo_offers_auth_and_atrn_only(self):
        c = self.odmr()
        kws = c.ehlo()
        self.assertIn("AUTH CRAM-MD5", kws)
        self.assertIn("ATRN", kws)
        self.assertIn("STARTTLS", kws)
        for absent in ("ETRN", "CHUNKING", "DSN", "PIPELINING"):
            self.assertNotIn(absent, kws)
        self.assertFalse([k for k in kws if k.startswith("SIZE")], kws)

    def test_refusals_before_and_without_auth(self):
        r = self.relayd
        mark = r.mark()
        c = self.odmr()
        code, lines = c.cmd("ATRN branch.test")
        self.assertEqual(code, 503, lines)  # before EHLO
        c.ehlo()
        code, lines = c.cmd("ATRN branch.test")
        self.assertEqual(code, 530, lines)
        self.assertRegex(lines[0], r"^530 5\.7\.0 ")
        for line in ("MAIL FROM:<a@example.org>", "RCPT TO:<u@branch.test>", "ETRN branch.test"):
            code, lines = c.cmd(line)
            self.assertEqual(code, 502, (line, lines))
            self.assertIn("ODMR port", lines[0])
        code, lines = c.cmd("AUTH PLAIN " + "AGJyYW5jaABicmFuY2gtcGFzc3dvcmQtMQ==")
        self.assertEqual(code, 538, lines)
        code, lines = c.auth_cram("branch", "wrong secret")
        self.assertEqual(code, 535, lines)
        code, lines = c.auth_cram("nosuchuser", "whatever")
        self.assertEqual(code, 535, lines)
        code, lines = c.cmd("TURN")
        self.assertEqual(code, 502, lines)
        self.assertIn("ATRN", lines[0])
        # Every refusal is in the log, one line each, with the client (the log is read by
        # another thread: wait for the lines rather than look once).
        for pat in (r"reject: ATRN from \S+: 530 5\.7\.0",
                    r"reject: MAIL from \S+: 502 5\.5\.1",
                    r"reject: AUTH from \S+: 538 5\.7\.11",
                    r"reject: TURN from \S+: 502 5\.5\.1"):
            r.wait_log(pat, after=mark)
        r.wait_log(r"reject: AUTH from \S+: 535 5\.7\.8", after=mark, count=2)

    def test_smtp_port_atrn_points_to_odmr_port(self):
        s = self.relayd.smtp()
        try:
            s.ehlo("client.test")
            code, msg = s.docmd("ATRN", "branch.test")
            self.assertEqual(code, 502, msg)
            self.assertIn(("127.0.0.1:%d" % self.relayd.odmr_port).encode(), msg)
            code, msg = s.docmd("TURN")
            self.assertEqual(code, 502, msg)
            self.assertIn(b"ETRN", msg)
        finally:
            s.close()

    def test_authorisation_per_domain(self):
        self.hold("other.test", 1)
        self.hold("branch.test", 1)
        mark = self.relayd.mark()
        c = self.login("branch")
        code, lines = c.cmd("ATRN other.test")
        self.assertEqual(code, 450, lines)
        self.assertRegex(lines[0], r"^450 4\.7\.1 .*other\.test")
        # One foreign domain refuses the whole request.
        code, lines = c.cmd("ATRN branch.test,other.test")
        self.assertEqual(code, 450, lines)
        code, lines = c.cmd("ATRN branch..test")
        self.assertEqual(code, 501, lines)
        # Nothing was released.
        self.assertEqual(self.queued_domains(), ["branch.test", "other.test"])
        self.relayd.wait_log(r"reject: ATRN from \S+: 450 4\.7\.1", after=mark)

    def test_no_mail_453(self):
        self.hold("other.test", 1)
        c = self.login("empty")
        code, lines = c.cmd("ATRN")
        self.assertEqual(code, 453, lines)
        self.assertIn("You have no mail", lines[0])
        code, lines = c.cmd("ATRN empty.test")
        self.assertEqual(code, 453, lines)
        # The session goes on after a refusal.
        code, lines = c.cmd("NOOP")
        self.assertEqual(code, 250, lines)


class ODMRRelease(odmrlib.ODMRCase):
    # ETRN from loopback is trusted here, so a busy domain's ETRN shows it starts no run.
    CONF = {"etrn_trusted": "127.0.0.1"}

    def test_release_byte_exact(self):
        r = self.relayd
        held = self.hold("branch.test", 3)
        held.update(self.hold("second.test", 1))
        self.hold("other.test", 1)
        mark = r.mark()
        c = self.login("branch")
        code, lines = c.cmd("ATRN")  # every domain of the user
        self.assertEqual(code, 250, lines)
        self.assertEqual(lines[0], "250 2.0.0 OK now reversing the connection")
        got, cmds = c.serve()
        self.assertTrue(cmds[0].startswith("EHLO "), cmds)
        self.assertEqual(cmds[-1], "QUIT")
        self.assertEqual(sorted(m[2] for m in got), sorted(held.values()))
        # The results are committed before the run's last line (not before our 250s).
        done = r.wait_log(r"atrn done user=branch client=\[127\.0\.0\.1\]:\d+ "
                          r"domains=(\S+) tls=none messages=(\d+) bytes=(\d+) sent=(\d+) "
                          r"deferred=0 bounced=0", after=mark)[0]
        self.assertEqual(sorted(done.group(1).split(",")), ["branch.test", "second.test"])
        self.assertEqual(int(done.group(2)), 4)
        self.assertEqual(int(done.group(4)), 4)
        self.assertEqual(int(done.group(3)), sum(len(b) for b in held.values()))
        self.assertEqual(self.queued_domains(), ["other.test"])
        self.assertEqual(len(r.log_lines(r"to=<user\d@(branch|second)\.test>,? "
                                         r"relay=odmr\[127\.0\.0\.1\]:\d+,? .*status=sent",
                                         after=mark)), 4)

    def test_partial_failure(self):
        r = self.relayd
        qid = r.send("sender@example.org",
                     ["ok@branch.test", "gone@branch.test", "later@branch.test"],
                     etrnlib.make_body("three", "three recipients\r\n"))
        stored = r.body(qid)
        c = self.login("branch")
        code, lines = c.cmd("ATRN branch.test")
        self.assertEqual(code, 250, lines)

        def answer(addr):
            return {"gone@branch.test": "550 5.1.1 no such user",
                    "later@branch.test": "450 4.2.1 mailbox busy"}.get(addr, "250 2.1.5 ok")
        got, _ = c.serve(answer)
        self.assertEqual([(m[1], m[2]) for m in got], [(["ok@branch.test"], stored)])
        r.wait_log(r"atrn done user=branch .* sent=1 deferred=1 bounced=1")
        left = r.rcpts()
        self.assertNotIn("ok@branch.test", left)
        self.assertNotIn("gone@branch.test", left)  # bounced: a DSN went to the sender
        self.assertIn("later@branch.test", left)
        self.assertTrue(r.log_lines(r"to=<gone@branch\.test>.*status=bounced \(550 5\.1\.1"))
        self.assertTrue(r.log_lines(r"to=<later@branch\.test>.*status=deferred \(450 4\.2\.1"))
        self.assertIn("sender@example.org", [x["addr"] for x in left.values()])  # the DSN

    def test_cut_mid_message_loses_nothing(self):
        r = self.relayd
        held = self.hold("branch.test", 3)
        c = self.login("branch")
        self.assertEqual(c.cmd("ATRN branch.test")[0], 250)
        got, _ = c.serve(cut_in_message=2)
        self.assertEqual(len(got), 1)
        r.wait_log(r"atrn done user=branch .* sent=1 deferred=2 bounced=0")
        self.assertEqual(len(r.rcpts()), 2)
        # The next ATRN brings exactly the other two, nothing twice.
        c2 = self.login("branch")
        self.assertEqual(c2.cmd("ATRN branch.test")[0], 250)
        got2, _ = c2.serve()
        self.assertEqual(sorted([got[0][2]] + [m[2] for m in got2]), sorted(held.values()))
        r.wait_log(r"atrn done user=branch .* sent=2 deferred=0 bounced=0")
        self.assertEqual(r.rcpts(), {})

    def test_greeting_sent_with_atrn(self):
        """A client that sends its 220 in the same packet as ATRN (not waiting for the 250):
        the octets read with the ATRN are the release's first input, not lost."""
        held = self.hold("branch.test", 1)
        c = self.login("branch")
        c.send(b"ATRN branch.test\r\n220 eager.test ESMTP ready\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        got, cmds = c.serve(greet=False)
        self.assertTrue(cmds[0].startswith("EHLO "), cmds)
        self.assertEqual([m[2] for m in got], list(held.values()))

    def test_shutdown_while_waiting_for_220(self):
        """relayd is stopped while a reversed connection waits for the client's 220: it stops
        in its usual time, and the mail stays queued for the next release."""
        r = self.relayd
        self.hold("branch.test", 2)
        c = self.login("branch")
        self.assertEqual(c.cmd("ATRN branch.test")[0], 250)
        r.wait_log(r"atrn start user=branch ")
        r.stop()  # fails the test if relayd needs SIGKILL or leaves a sanitizer report
        self.assertEqual(len(r.rcpts()), 2)
        self.assertTrue(r.log_lines(r"atrn done user=branch .* sent=0 deferred=2 bounced=0"))

    def test_busy_domain_451(self):
        self.hold("branch.test", 1)
        first = self.login("branch")
        self.assertEqual(first.cmd("ATRN branch.test")[0], 250)
        # The first release waits for its 220; meanwhile the domain is busy.
        second = self.login("branch")
        code, lines = second.cmd("ATRN branch.test")
        self.assertEqual(code, 451, lines)
        self.assertIn("branch.test", lines[0])
        code, text = self.relayd.etrn("branch.test")
        self.assertEqual(code, 458, text)  # RFC 1985: a run for it is already going
        got, _ = first.serve()
        self.assertEqual(len(got), 1)
        # One run only: ETRN found the domain busy and started nothing.
        self.assertEqual(len(self.relayd.log_lines(r"flush domain=branch\.test reason=\S+ "
                                                   r"messages=\d+ started")), 1)
        self.assertFalse(self.relayd.log_lines(r"flush domain=branch\.test reason=etrn"))

    def test_tls_kept_across_the_reversal(self):
        r = self.relayd
        held = self.hold("branch.test", 1)
        c = self.odmr()
        c.ehlo()
        c.starttls(odmrlib.ssl_client(self.pki))
        kws = c.ehlo()
        self.assertIn("AUTH CRAM-MD5 PLAIN LOGIN", kws)
        self.assertNotIn("STARTTLS", kws)
        code, lines = c.auth_plain("tlsonly", ODMR_USERS["tlsonly"][0])
        self.assertEqual(code, 235, lines)
        self.assertEqual(c.cmd("ATRN branch.test")[0], 250)
        got, cmds = c.serve(offer=("STARTTLS", "8BITMIME"))
        self.assertNotIn("STARTTLS", cmds)  # TLS stays as it was; no second handshake
        self.assertEqual([m[2] for m in got], list(held.values()))
        line = r.wait_log(r"atrn done user=tlsonly .* tls=(\S+)")[0]
        self.assertRegex(line.group(1), r"^TLSv1\.[23]")


class ODMRImplicitTLS(odmrlib.ODMRCase):
    """listen_odmr_tls: TLS from the first octet; PLAIN is offered at once, STARTTLS not."""

    def start_relayd(self, conf=None, domains=None, groups=None):
        self.tls_odmr_port = etrnlib.free_port()
        c = dict(conf or {})
        c["listen_odmr_tls"] = "127.0.0.1:%d" % self.tls_odmr_port
        return super().start_relayd(conf=c, domains=domains, groups=groups)

    def test_implicit_tls_release(self):
        r = self.relayd
        held = self.hold("second.test", 2)
        c = odmrlib.ODMRClient(self.tls_odmr_port, context=odmrlib.ssl_client(self.pki))
        self.addCleanup(c.close)
        self.assertEqual(c.greeting[0], 220, c.greeting)
        kws = c.ehlo()
        self.assertIn("AUTH CRAM-MD5 PLAIN LOGIN", kws)
        self.assertNotIn("STARTTLS", kws)
        code, lines = c.auth_plain("branch", ODMR_USERS["branch"][0])
        self.assertEqual(code, 235, lines)
        self.assertEqual(c.cmd("ATRN second.test")[0], 250)
        got, _ = c.serve()
        self.assertEqual(sorted(m[2] for m in got), sorted(held.values()))
        r.wait_log(r"atrn done user=branch .*domains=second\.test tls=TLSv1\.[23],\S+ "
                   r"messages=2 .* sent=2 ")
        self.assertEqual(r.rcpts(), {})


class ODMRConfigCheck(unittest.TestCase):
    """relayd -t on ODMR settings: each mistake is named, with the file."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hf-odmr-conf-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.auth, self.cram = odmrlib.write_odmr_files(self.dir)

    def check(self, extra, cram_lines=None):
        if cram_lines is not None:
            with open(self.cram, "w") as f:
                f.write("".join(x + "\n" for x in cram_lines))
        conf = os.path.join(self.dir, "relayd.conf")
        with open(conf, "w") as f:
            f.write("listen = 127.0.0.1:%d\nqueue_dir = %s/q\ncontrol_socket = %s/s\n"
                    "[domain branch.test]\n" % (etrnlib.free_port(), self.dir, self.dir))
        with open(conf) as f:
            body = f.read()
        with open(conf, "w") as f:
            f.write("".join(x + "\n" for x in extra) + body)
        p = odmrlib.tlslib.run([odmrlib.RELAYD, "-c", conf, "-t"], check=False)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    def test_good(self):
        rc, out = self.check(["listen_odmr = 127.0.0.1:2366", "auth_file = " + self.auth,
                              "cram_file = " + self.cram])
        self.assertEqual(rc, 0, out)
        self.assertIn("ODMR, CRAM-MD5", out)

    def test_mistakes(self):
        rc, out = self.check(["listen_odmr = 127.0.0.1:2366"])
        self.assertEqual(rc, 1, out)
        self.assertIn("listen_odmr needs auth_file", out)
        rc, out = self.check(["auth_file = " + self.auth, "cram_file = " + self.cram])
        self.assertEqual(rc, 1, out)
        self.assertIn("cram_file is only used on ODMR listeners", out)
        os.chmod(self.cram, 0o644)
        rc, out = self.check(["listen_odmr = 127.0.0.1:2366", "auth_file = " + self.auth,
                              "cram_file = " + self.cram])
        self.assertEqual(rc, 1, out)
        self.assertIn("mode 0644", out)
        os.chmod(self.cram, 0o600)
        rc, out = self.check(["listen_odmr = 127.0.0.1:2366", "auth_file = " + self.auth,
                              "cram_file = " + self.cram],
                             cram_lines=["branch:c2VjcmV0", "broken line", "ghost:c2VjcmV0"])
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"odmr-cram:2: expected user:base64-secret")
        rc, out = self.check(["listen_odmr = 127.0.0.1:2366", "auth_file = " + self.auth,
                              "cram_file = " + self.cram],
                             cram_lines=["branch:c2VjcmV0", "ghost:c2VjcmV0"])
        self.assertEqual(rc, 0, out)  # allowed, but said: ghost could release nothing
        self.assertRegex(out, r"line 2: ghost is not in auth_file")
        rc, out = self.check(["listen_odmr_tls = 127.0.0.1:2367", "auth_file = " + self.auth])
        self.assertEqual(rc, 1, out)
        self.assertIn("listen_odmr_tls needs tls_cert", out)


class FetchmailODMR(odmrlib.ODMRCase):
    """fetchmail's own ODMR mode (--protocol ODMR, CRAM-MD5): it authenticates, sends ATRN
    and then copies the bytes between relayd and its smtphost, here an aiosmtpd sink."""

    def setUp(self):
        if not shutil.which("fetchmail"):
            self.skipTest("fetchmail is not installed")
        super().setUp()
        self.home = tempfile.mkdtemp(prefix="hf-fetchmail-odmr-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.mta = etrnlib.Sink("127.0.0.1", etrnlib.free_port()).start()
        self.addCleanup(self.mta.stop)

    def rc(self, user, secret, domains):
        path = os.path.join(self.home, ".fetchmailrc")
        with open(path, "w") as f:
            f.write('poll 127.0.0.1 protocol ODMR port %d auth cram-md5\n'
                    '  user "%s" password "%s"\n'
                    '  fetchdomains %s\n'
                    '  smtphost 127.0.0.1/%d\n'
                    % (self.relayd.odmr_port, user, secret, domains, self.mta.port))
        os.chmod(path, 0o600)  # fetchmail refuses a run control file others can read
        return path

    def test_fetchmail_odmr_release(self):
        r = self.relayd
        held = self.hold("branch.test", 2)
        held.update(self.hold("second.test", 1))
        self.hold("other.test", 1)
        mark = r.mark()
        rc, out = odmrlib.run_fetchmail(self.rc("branch", ODMR_USERS["branch"][1],
                                                "branch.test,second.test"), self.home)
        self.assertIn("ATRN branch.test,second.test", out)
        self.assertIn("250 2.0.0 OK now reversing the connection", out)
        r.wait_log(r"atrn done user=branch .* messages=3 .* sent=3 deferred=0 bounced=0",
                   after=mark)
        self.assertEqual(rc, 0, out)
        self.assertEqual(sorted(m.data for m in self.mta.snapshot()), sorted(held.values()))
        self.assertEqual(self.queued_domains(), ["other.test"])

    def test_fetchmail_wrong_secret(self):
        self.hold("branch.test", 1)
        rc, out = odmrlib.run_fetchmail(self.rc("branch", "not the secret", "branch.test"),
                                        self.home)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("535", out)
        self.assertEqual(self.queued_domains(), ["branch.test"])
        self.assertEqual(self.mta.snapshot(), [])


if __name__ == "__main__":
    unittest.main()
