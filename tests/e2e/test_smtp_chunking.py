"""CHUNKING / BDAT (RFC 3030) against the real relayd, over raw sockets and smtplib (which
has no BDAT: its send()/getreply() frame the chunks). Checked: EHLO offers CHUNKING and not
BINARYMIME; chunks are stored byte for byte (relayctl show --body); a chunk holding
"\\r\\n.\\r\\nMAIL FROM:..." is stored, never executed; pipelined chunks and transactions are
answered in order; the size limit holds while chunks arrive (552 5.3.4, the session goes on);
RSET drops the chunks; DATA after BDAT and BDAT before MAIL get 503 with the chunk's octets
consumed; bare LF in a chunk refuses the message (554 5.6.0). Outbound: a relayd delivers by
BDAT to a next hop that offers CHUNKING (a second relayd), byte for byte."""

import re
import unittest

import hfharness as hf

MAX_SIZE = 20000


def text(ch, n):
    """n octets of 80-octet CRLF lines of ch (the last one shorter, without CRLF)."""
    line = ch * 78 + b"\r\n"
    return (line * (n // 80 + 1))[:n]


def bdat(content, last=False):
    """One BDAT command with its chunk."""
    return b"BDAT %d%s\r\n" % (len(content), b" LAST" if last else b"") + content


class Chunking(hf.HFClassTestCase):
    CONF = {"max_message_size": str(MAX_SIZE), "max_bad_commands": "50"}

    def stored(self, qid):
        out = self.relayd.relayctl("show", qid, "--body", check=True).stdout
        return hf.split_received(out)[1]

    def assertNothingQueuedFrom(self, sender):
        for m in self.relayd.relayctl_json("list")["messages"]:
            self.assertNotEqual(m["sender"], sender, m)

    def assertQueueHasNo(self, needle):
        for m in self.relayd.relayctl_json("list")["messages"]:
            body = self.relayd.relayctl("show", m["id"], "--body", check=True).stdout
            self.assertNotIn(needle, body, "message %s should not be queued" % m["id"])

    def envelope(self, c, sender="sender@example.test", rcpt="alice@branch.test"):
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<%s>" % rcpt), 250, "2.1.5")

    def test_ehlo_offers_chunking(self):
        with self.relayd.raw() as c:
            r = c.ehlo()
        keywords = [l.split(" ")[0].upper() for l in r.lines[1:]]
        self.assertIn("CHUNKING", keywords)
        self.assertIn("8BITMIME", keywords)
        self.assertNotIn("BINARYMIME", keywords)

    def test_chunks_stored_byte_exact(self):
        """Three chunks, sent at once: dot lines, CRLF.CRLF, a leading "..", 8-bit octets, a
        CRLF split across chunks and a last line without CRLF all stay as sent."""
        content = (hf.make_body("chunks", b"")
                   + b".\r\n..two dots\r\n.\r\n\r\n.\r\ncaf\xc3\xa9\r\n" + b"z" * 998 + b"\r\n"
                   + b"no final CRLF")
        a, b, rest = content[:41], content[41:], b""
        cut = b.index(b"\r\n") + 1  # the second chunk ends between CR and LF
        b, rest = b[:cut], b[cut:]
        with self.relayd.raw() as c:
            c.ehlo()
            c.send(b"MAIL FROM:<sender@example.test> BODY=8BITMIME\r\n"
                   b"RCPT TO:<alice@branch.test>\r\n" + bdat(a) + bdat(b) + bdat(rest, last=True))
            r = c.replies(5, bound=30)
            self.assertReply(r[0], 250, "2.1.0")
            self.assertReply(r[1], 250, "2.1.5")
            self.assertReply(r[2], 250, "2.0.0")
            self.assertEqual(r[2].text, "2.0.0 %d octets received" % len(a))
            self.assertReply(r[3], 250, "2.0.0")
            qid = hf.queued_id(r[4])
            self.assertFalse(c.pending(), "extra reply: %r" % c.buf)
        self.assertEqual(self.stored(qid), content)
        self.assertIn("8BITMIME", self.relayd.relayctl_json("show", qid)["flags"])

    def test_smuggled_commands_in_chunk_are_content(self):
        """A chunk holding CRLF.CRLF and a whole second transaction is one message."""
        evil = (b"\r\n.\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<bob@branch.test>\r\n"
                b"DATA\r\nSubject: smuggled\r\n\r\nSMUGGLED\r\n.\r\nQUIT\r\n")
        content = hf.make_body("smuggle", b"first") + evil
        with self.relayd.raw() as c:
            c.ehlo()
            self.envelope(c)
            c.send(bdat(content, last=True))
            qid = hf.queued_id(c.reply(bound=30))
            # One chunk, one reply: nothing inside it ran.
            self.assertFalse(c.pending(), "the chunk's text was executed: %r" % c.buf)
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        self.assertEqual(self.stored(qid), content)
        self.assertNothingQueuedFrom("evil@attacker.test")

    def test_pipelined_transactions_in_order(self):
        with self.relayd.raw() as c:
            c.ehlo()
            c.send(b"MAIL FROM:<p1@example.test>\r\nRCPT TO:<alice@branch.test>\r\n"
                   + bdat(b"Subject: p1\r\n") + bdat(b"\r\none\r\n") + bdat(b"", last=True)
                   + b"MAIL FROM:<p2@example.test>\r\nRCPT TO:<bob@branch.test>\r\n"
                   + bdat(b"Subject: p2\r\n\r\ntwo\r\n", last=True) + b"QUIT\r\n")
            r = c.replies(9, bound=30)
            codes = [x.code for x in r]
            self.assertEqual(codes, [250, 250, 250, 250, 250, 250, 250, 250, 221], r)
            self.assertEqual(r[2].text, "2.0.0 13 octets received")
            self.assertEqual(r[3].text, "2.0.0 7 octets received")
            q1, q2 = hf.queued_id(r[4]), hf.queued_id(r[7])
            c.wait_closed()
        self.assertEqual(self.stored(q1), b"Subject: p1\r\n\r\none\r\n")
        self.assertEqual(self.stored(q2), b"Subject: p2\r\n\r\ntwo\r\n")

    def test_size_limit_while_chunks_arrive(self):
        marker = b"X-Marker: bdat-too-big"
        with self.relayd.raw() as c:
            c.ehlo()
            self.envelope(c)
            first = hf.make_body("big", b"", [marker]) + text(b"a", 15000)
            c.send(bdat(first) + bdat(text(b"b", 6000)) + bdat(b"c" * 10, last=True))
            r = c.replies(3, bound=30)
            self.assertReply(r[0], 250, "2.0.0")
            self.assertReply(r[1], 552, "5.3.4")
            self.assertReply(r[2], 552, "5.3.4")  # already in the pipeline: same answer
            self.assertFalse(c.pending(), "extra reply: %r" % c.buf)
            # The session goes on; exactly MAX_SIZE octets are accepted.
            self.envelope(c)
            exact = hf.make_body("exact", b"")
            exact += text(b"e", MAX_SIZE - len(exact))
            c.send(bdat(exact, last=True))
            qid = hf.queued_id(c.reply(bound=30))
        self.assertEqual(self.stored(qid), exact)
        self.assertQueueHasNo(marker)

    def test_rset_discards_chunks(self):
        with self.relayd.raw() as c:
            c.ehlo()
            self.envelope(c)
            c.send(bdat(b"Subject: discarded\r\n"))
            self.assertReply(c.reply(), 250, "2.0.0")
            self.assertReply(c.cmd("RSET"), 250, "2.0.0")
            self.envelope(c)
            c.send(bdat(b"Subject: kept\r\n\r\nonly this\r\n", last=True))
            qid = hf.queued_id(c.reply(bound=30))
        self.assertEqual(self.stored(qid), b"Subject: kept\r\n\r\nonly this\r\n")

    def test_data_after_bdat(self):
        with self.relayd.raw() as c:
            c.ehlo()
            self.envelope(c)
            c.send(bdat(b"abc"))
            self.assertReply(c.reply(), 250, "2.0.0")
            self.assertReply(c.cmd("DATA"), 503, "5.5.1")
            self.assertReply(c.cmd("MAIL FROM:<x@example.test>"), 503, "5.5.1")
            self.assertReply(c.cmd("RSET"), 250, "2.0.0")
            # DATA and BDAT may still follow each other in one session.
            self.envelope(c)
            self.assertReply(c.cmd("DATA"), 354)
            qid = hf.queued_id(c.data_reply(b"Subject: by data\r\n\r\nx\r\n"))
        self.assertEqual(self.stored(qid), b"Subject: by data\r\n\r\nx\r\n")

    def test_bdat_before_mail_consumes_the_chunk(self):
        with self.relayd.raw() as c:
            c.ehlo()
            c.send(bdat(b"NOOP\r\nQUIT\r\n", last=True))
            self.assertReply(c.reply(), 503, "5.5.1")
            self.assertFalse(c.pending(), "the chunk's text was executed: %r" % c.buf)
            self.assertReply(c.cmd("MAIL FROM:<a@example.test>"), 250)
            # MAIL but no accepted recipient: as for DATA, 554 5.5.1.
            self.assertReply(c.cmd("RCPT TO:<x@elsewhere.test>"), 550, "5.7.1")
            c.send(bdat(b"RSET\r\n", last=True))
            self.assertReply(c.reply(), 554, "5.5.1")
            self.assertFalse(c.pending(), "the chunk's text was executed: %r" % c.buf)
            self.assertReply(c.cmd("RSET"), 250, "2.0.0")
            # Bad syntax: no size known, so nothing is skipped.
            self.assertReply(c.cmd("BDAT ten LAST"), 501, "5.5.4")
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0")

    def test_bare_lf_in_chunk_refused(self):
        marker = b"X-Marker: bdat-bare-lf"
        with self.relayd.raw() as c:
            c.ehlo()
            self.envelope(c)
            c.send(bdat(hf.make_body("bare", b"a\nb\r\n", [marker])) + bdat(b"more", last=True))
            r = c.replies(2, bound=30)
            self.assertReply(r[0], 554, "5.6.0")
            self.assertReply(r[1], 554, "5.6.0")
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        self.assertQueueHasNo(marker)

    def test_smtplib_framing(self):
        """smtplib has no BDAT; its send() and getreply() carry the framing, including the
        RFC 5321 4.5.3.1.6 boundary: in a chunk nothing is stuffed and every octet counts."""
        line_ok = b"." + b"k" * 997  # 998 octets + CRLF: the limit
        content = hf.make_body("smtplib", b"") + line_ok + b"\r\n"
        s = self.relayd.smtp()
        try:
            s.ehlo(hf.CLIENT_NAME)
            self.assertTrue(s.has_extn("chunking"))
            self.assertEqual(s.mail("sender@example.test")[0], 250)
            self.assertEqual(s.rcpt("alice@branch.test")[0], 250)
            s.send(bdat(content[:30]))
            code, msg = s.getreply()
            self.assertEqual(code, 250, msg)
            s.send(bdat(content[30:], last=True))
            qid = hf.queued_id(s.getreply())
            # One octet more on a line is refused.
            self.assertEqual(s.mail("sender@example.test")[0], 250)
            self.assertEqual(s.rcpt("alice@branch.test")[0], 250)
            s.send(bdat(b"Subject: long\r\n\r\n." + b"k" * 998 + b"\r\n", last=True))
            code, msg = s.getreply()
            self.assertEqual(code, 554, msg)
            self.assertEqual(s.noop()[0], 250)
        finally:
            s.quit()
        self.assertEqual(self.stored(qid), content)


class OutboundChunking(hf.HFTestCase):
    """relayd A holds far.test with next_hop = relayd B, which offers CHUNKING and PIPELINING:
    relayctl flush sends A's messages by BDAT (B's debug log shows its sessions entering
    CHUNK, never DATA), and B stores exactly what A stored."""

    def test_delivery_by_bdat(self):
        b = self.start_relayd(domains={"far.test": {}}, log_level="debug")
        a = self.start_relayd(domains={"far.test": {"next_hop": "[127.0.0.1]:%d" % b.port,
                                                    "hold": "yes"}})
        by_data = (hf.make_body("by data", b"..leading dot\r\n.\r\ncaf\xc3\xa9\r\n")
                   + b"w" * 998 + b"\r\n")
        by_bdat = hf.make_body("by bdat", b".\r\n..x\r\nno final CRLF")
        q1 = hf.send_raw(a, "s1@example.test", ["x@far.test"], by_data,
                         mail_params="BODY=8BITMIME")
        with a.raw() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s2@example.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<y@far.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<z@far.test>"), 250)
            c.send(bdat(by_bdat[:10]) + bdat(by_bdat[10:], last=True))
            self.assertReply(c.reply(), 250)
            q2 = hf.queued_id(c.reply(bound=30))
        stored_a = {q: a.relayctl("show", q, "--body", check=True).stdout for q in (q1, q2)}
        r = hf.relayctl("flush", "far.test", "--wait", conf=a.conf_path, check=True, bound=60)
        out = r.stdout.decode()
        self.assertEqual(len([ln for ln in out.splitlines() if " status=sent " in ln]), 3, out)
        self.assertEqual(a.relayctl_json("list")["messages"], [])
        got = {}
        for m in b.relayctl_json("list")["messages"]:
            got[m["sender"]] = (sorted(r["addr"] for r in b.relayctl_json("show", m["id"])["rcpts"]),
                                b.relayctl("show", m["id"], "--body", check=True).stdout)
        self.assertEqual(sorted(got), ["s1@example.test", "s2@example.test"])
        self.assertEqual(got["s1@example.test"][0], ["x@far.test"])
        self.assertEqual(got["s2@example.test"][0], ["y@far.test", "z@far.test"])
        self.assertEqual(hf.split_received(got["s1@example.test"][1])[1], stored_a[q1])
        self.assertEqual(hf.split_received(got["s2@example.test"][1])[1], stored_a[q2])
        log = b.log_text()
        self.assertEqual(len(re.findall(r"state RCPT -> CHUNK", log)), 2, log)
        self.assertNotIn("-> DATA", log)


if __name__ == "__main__":
    unittest.main()
