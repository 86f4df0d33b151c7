"""Inbound SMTP basics: greeting, EHLO, accepted and refused recipients (smtplib, swaks,
raw), the reply codes of the command set, and pipelining (RFC 2920)."""

import shutil
import subprocess
import unittest

import hfharness as hf
from hfharness import HOSTNAME, CLIENT_NAME


class SmtpBasic(hf.HFClassTestCase):
    # Many refusals per session here; the limit itself is tested in test_smtp_limits.
    CONF = {"max_bad_commands": "50"}

    # ---- greeting and EHLO --------------------------------------------------------------

    def test_greeting(self):
        with self.relayd.raw() as c:
            g = c.greeting
            self.assertEqual(g.code, 220, g)
            self.assertEqual(g.raw, ("220 %s ESMTP holdfast\r\n" % HOSTNAME).encode(), g)

    def test_ehlo_keywords(self):
        with self.relayd.raw() as c:
            r = c.ehlo()
            self.assertTrue(r.lines[0].startswith(HOSTNAME), r)
            kw = [line.upper() for line in r.lines[1:]]
            for k in ("PIPELINING", "SIZE 10485760", "8BITMIME", "ENHANCEDSTATUSCODES",
                      "SMTPUTF8", "DSN", "ETRN"):
                self.assertIn(k, kw, r)
            # Plain TURN hands mail to whoever asks: never advertised.
            self.assertNotIn("TURN", kw, r)

    def test_helo(self):
        with self.relayd.raw() as c:
            r = c.cmd("HELO " + CLIENT_NAME)
            self.assertEqual(r.code, 250, r)
            self.assertEqual(len(r.lines), 1, r)

    def test_enhanced_codes_everywhere(self):
        """RFC 2034 3: every 2xx/4xx/5xx reply carries an enhanced code, except the greeting
        and the replies to HELO/EHLO (and 354, which is not a completion reply)."""
        cmds = ["NOOP", "RSET", "VRFY alice", "MAIL FROM:<a@x.test>",
                "RCPT TO:<alice@branch.test>", "RCPT TO:<nobody@branch.test>",
                "RCPT TO:<x@elsewhere.test>", "RSET", "DATA", "FOO", "MAIL FROM:<broken",
                "MAIL FROM:<a@x.test> FOO=1", "TURN", "ETRN", "RCPT TO:<alice@branch.test>",
                "QUIT"]
        with self.relayd.raw() as c:
            c.ehlo()
            for cmd in cmds:
                r = c.cmd(cmd)
                self.assertIsNotNone(r.enhanced(), "%s -> %r" % (cmd, r))
                self.assertEqual(r.enhanced()[0], str(r.code)[0], "%s -> %r" % (cmd, r))
                for line in r.lines:
                    self.assertRegex(line, r"^[245]\.\d{1,3}\.\d{1,3}( |$)",
                                     "%s -> %r" % (cmd, r))

    # ---- recipients -------------------------------------------------------------------

    RCPT_CASES = [
        # (recipient path as sent, code, enhanced code)
        ("<alice@branch.test>", 250, "2.1.5"),
        ("<bob@branch.test>", 250, "2.1.5"),
        ("<carol@branch.test>", 250, "2.1.5"),          # listed as a full address
        ("<alice@BRANCH.Test>", 250, "2.1.5"),          # domains are case-insensitive
        ("<nobody@branch.test>", 550, "5.1.1"),         # not in branch.test.recipients
        ("<x@sub.branch.test>", 550, "5.7.1"),          # subdomains = no
        ("<anyone@open.test>", 250, "2.1.5"),           # no recipients file
        ("<x@backup.test>", 250, "2.1.5"),
        ("<x@mx1.backup.test>", 250, "2.1.5"),          # subdomains = yes
        ("<x@a.b.backup.test>", 250, "2.1.5"),
        ("<x@badbackup.test>", 550, "5.7.1"),           # label boundary
        ("<x@backup.test.evil.test>", 550, "5.7.1"),
        ("<x@elsewhere.test>", 550, "5.7.1"),           # not a relay domain
        ("<x@[127.0.0.1]>", 550, "5.7.1"),
        ("<user%elsewhere.test@open.test>", 550, "5.7.1"),    # %-hack
        ("<elsewhere.test!user@open.test>", 550, "5.7.1"),    # bang path
        ('<"user@elsewhere.test"@open.test>', 550, "5.7.1"),  # quoted @
        ("<@hop.test:user@open.test>", 250, "2.1.5"),         # source route: final mailbox
        ("<@hop1.test,@hop2.test:user@open.test>", 250, "2.1.5"),
        ("<@open.test:user@elsewhere.test>", 550, "5.7.1"),
    ]

    def test_recipients(self):
        with self.relayd.raw() as c:
            c.ehlo()
            self.assertEqual(c.cmd("MAIL FROM:<sender@example.test>").code, 250)
            for path, code, enh in self.RCPT_CASES:
                r = c.cmd("RCPT TO:" + path)
                self.assertEqual((r.code, r.enhanced()), (code, enh),
                                 "RCPT TO:%s -> %r" % (path, r))

    def test_recipient_stored_without_source_route(self):
        with self.relayd.raw() as c:
            c.ehlo()
            self.assertEqual(c.cmd("MAIL FROM:<sr@example.test>").code, 250)
            self.assertEqual(c.cmd("RCPT TO:<@hop.test:routed@open.test>").code, 250)
            self.assertEqual(c.cmd("DATA").code, 354)
            qid = hf.queued_id(c.data_reply(b"Subject: sr\r\n\r\nx\r\n"))
        msg = self.relayd.relayctl_json("show", qid)
        self.assertEqual([r["addr"] for r in msg["rcpts"]], ["routed@open.test"])

    def test_null_sender_accepted(self):
        qid = hf.send_raw(self.relayd, "", ["alice@branch.test"], b"Subject: bounce\r\n\r\nx\r\n")
        msg = self.relayd.relayctl_json("show", qid)
        self.assertEqual(msg["sender"], "")

    def test_smtplib_accept_and_refuse(self):
        s = self.relayd.smtp()
        try:
            s.ehlo(CLIENT_NAME)
            self.assertTrue(s.has_extn("pipelining"))
            self.assertEqual(s.mail("sender@example.test")[0], 250)
            self.assertEqual(s.rcpt("alice@branch.test")[0], 250)
            code, msg = s.rcpt("x@elsewhere.test")
            self.assertEqual(code, 550)
            self.assertTrue(msg.startswith(b"5.7.1"), msg)
            code, msg = s.rcpt("nobody@branch.test")
            self.assertEqual(code, 550)
            self.assertTrue(msg.startswith(b"5.1.1"), msg)
            qid = hf.queued_id(s.data(b"Subject: smtplib\r\n\r\nhello\r\n"))
        finally:
            s.quit()
        msg = self.relayd.relayctl_json("show", qid)
        self.assertEqual([r["addr"] for r in msg["rcpts"]], ["alice@branch.test"])

    def _swaks(self, to, *extra):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        return subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(self.relayd.port),
             "--ehlo", CLIENT_NAME, "--from", "swaks@example.test", "--to", to,
             "--timeout", str(int(hf.timeout(30)))] + list(extra),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=hf.timeout(60))

    def test_swaks_accepted(self):
        r = self._swaks("bob@branch.test", "--header", "Subject: from swaks")
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out)
        self.assertRegex(out, r"<-\s+250 2\.0\.0 Ok: queued as [0-9A-F]{16}")

    def test_swaks_pipelining_accepted(self):
        r = self._swaks("alice@branch.test", "--pipeline")
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out)
        self.assertRegex(out, r"250 2\.0\.0 Ok: queued as [0-9A-F]{16}")

    def test_swaks_refused(self):
        r = self._swaks("victim@elsewhere.test")
        out = r.stdout.decode("utf-8", "replace")
        self.assertNotEqual(r.returncode, 0, out)
        self.assertRegex(out, r"<\*\* +550 5\.7\.1")
        r = self._swaks("nobody@branch.test")
        out = r.stdout.decode("utf-8", "replace")
        self.assertNotEqual(r.returncode, 0, out)
        self.assertRegex(out, r"<\*\* +550 5\.1\.1")

    # ---- the command set --------------------------------------------------------------

    def test_command_replies(self):
        cases = [
            # (command, code, enhanced)
            ("NOOP", 250, "2.0.0"),
            ("RSET", 250, "2.0.0"),
            ("VRFY alice", 252, "2.5.2"),
            ("VRFY <alice@branch.test>", 252, "2.5.2"),
            ("TURN", 502, "5.5.1"),
            ("FOOBAR", 500, "5.5.1"),
            ("MAILFROM:<a@x.test>", 500, "5.5.1"),
            ("RCPT TO:<alice@branch.test>", 503, "5.5.1"),  # no MAIL yet
            ("DATA", 503, "5.5.1"),
            ("MAIL FROM:<a@x.test", 501, "5.5.4"),          # unterminated path
            ("MAIL FROM:<a@x.test> SIZE=x", 501, "5.5.4"),
            ("MAIL FROM:<a@x.test> FOO=bar", 555, "5.5.4"),  # unknown parameter
            ("MAIL TO:<a@x.test>", 501, "5.5.4"),
            ("HELO", 501, "5.5.4"),
            ("MAIL FROM:<a@x.test>", 250, "2.1.0"),
            ("MAIL FROM:<b@x.test>", 503, "5.5.1"),          # nested MAIL
            ("RCPT TO:<alice@branch.test> FOO=1", 555, "5.5.4"),
            ("RCPT TO:alice@branch.test", 501, None),         # 5.5.4 or 5.1.3
            ("RCPT TO:<alice@branch.test>", 250, "2.1.5"),
            ("RSET", 250, "2.0.0"),
            ("DATA", 503, "5.5.1"),                          # RSET ended the transaction
        ]
        with self.relayd.raw() as c:
            c.ehlo()
            for cmd, code, enh in cases:
                r = c.cmd(cmd)
                self.assertEqual(r.code, code, "%s -> %r" % (cmd, r))
                if enh:
                    self.assertEqual(r.enhanced(), enh, "%s -> %r" % (cmd, r))

    def test_mail_before_helo(self):
        with self.relayd.raw() as c:
            r = c.cmd("MAIL FROM:<a@x.test>")
            self.assertEqual((r.code, r.enhanced()), (503, "5.5.1"), r)

    def test_quit(self):
        with self.relayd.raw() as c:
            c.ehlo()
            r = c.cmd("QUIT")
            self.assertEqual((r.code, r.enhanced()), (221, "2.0.0"), r)
            self.assertEqual(c.wait_closed(), [])

    def test_case_insensitive_verbs(self):
        with self.relayd.raw() as c:
            self.assertEqual(c.cmd("ehlo " + CLIENT_NAME).code, 250)
            self.assertEqual(c.cmd("mail from:<a@x.test>").code, 250)
            self.assertEqual(c.cmd("rcpt to:<alice@branch.test>").code, 250)
            self.assertEqual(c.cmd("noop").code, 250)

    # ---- pipelining (RFC 2920) --------------------------------------------------------

    def test_pipelined_transaction(self):
        """MAIL, four RCPTs (one foreign, one unknown) and DATA in one write: replies in
        order, the refusals in the middle do not stop the later commands."""
        with self.relayd.raw() as c:
            c.ehlo()
            c.send(b"MAIL FROM:<pipe@example.test>\r\n"
                   b"RCPT TO:<alice@branch.test>\r\n"
                   b"RCPT TO:<x@elsewhere.test>\r\n"
                   b"RCPT TO:<nobody@branch.test>\r\n"
                   b"RCPT TO:<bob@branch.test>\r\n"
                   b"DATA\r\n")
            rs = c.replies(6)
            self.assertEqual([(r.code, r.enhanced()) for r in rs],
                             [(250, "2.1.0"), (250, "2.1.5"), (550, "5.7.1"), (550, "5.1.1"),
                              (250, "2.1.5"), (354, None)], rs)
            # Message, end of data and QUIT in one write too.
            c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
            qid = hf.queued_id(c.reply())
            self.assertEqual(c.reply().code, 221)
            c.wait_closed()
        msg = self.relayd.relayctl_json("show", qid)
        self.assertEqual([r["addr"] for r in msg["rcpts"]],
                         ["alice@branch.test", "bob@branch.test"])

    def test_pipelined_all_refused(self):
        """When every RCPT of a pipelined group fails, DATA is refused (never 354) and the
        lines that followed are read as commands, not as message text."""
        with self.relayd.raw() as c:
            c.ehlo()
            c.send(b"MAIL FROM:<pipe@example.test>\r\n"
                   b"RCPT TO:<x@elsewhere.test>\r\n"
                   b"DATA\r\n"
                   b"NOOP\r\n")
            rs = c.replies(4)
            self.assertEqual((rs[0].code, rs[1].code, rs[1].enhanced()), (250, 550, "5.7.1"), rs)
            self.assertIn(rs[2].code, (503, 554), rs)
            self.assertEqual(rs[2].enhanced()[2:], "5.1", rs)
            self.assertEqual((rs[3].code, rs[3].enhanced()), (250, "2.0.0"), rs)

    def test_pipelined_errors_then_transaction(self):
        """Errors early in a group (bad MAIL, RCPT without MAIL) and a good transaction
        after RSET, all in one write."""
        with self.relayd.raw() as c:
            c.ehlo()
            c.send(b"MAIL FROM:<broken\r\n"
                   b"RCPT TO:<alice@branch.test>\r\n"
                   b"RSET\r\n"
                   b"MAIL FROM:<ok@example.test>\r\n"
                   b"RCPT TO:<alice@branch.test>\r\n"
                   b"DATA\r\n")
            rs = c.replies(6)
            self.assertEqual([(r.code, r.enhanced()) for r in rs],
                             [(501, "5.5.4"), (503, "5.5.1"), (250, "2.0.0"), (250, "2.1.0"),
                              (250, "2.1.5"), (354, None)], rs)
            hf.queued_id(c.data_reply(b"Subject: after errors\r\n\r\nok\r\n"))

    def test_two_transactions_one_session(self):
        with self.relayd.raw() as c:
            c.ehlo()
            ids = []
            for i in range(2):
                c.send(b"MAIL FROM:<two@example.test>\r\nRCPT TO:<alice@branch.test>\r\n"
                       b"DATA\r\n")
                rs = c.replies(3)
                self.assertEqual([r.code for r in rs], [250, 250, 354], rs)
                ids.append(hf.queued_id(c.data_reply(b"Subject: %d\r\n\r\nx\r\n" % i)))
            self.assertNotEqual(ids[0], ids[1])


class Listeners(hf.HFTestCase):

    def test_several_listeners_ipv4_ipv6(self):
        """listen takes several space-separated addresses, IPv6 in brackets."""
        import socket
        p4, p6 = hf.free_port(), hf.free_port()
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", p6))
        except OSError:
            self.skipTest("no IPv6 loopback")
        d = self.start_relayd(conf={"listen": "127.0.0.1:%d [::1]:%d" % (p4, p6)})
        with d.raw() as c:
            self.assertEqual(c.greeting.code, 220)
        with socket.create_connection(("::1", p6), timeout=hf.timeout(10)) as s:
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220 " + HOSTNAME.encode()))
            s.sendall(b"EHLO " + CLIENT_NAME.encode() + b"\r\n")
            line = f.readline()
            self.assertTrue(line.startswith(b"250"), line)
            f.close()


if __name__ == "__main__":
    unittest.main()
