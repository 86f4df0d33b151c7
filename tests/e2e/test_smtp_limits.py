"""Limits of RFC 5321 4.5.3.1 and of the config: SIZE, message size, recipients, command
and text line lengths, bad commands, connections per address, command timeout. Each
violation gets its reply and the session (or the daemon) goes on."""

import unittest

import hfharness as hf

MAX_SIZE = 20000
MAX_RCPT = 3
MAX_BAD = 3
MAX_PER_IP = 3


class SmtpLimits(hf.HFClassTestCase):
    CONF = {
        "max_message_size": str(MAX_SIZE),
        "max_recipients": str(MAX_RCPT),
        # Several errors per session below; the limit has its own tests.
        "max_bad_commands": "50",
    }

    def assertQueueHasNo(self, needle):
        data = self.relayd.relayctl_json("list")
        for m in data["messages"]:
            body = self.relayd.relayctl("show", m["id"], "--body", check=True).stdout
            self.assertNotIn(needle, body, "message %s should not have been queued" % m["id"])

    def test_ehlo_size(self):
        with self.relayd.raw() as c:
            r = c.ehlo()
            self.assertIn("SIZE %d" % MAX_SIZE, [x.upper() for x in r.lines[1:]], r)

    def test_mail_size_parameter(self):
        with self.relayd.raw() as c:
            c.ehlo()
            r = c.cmd("MAIL FROM:<a@b.test> SIZE=%d" % (MAX_SIZE + 1))
            self.assertReply(r, 552, "5.3.4")
            r = c.cmd("MAIL FROM:<a@b.test> SIZE=99999999999999999999")
            self.assertIn(r.code, (552, 501), r)  # too big, or out of range as a number
            r = c.cmd("MAIL FROM:<a@b.test> SIZE=%d" % MAX_SIZE)
            self.assertReply(r, 250, "2.1.0")
            self.assertReply(c.cmd("RCPT TO:<alice@branch.test>"), 250)

    def test_message_too_big_while_receiving(self):
        """Without SIZE the limit is found while receiving: 552 5.3.4 after the final dot,
        nothing queued, and the session continues."""
        marker = b"X-Marker: too-big-while-receiving"
        body = hf.make_body("big", b"", [marker]) + (b"y" * 78 + b"\r\n") * (2 * MAX_SIZE // 80)
        with self.relayd.raw() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<a@b.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@branch.test>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            self.assertReply(c.data_reply(body), 552, "5.3.4")
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
            # The next transaction on the same session works.
            self.assertReply(c.cmd("MAIL FROM:<a@b.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@branch.test>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            hf.queued_id(c.data_reply(b"Subject: small after big\r\n\r\nok\r\n"))
        self.assertQueueHasNo(marker)

    def test_message_just_under_limit(self):
        body = hf.make_body("fits", b"") + (b"z" * 78 + b"\r\n") * ((MAX_SIZE - 2000) // 80)
        self.assertLess(len(body), MAX_SIZE - 1000)
        qid = hf.send_raw(self.relayd, "a@b.test", ["alice@branch.test"], body)
        stored = self.relayd.relayctl("show", qid, "--body", check=True).stdout
        self.assertEqual(hf.split_received(stored)[1], body)

    def test_too_many_recipients(self):
        with self.relayd.raw() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<a@b.test>"), 250)
            for i in range(MAX_RCPT):
                self.assertReply(c.cmd("RCPT TO:<r%d@open.test>" % i), 250, "2.1.5")
            self.assertReply(c.cmd("RCPT TO:<r%d@open.test>" % MAX_RCPT), 452, "4.5.3")
            self.assertReply(c.cmd("RCPT TO:<another@open.test>"), 452, "4.5.3")
            self.assertReply(c.cmd("DATA"), 354)
            qid = hf.queued_id(c.data_reply(b"Subject: rcpts\r\n\r\nx\r\n"))
        msg = self.relayd.relayctl_json("show", qid)
        self.assertEqual([r["addr"] for r in msg["rcpts"]],
                         ["r%d@open.test" % i for i in range(MAX_RCPT)])

    def test_command_line_length(self):
        """RFC 5321 4.5.3.1.4: 512 octets with CRLF is the limit. A longer line gets
        500 5.5.2 (once) and is not executed; the session goes on."""
        with self.relayd.raw() as c:
            c.ehlo()
            line = b"NOOP " + b"a" * (512 - 2 - 5)
            self.assertEqual(len(line) + 2, 512)
            self.assertReply(c.cmd(line), 250, "2.0.0")
            self.assertReply(c.cmd(line + b"a"), 500, "5.5.2")
            self.assertReply(c.cmd(b"NOOP " + b"b" * 3000), 500, "5.5.2")
            # A MAIL line that is too long even with its extensions' allowance is not
            # executed.
            self.assertReply(c.cmd(b"MAIL FROM:<a@b.test> " + b" " * 1400), 500, "5.5.2")
            self.assertReply(c.cmd("RCPT TO:<alice@branch.test>"), 503, "5.5.1")
            self.assertFalse(c.pending(), "unexpected extra reply: %r" % c.buf)

    def test_extended_mail_rcpt_lines(self):
        """RFC 5321 4.5.3.1.4 lets extensions raise the limit, and SIZE (RFC 1870 3), AUTH
        (RFC 4954 5), DSN (RFC 3461) do for MAIL and RCPT: lines past 512 octets that carry
        those parameters are accepted; past their own limit they are refused."""
        local = "l" * 64
        domain = ".".join(["d" * 60] * 2) + ".open.test"  # a 198-octet path
        mail = ("MAIL FROM:<%s@%s> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=%s AUTH=%s"
                % (local, domain, "+2B" * 100, "u" * 200))
        rcpt = ("RCPT TO:<r@open.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;%s@%s"
                % (local, domain))
        rcpt += " " * (1012 - 2 - len(rcpt))  # the RCPT limit exactly
        self.assertGreater(len(mail) + 2, 512)
        self.assertGreater(len(rcpt) + 2, 512)
        with self.relayd.raw() as c:
            c.ehlo()
            self.assertReply(c.cmd(mail), 250, "2.1.0")
            self.assertReply(c.cmd(rcpt), 250, "2.1.5")
            self.assertReply(c.cmd(rcpt + " "), 500, "5.5.2")
            self.assertReply(c.cmd("DATA"), 354)
            qid = hf.queued_id(c.data_reply(b"Subject: long lines\r\n\r\nx\r\n"))
        msg = self.relayd.relayctl_json("show", qid)
        self.assertEqual(msg["sender"], "%s@%s" % (local, domain))

    def test_text_line_length(self):
        """RFC 5321 4.5.3.1.6: a text line of 1000 octets with CRLF is accepted; longer gets
        554 5.6.0 after the final dot (4.3.2: 500 is no reply to the end of data), nothing is
        queued, the session goes on."""
        marker = b"X-Marker: long-text-line"
        ok = hf.make_body("998", b"") + b"o" * 998 + b"\r\n"
        bad = hf.make_body("999", b"", [marker]) + b"p" * 999 + b"\r\nafter\r\n"
        with self.relayd.raw() as c:
            c.ehlo()
            for body, want in ((ok, 250), (bad, 554)):
                self.assertReply(c.cmd("MAIL FROM:<a@b.test>"), 250)
                self.assertReply(c.cmd("RCPT TO:<alice@branch.test>"), 250)
                self.assertReply(c.cmd("DATA"), 354)
                r = c.data_reply(body)
                if want == 250:
                    qid = hf.queued_id(r)
                else:
                    self.assertReply(r, 554, "5.6.0")
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        stored = self.relayd.relayctl("show", qid, "--body", check=True).stdout
        self.assertEqual(hf.split_received(stored)[1], ok)
        self.assertQueueHasNo(marker)

    def test_text_line_dot_boundary_smtplib(self):
        """The leading dot duplicated for transparency is not counted (RFC 5321 4.5.3.1.6):
        smtplib dot-stuffs a 998-octet line that starts with "." into 999 octets + CRLF, and
        that line is accepted and stored unstuffed; a 999-octet line starting with "." is
        refused, with or without the dot."""
        marker = b"X-Marker: dot-boundary-over"
        for lead in (b".", b"..", b"x"):
            with self.subTest(lead=lead):
                line = lead + b"d" * (998 - len(lead))
                body = hf.make_body("dot 998", b"first\r\n") + line + b"\r\n" + line + b"\r\n"
                qid = hf.send_smtplib(self.relayd, "a@b.test", ["alice@branch.test"], body)
                stored = self.relayd.relayctl("show", qid, "--body", check=True).stdout
                self.assertEqual(hf.split_received(stored)[1], body)
        for lead in (b".", b"x"):
            with self.subTest(over=lead):
                body = hf.make_body("dot 999", b"", [marker]) + lead + b"e" * 998 + b"\r\n"
                s = self.relayd.smtp()
                try:
                    s.ehlo(hf.CLIENT_NAME)
                    self.assertEqual(s.mail("a@b.test")[0], 250)
                    self.assertEqual(s.rcpt("alice@branch.test")[0], 250)
                    code, msg = s.data(body)  # the reply after the data, not raised
                    self.assertEqual(code, 554, msg)
                    self.assertEqual(s.noop()[0], 250)
                finally:
                    s.quit()
        self.assertQueueHasNo(marker)

    def test_zz_daemon_survives(self):
        """After all the abuse above the daemon still serves (run last by name)."""
        qid = hf.send_smtplib(self.relayd, "a@b.test", ["alice@branch.test"],
                              b"Subject: still alive\r\n\r\nx\r\n")
        self.assertEqual(self.relayd.relayctl_json("show", qid)["id"], qid)


class SessionLimits(hf.HFTestCase):
    """Each test has its own relayd, so no session of another test is counted."""

    CONF = {"max_bad_commands": str(MAX_BAD), "max_connections_per_ip": str(MAX_PER_IP)}

    def setUp(self):
        super().setUp()
        self.relayd = self.start_relayd(conf=self.CONF)

    def test_bad_commands_drop_session(self):
        """After max_bad_commands bad commands: 421 4.7.0 and the connection closes."""
        with self.relayd.raw() as c:
            c.ehlo()
            got = []
            closing = None
            for i in range(MAX_BAD + 1):
                c.send(b"BOGUS%d\r\n" % i)
                try:
                    r = c.reply()
                except hf.ConnectionClosed:
                    break
                if r.code == 421:
                    closing = r
                    break
                got.append(r)
                self.assertReply(r, 500, "5.5.1")
                if i == MAX_BAD - 1 and c.pending():
                    # The 421 may follow the last 500 without another command.
                    r = c.reply()
                    self.assertReply(r, 421, "4.7.0")
                    closing = r
                    break
            self.assertIsNotNone(closing, "no 421 after %d bad commands: %r" % (MAX_BAD, got))
            self.assertReply(closing, 421, "4.7.0")
            self.assertIn(len(got), (MAX_BAD - 1, MAX_BAD), got)
            rest = c.wait_closed()
            self.assertEqual(rest, [], rest)

    def test_good_commands_do_not_count(self):
        with self.relayd.raw() as c:
            c.ehlo()
            for i in range(MAX_BAD * 3):
                self.assertReply(c.cmd("NOOP"), 250)
                if i % 2:
                    self.assertReply(c.cmd("RSET"), 250)
            self.assertReply(c.cmd("QUIT"), 221)

    def test_connections_per_ip(self):
        conns = []
        try:
            for _ in range(MAX_PER_IP):
                c = self.relayd.raw()
                conns.append(c)
                self.assertReply(c.greeting, 220)
            extra = self.relayd.raw(greet=False)
            conns.append(extra)
            r = extra.reply()
            self.assertReply(r, 421, "4.7.0")
            self.assertEqual(extra.wait_closed(), [])
            # Another address is not limited by 127.0.0.1's count.
            other = self.relayd.raw(source="127.0.0.3")
            conns.append(other)
            self.assertReply(other.greeting, 220)
            # When one session ends, a new one from the same address is welcome again.
            self.assertReply(conns[0].cmd("QUIT"), 221)
            conns[0].wait_closed()
            again = self.relayd.raw(greet=False)
            conns.append(again)
            self.assertReply(again.reply(), 220)
        finally:
            for c in conns:
                c.close()


    def test_max_connections(self):
        """max_connections counts sessions from every address."""
        self.relayd.stop()
        self.relayd = self.start_relayd(conf={"max_connections": "2"})
        conns = []
        try:
            for src in ("127.0.0.1", "127.0.0.3"):
                c = self.relayd.raw(source=src)
                conns.append(c)
                self.assertReply(c.greeting, 220)
            extra = self.relayd.raw(greet=False, source="127.0.0.4")
            conns.append(extra)
            self.assertReply(extra.reply(), 421, "4.7.0")
            self.assertEqual(extra.wait_closed(), [])
        finally:
            for c in conns:
                c.close()


class CommandTimeout(hf.HFTestCase):

    def test_idle_session_closed(self):
        d = self.start_relayd(conf={"timeout_command": "1"})
        with d.raw() as c:
            c.ehlo()
            replies = c.wait_closed(bound=15)
            for r in replies:
                self.assertEqual(r.code, 421, replies)
        # The daemon is fine afterwards.
        with d.raw() as c:
            self.assertReply(c.cmd("NOOP"), 250)


if __name__ == "__main__":
    unittest.main()
