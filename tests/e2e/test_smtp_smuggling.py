"""Line ends: only CRLF ends a command line or a text line, only CRLF.CRLF ends DATA.
Bare LF / bare CR in a command: 500 5.5.2, not executed. In DATA: 554 5.6.0 after the real
end of data and nothing queued (bare_lf = reject), or stored with CRLF (normalise). An
SMTP smuggling attempt ("\\n.\\n" followed by a second transaction inside the data) never
runs the smuggled commands."""

import unittest

import hfharness as hf

SMUGGLE_ENDINGS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r.\r",
    b"\n.\r",
    b"\r.\n",
]


def smuggled_payload(ending, tag):
    """A message whose text holds `ending` and then a whole second transaction; the only
    real CRLF.CRLF is the one closing the smuggled message."""
    first = hf.make_body("smuggle %s" % tag, b"first message\r\nlast line")
    evil = (b"MAIL FROM:<evil@attacker.test>\r\n"
            b"RCPT TO:<bob@branch.test>\r\n"
            b"DATA\r\n"
            b"From: evil@attacker.test\r\n"
            b"Subject: smuggled " + tag.encode() + b"\r\n"
            b"\r\n"
            b"SMUGGLED-BODY\r\n")
    return first + ending + evil + b".\r\n"


class BareLfReject(hf.HFClassTestCase):
    CONF = {"max_bad_commands": "50"}  # bare_lf = reject is the default

    def all_bodies(self):
        out = []
        for m in self.relayd.relayctl_json("list")["messages"]:
            out.append((m, self.relayd.relayctl("show", m["id"], "--body", check=True).stdout))
        return out

    def assertNothingQueuedWith(self, needle):
        for m, body in self.all_bodies():
            self.assertNotIn(needle, body, "message %s should not be queued: %r"
                             % (m["id"], body[:300]))
            self.assertNotEqual(m["sender"], "evil@attacker.test", m)

    def open_transaction(self, c):
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<sender@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@branch.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)

    # ---- command lines ----------------------------------------------------------------

    def test_bare_lf_in_command_not_executed(self):
        for sep in (b"\n", b"\r"):
            with self.subTest(sep=sep), self.relayd.raw() as c:
                c.ehlo()
                c.send(b"MAIL FROM:<a@b.test>" + sep + b"RCPT TO:<alice@branch.test>\r\n")
                self.assertReply(c.reply(), 500, "5.5.2")
                # One line, one reply: the text after the bare CR/LF is not a command.
                self.assertFalse(c.pending(), "the text after the bare %r was executed as a "
                                 "command: %r" % (sep, c.buf))
                # Neither part ran: there is no transaction.
                self.assertReply(c.cmd("RCPT TO:<alice@branch.test>"), 503, "5.5.1")

    def test_bare_lf_quit_not_executed(self):
        for sep in (b"\n", b"\r"):
            with self.subTest(sep=sep), self.relayd.raw() as c:
                c.ehlo()
                c.send(b"QUIT" + sep + b"NOOP\r\n")
                self.assertReply(c.reply(), 500, "5.5.2")
                self.assertFalse(c.pending(), "the text after the bare %r was executed as a "
                                 "command: %r" % (sep, c.buf))
                self.assertReply(c.cmd("NOOP"), 250, "2.0.0")

    def test_bare_lf_at_end_of_command(self):
        """A bare LF at the end of a command line is not a line end either."""
        with self.relayd.raw() as c:
            c.ehlo()
            c.send(b"NOOP\nNOOP\r\n")
            self.assertReply(c.reply(), 500, "5.5.2")
            self.assertFalse(c.pending(), "the text after the bare LF was executed as a "
                             "command: %r" % c.buf)

    # ---- message text -----------------------------------------------------------------

    def test_bare_lf_in_data_rejected(self):
        cases = [
            (b"LF", b"line one\nline two\r\n"),
            (b"CR", b"line one\rline two\r\n"),
            (b"LFLF", b"a\r\n\n\r\nb\r\n"),
            (b"LF-in-header", b""),
        ]
        for name, text in cases:
            marker = b"X-Marker: bare-" + name
            if name == b"LF-in-header":
                body = b"Subject: x\n" + marker + b"\r\n\r\nbody\r\n"
            else:
                body = hf.make_body("bare", text, [marker])
            with self.subTest(case=name), self.relayd.raw() as c:
                self.open_transaction(c)
                r = c.data_reply(body)
                self.assertReply(r, 554, "5.6.0")
                self.assertFalse(c.pending(), "extra reply: %r" % c.buf)
                self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
                self.assertReply(c.cmd("MAIL FROM:<again@example.test>"), 250)
            self.assertNothingQueuedWith(marker)

    def test_smuggling_rejected(self):
        for ending in SMUGGLE_ENDINGS:
            tag = ending.hex()
            with self.subTest(ending=ending), self.relayd.raw() as c:
                self.open_transaction(c)
                c.send(smuggled_payload(ending, tag))  # raw: no dot-stuffing
                r = c.reply()
                # One reply for one DATA: the refusal (the text holds bare CR/LF).
                self.assertReply(r, 554, "5.6.0")
                r = c.cmd("QUIT")
                self.assertReply(r, 221, "2.0.0",
                                 "a smuggled command was executed (reply %r)" % r)
            self.assertNothingQueuedWith(b"SMUGGLED-BODY")
            self.assertNothingQueuedWith(b"smuggle " + tag.encode())

    def test_crlf_dot_crlf_only_end(self):
        """'.' lines, '..' lines and a '.' followed by text are not the end of data."""
        body = (b"Subject: dots\r\n\r\n"
                b".not the end\r\n"
                b"..\r\n"
                b". \r\n"
                b".\tx\r\n"
                b"end\r\n")
        qid = hf.send_raw(self.relayd, "a@b.test", ["alice@branch.test"], body)
        stored = self.relayd.relayctl("show", qid, "--body", check=True).stdout
        self.assertEqual(hf.split_received(stored)[1], body)

    def test_nul_byte_kept_or_refused(self):
        """A NUL octet in the text is not a line end: the message is stored byte-exact or
        refused with a 5xx, never split."""
        body = b"Subject: nul\r\n\r\na\x00b\r\n.\x00\r\nc\r\n"
        with self.relayd.raw() as c:
            self.open_transaction(c)
            r = c.data_reply(body)
            self.assertIn(r.code // 100, (2, 5), r)
            if r.code == 250:
                stored = self.relayd.relayctl("show", hf.queued_id(r), "--body",
                                              check=True).stdout
                self.assertEqual(hf.split_received(stored)[1], body)
            self.assertReply(c.cmd("QUIT"), 221)


class BareLfNormalise(hf.HFClassTestCase):
    CONF = {"bare_lf": "normalise"}

    def stored(self, qid):
        return hf.split_received(
            self.relayd.relayctl("show", qid, "--body", check=True).stdout)[1]

    def assertOnlyCrlf(self, data):
        self.assertEqual(data.count(b"\r"), data.count(b"\r\n"), data)
        self.assertEqual(data.count(b"\n"), data.count(b"\r\n"), data)

    def test_bare_lf_normalised(self):
        body = b"Subject: lf\nX-Two: 2\n\nline one\nline two\r\nthree\n\r\n"
        qid = hf.send_raw(self.relayd, "a@b.test", ["alice@branch.test"], body)
        self.assertEqual(self.stored(qid),
                         b"Subject: lf\r\nX-Two: 2\r\n\r\nline one\r\nline two\r\nthree\r\n\r\n")

    def test_bare_cr_normalised(self):
        body = b"Subject: cr\r\n\r\nline one\rline two\r\n"
        qid = hf.send_raw(self.relayd, "a@b.test", ["alice@branch.test"], body)
        stored = self.stored(qid)
        self.assertOnlyCrlf(stored)
        self.assertTrue(stored.startswith(b"Subject: cr\r\n\r\nline one"), stored)
        self.assertTrue(stored.endswith(b"line two\r\n"), stored)

    def test_smuggling_stays_one_message(self):
        for ending in SMUGGLE_ENDINGS:
            tag = ending.hex()
            before = {m["id"] for m in self.relayd.relayctl_json("list")["messages"]}
            with self.subTest(ending=ending), self.relayd.raw() as c:
                c.ehlo()
                self.assertReply(c.cmd("MAIL FROM:<sender@example.test>"), 250)
                self.assertReply(c.cmd("RCPT TO:<alice@branch.test>"), 250)
                self.assertReply(c.cmd("DATA"), 354)
                c.send(smuggled_payload(ending, tag))  # raw: no dot-stuffing
                qid = hf.queued_id(c.reply())
                r = c.cmd("QUIT")
                self.assertReply(r, 221, "2.0.0",
                                 "a smuggled command was executed (reply %r)" % r)
            after = self.relayd.relayctl_json("list")["messages"]
            new = [m for m in after if m["id"] not in before]
            self.assertEqual([m["id"] for m in new], [qid], new)
            self.assertEqual(new[0]["sender"], "sender@example.test")
            self.assertEqual([r["addr"] for r in new[0]["rcpts"]], ["alice@branch.test"])
            stored = self.stored(qid)
            self.assertOnlyCrlf(stored)
            # The would-be second transaction is text of the first message.
            self.assertIn(b"MAIL FROM:<evil@attacker.test>\r\n", stored)
            self.assertIn(b"SMUGGLED-BODY\r\n", stored)


if __name__ == "__main__":
    unittest.main()
