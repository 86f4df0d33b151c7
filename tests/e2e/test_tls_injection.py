"""STARTTLS command injection (CVE-2011-0411 class; RFC 3207 5 and 4.2).

A raw socket sends STARTTLS and more commands in one write; the client then reads the 220,
does the TLS handshake on the same socket and talks inside TLS. Every octet that followed
STARTTLS in plaintext must be discarded (relayd logs "discarded N octets sent after
STARTTLS"): no reply to the injected commands ever arrives, before or after the handshake,
and their effects are absent (a RCPT right after EHLO gets 503 because the injected MAIL was
not executed; an injected whole transaction queues nothing). Inside TLS the session starts
over from EHLO.
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfharness  # noqa: E402
import tlslib  # noqa: E402
from tlslib import CLIENT_NAME  # noqa: E402


class Injection(tlslib.TLSRelaydCase):
    AUTH = True
    DOMAINS = {"branch.test": {}}

    def open(self):
        c = tlslib.RawTLS(self.relayd.port,
                          context=self.pki.client_context(check_hostname=True))
        self.addCleanup(c.close)
        self.assertEqual(c.greeting.code, 220, c.greeting)
        return c

    def tls_after_injection(self, c, before, injected):
        """Sends before + STARTTLS + injected in one write, reads the replies to `before`
        and the 220, handshakes. Returns relayd's log mark."""
        mark = self.relayd.mark()
        c.send(before + b"STARTTLS\r\n" + injected)
        for _ in range(before.count(b"\r\n")):
            rep = c.reply()
            self.assertLess(rep.code, 400, rep)
        rep = c.reply()
        self.assertEqual(rep.code, 220, rep)
        self.assertEqual(rep.enhanced(), "2.0.0", rep)
        # Nothing may follow the 220 in plaintext (a reply to an injected command would).
        self.assertEqual(c.buf, b"", "plaintext after the 220 to STARTTLS")
        c.start_tls()
        self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
        return mark

    def assertDiscarded(self, mark, injected):
        self.relayd.wait_log(r"c=\d+ discarded %d octets sent after STARTTLS "
                             r"client=\[127\.0\.0\.1\]" % len(injected), after=mark)

    def assertNoMoreReplies(self, c):
        """QUIT's 221 is the next reply and the connection ends after it: no reply to an
        injected command was waiting anywhere."""
        rep = c.cmd("QUIT")
        self.assertEqual(rep.code, 221, rep)
        rest = c.wait_closed()
        self.assertEqual(rest, [], "replies after QUIT's 221: %r" % rest)

    def test_injected_rset_and_mail_not_executed(self):
        injected = b"RSET\r\nMAIL FROM:<evil@x.test>\r\n"
        for before in (b"", b"EHLO " + CLIENT_NAME.encode() + b"\r\n"):
            with self.subTest(before=before):
                c = self.open()
                mark = self.tls_after_injection(c, before, injected)
                rep = c.ehlo()
                self.assertIn("AUTH PLAIN LOGIN", rep.lines)
                self.assertNotIn("STARTTLS", rep.lines)
                # HELP's 214 is the very next reply: no 250 for RSET or MAIL was queued.
                rep = c.cmd("HELP")
                self.assertEqual(rep.code, 214, rep)
                rep = c.cmd("RCPT TO:<alice@branch.test>")
                self.assertEqual(rep.code, 503, "the injected MAIL was executed: %r" % rep)
                self.assertEqual(rep.enhanced(), "5.5.1", rep)
                self.assertNoMoreReplies(c)
                self.assertDiscarded(mark, injected)

    def test_injected_transaction_queues_nothing(self):
        injected = (b"EHLO evil.test\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<alice@branch.test>"
                    b"\r\nDATA\r\nSubject: injected\r\n\r\nplaintext injection\r\n.\r\n"
                    b"QUIT\r\n")
        c = self.open()
        c.ehlo()
        mark = self.tls_after_injection(c, b"", injected)
        # The session starts over inside TLS: no EHLO yet, so MAIL is out of sequence.
        rep = c.cmd("MAIL FROM:<good@example.org>")
        self.assertEqual(rep.code, 503, rep)
        c.ehlo()
        rep = c.cmd("DATA")
        self.assertEqual(rep.code, 503, "the injected MAIL/RCPT were executed: %r" % rep)
        self.assertNoMoreReplies(c)
        self.assertDiscarded(mark, injected)
        self.assertEqual(self.relayd.list_json(), [], "the injected message was queued")
        self.assertEqual(self.relayd.log_lines(r": client=\S+, c=\d+", after=mark), [])

    def test_injection_in_a_second_write(self):
        """STARTTLS, then at once a second write with a plaintext MAIL before the 220 was
        read. Whether relayd reads both together (discarded) or the second after the switch
        (then it is not a ClientHello and the handshake fails), MAIL is never executed."""
        c = self.open()
        c.ehlo()
        c.send(b"STARTTLS\r\n")
        c.send(b"MAIL FROM:<evil@x.test>\r\n")
        rep = c.reply()
        self.assertEqual(rep.code, 220, rep)
        self.assertEqual(c.buf, b"", "plaintext after the 220 to STARTTLS")
        try:
            c.start_tls()
        except (OSError, hfharness.ConnectionClosed):
            # Handshake refused: the injected octets were taken as (bad) TLS input. The
            # connection must be closed without a plaintext reply.
            self.assertFalse(re.search(rb"\d{3}[ -]", c.buf or b""), c.buf)
            return
        c.ehlo()
        rep = c.cmd("RCPT TO:<alice@branch.test>")
        self.assertEqual(rep.code, 503, "the injected MAIL was executed: %r" % rep)
        self.assertNoMoreReplies(c)


if __name__ == "__main__":
    unittest.main(verbosity=2)
