"""Inbound TLS (issue 5): STARTTLS on the listen port, implicit TLS on listen_tls.

Clients nobody here wrote: `openssl s_client -starttls smtp` and Python's smtplib
(SMTP.starttls, SMTP_SSL), trusting only a test CA made at test time. A STARTTLS session
negotiates TLS 1.2 or later with relayd's certificate for relay.holdfast.test (chain and name
verified); EHLO before TLS offers STARTTLS and not AUTH, EHLO after it offers AUTH and not
STARTTLS; a second STARTTLS is refused. The implicit-TLS port greets only inside TLS. A client
that insists on TLS 1.1 is refused by relayd (protocol_version alert, logged), and relayd
goes on serving. Messages received over TLS carry "with ESMTPS" and "(using TLSv1.x with
cipher ...)" in their Received: header; plaintext ones "with ESMTP".
"""

import os
import smtplib
import ssl
import sys
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import tlslib  # noqa: E402
from tlslib import CLIENT_NAME, SERVER_CN  # noqa: E402

TLS_OK = ("TLSv1.2", "TLSv1.3")


received_of = tlslib.received_of


class Inbound(tlslib.TLSRelaydCase):
    TLS_LISTEN = True
    AUTH = True
    DOMAINS = {"branch.test": {}}

    # ---- STARTTLS with openssl s_client -------------------------------------------------

    def test_starttls_openssl_s_client(self):
        r = self.relayd
        mark = r.mark()
        sc = tlslib.s_client(self.pki, r.port, ["-starttls", "smtp"])
        self.assertEqual(sc.rc, 0, sc)
        self.assertIn(sc.protocol(), TLS_OK, sc)
        self.assertTrue(sc.verify_ok(), sc)
        self.assertEqual(sc.verified_peername(), SERVER_CN, sc)
        kws = sc.ehlo_keywords()
        self.assertIn("AUTH PLAIN LOGIN", kws, sc)
        self.assertNotIn("STARTTLS", kws, sc)
        self.assertTrue(any(ln.startswith("221 ") for ln in sc.smtp_lines()), sc)
        m = r.wait_log(r"c=\d+ tls established (TLSv1\.[23]) with cipher (\S+) "
                       r"client=\[127\.0\.0\.1\]", after=mark)[0]
        self.assertEqual((m.group(1), m.group(2)), (sc.protocol(), sc.cipher()))

    def test_starttls_tls12_accepted(self):
        sc = tlslib.s_client(self.pki, self.relayd.port, ["-starttls", "smtp", "-tls1_2"])
        self.assertEqual(sc.rc, 0, sc)
        self.assertEqual(sc.protocol(), "TLSv1.2", sc)
        self.assertTrue(sc.verify_ok(), sc)
        self.assertIn("AUTH PLAIN LOGIN", sc.ehlo_keywords(), sc)

    def test_tls11_refused(self):
        """-tls1_1 with SECLEVEL=0, so the client really offers TLS 1.1 (and only it): relayd
        answers with a protocol_version alert and logs the failure."""
        r = self.relayd
        for port, extra, what in ((r.port, ["-starttls", "smtp"], "STARTTLS"),
                                  (r.tls_port, [], "implicit TLS")):
            with self.subTest(what):
                mark = r.mark()
                sc = tlslib.s_client(self.pki, port,
                                     extra + ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
                self.assertNotEqual(sc.rc, 0, sc)
                self.assertNotIn(sc.protocol(), ("TLSv1.1", "TLSv1", "TLSv1.2", "TLSv1.3"), sc)
                self.assertNotIn("no protocols available", sc.text,
                                 "the client refused by itself; the test proves nothing")
                self.assertRegex(sc.text, r"alert protocol version|unsupported protocol", sc)
                self.assertEqual(sc.ehlo_keywords(), [], sc)
                r.wait_log(r"c=\d+ tls handshake failed client=\[127\.0\.0\.1\]", after=mark)
        # Python's own client limited to TLS 1.1 fails too, and relayd still serves.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = self.pki.client_context(maximum=ssl.TLSVersion.TLSv1_1)
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        s = r.smtp()
        try:
            s.ehlo(CLIENT_NAME)
            with self.assertRaises((ssl.SSLError, smtplib.SMTPServerDisconnected,
                                    ConnectionError)):
                tlslib.starttls(s, ctx)
        finally:
            s.close()
        s = self.smtp_tls()
        self.assertIn(s.sock.version(), TLS_OK)
        self.quit(s)

    # ---- EHLO before and after TLS (smtplib) --------------------------------------------

    def test_ehlo_offers_starttls_before_and_auth_after(self):
        s = self.relayd.smtp()
        try:
            code, _ = s.ehlo(CLIENT_NAME)
            self.assertEqual(code, 250)
            self.assertTrue(s.has_extn("starttls"), s.esmtp_features)
            self.assertFalse(s.has_extn("auth"), s.esmtp_features)
            code, msg = tlslib.starttls(s, self.pki.client_context(check_hostname=True))
            self.assertEqual(code, 220, msg)
            self.assertRegex(msg.decode(), r"^2\.0\.0 ")
            self.assertIn(s.sock.version(), TLS_OK)
            self.assertEqual(tlslib.peer_cn(s.sock), SERVER_CN)
            self.assertIn(SERVER_CN, tlslib.peer_sans(s.sock))
            # RFC 3207 4.2: the client must say EHLO again; everything before is forgotten.
            code, msg = s.docmd("MAIL", "FROM:<a@example.org>")
            self.assertEqual(code, 503, msg)
            code, _ = s.ehlo(CLIENT_NAME)
            self.assertEqual(code, 250)
            self.assertFalse(s.has_extn("starttls"), s.esmtp_features)
            self.assertTrue(s.has_extn("auth"), s.esmtp_features)
            self.assertEqual(sorted(s.esmtp_features["auth"].upper().split()),
                             ["LOGIN", "PLAIN"])
            # A second STARTTLS inside TLS: 503 (RFC 3207 4.2 says it is not offered again).
            code, msg = s.docmd("STARTTLS")
            self.assertEqual(code, 503, msg)
            code, _ = s.noop()
            self.assertEqual(code, 250)
        finally:
            self.quit(s)

    def test_plain_helo_then_starttls(self):
        """STARTTLS after HELO (no EHLO) works too; AUTH is still not accepted before TLS."""
        s = self.relayd.smtp()
        try:
            s.helo(CLIENT_NAME)
            code, msg = s.docmd("AUTH", "PLAIN AGFsaWNlAHg=")
            self.assertEqual(code, 538, msg)
            code, msg = s.docmd("STARTTLS")
            self.assertEqual(code, 220, msg)
            s.sock = self.pki.client_context().wrap_socket(s.sock, server_hostname=SERVER_CN)
            s.file = None
            code, _ = s.ehlo(CLIENT_NAME)
            self.assertEqual(code, 250)
            self.assertTrue(s.has_extn("auth"), s.esmtp_features)
        finally:
            self.quit(s)

    # ---- implicit TLS (RFC 8314) -------------------------------------------------------

    def test_implicit_tls_openssl_s_client(self):
        r = self.relayd
        mark = r.mark()
        sc = tlslib.s_client(self.pki, r.tls_port)
        self.assertEqual(sc.rc, 0, sc)
        self.assertIn(sc.protocol(), TLS_OK, sc)
        self.assertTrue(sc.verify_ok(), sc)
        lines = sc.smtp_lines()
        self.assertTrue(lines and lines[0].startswith("220 ") and SERVER_CN in lines[0], sc)
        kws = sc.ehlo_keywords()
        self.assertIn("AUTH PLAIN LOGIN", kws, sc)
        self.assertNotIn("STARTTLS", kws, sc)
        r.wait_log(r"c=\d+ tls established TLSv1\.[23] with cipher \S+ client=\[127\.0\.0\.1\] "
                   r"implicit=yes", after=mark)

    def test_implicit_tls_smtplib_message(self):
        r = self.relayd
        ctx = self.pki.client_context()
        s = smtplib.SMTP_SSL("127.0.0.1", r.tls_port, context=ctx, timeout=tlslib.bound(30))
        try:
            self.assertIn(s.sock.version(), TLS_OK)
            self.assertEqual(tlslib.peer_cn(s.sock), SERVER_CN)
            version, cipher = s.sock.version(), s.sock.cipher()[0]
            s.ehlo(CLIENT_NAME)
            self.assertTrue(s.has_extn("auth"), s.esmtp_features)
            self.assertFalse(s.has_extn("starttls"), s.esmtp_features)
            code, msg = s.docmd("STARTTLS")
            self.assertEqual(code, 503, msg)
            s.mail("sender@example.org")
            code, msg = s.rcpt("alice@branch.test")
            self.assertEqual(code, 250, msg)
            code, msg = s.data(etrnlib.make_body("implicit", "over implicit TLS\r\n"))
            self.assertEqual(code, 250, msg)
            qid = etrnlib.QUEUED_RE.search(msg.decode()).group(1).upper()
        finally:
            self.quit(s)
        rcv = received_of(r.body(qid))
        self.assertRegex(rcv, r"\bwith ESMTPS id %s\b" % qid, rcv)
        self.assertIn("(using %s with cipher %s)" % (version, cipher), rcv)

    def test_starttls_message_received_header(self):
        r = self.relayd
        s = self.smtp_tls()
        try:
            version, cipher = s.sock.version(), s.sock.cipher()[0]
            s.mail("sender@example.org")
            s.rcpt("alice@branch.test")
            code, msg = s.data(etrnlib.make_body("starttls", "over STARTTLS\r\n"))
            self.assertEqual(code, 250, msg)
            qid = etrnlib.QUEUED_RE.search(msg.decode()).group(1).upper()
        finally:
            self.quit(s)
        rcv = received_of(r.body(qid))
        self.assertRegex(rcv, r"\bwith ESMTPS id %s\b" % qid, rcv)
        self.assertIn("(using %s with cipher %s)" % (version, cipher), rcv)
        # Control: the same without TLS says ESMTP and no "using".
        qid2 = r.send("sender@example.org", ["alice@branch.test"],
                      etrnlib.make_body("plain", "no TLS\r\n"))
        rcv2 = received_of(r.body(qid2))
        self.assertRegex(rcv2, r"\bwith ESMTP id %s\b" % qid2, rcv2)
        self.assertNotIn("using", rcv2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
