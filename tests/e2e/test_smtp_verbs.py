"""Commands relayd knows but does not implement, and HELP, with smtplib: SEND, SOML and SAML
(RFC 821) get 502 5.5.1, not 500 "unrecognized", and the session goes on; an unknown verb
still gets 500 5.5.1; HELP (RFC 5321 4.1.1.8) lists what is implemented, HELP verb gives its
syntax, anything else 504."""

import unittest

import hfharness as hf


class Verbs(hf.HFClassTestCase):

    def test_rfc821_verbs_not_implemented(self):
        s = self.relayd.smtp()
        try:
            s.ehlo(hf.CLIENT_NAME)
            for verb in ("SEND", "SOML", "SAML", "send"):
                with self.subTest(verb=verb):
                    code, msg = s.docmd(verb, "FROM:<a@example.test>")
                    self.assertEqual(code, 502, msg)
                    self.assertTrue(msg.startswith(b"5.5.1 "), msg)
            code, msg = s.docmd("XYZZY")
            self.assertEqual((code, msg[:6]), (500, b"5.5.1 "), msg)
            # Inside a transaction too, and the transaction survives.
            self.assertEqual(s.mail("a@example.test")[0], 250)
            self.assertEqual(s.docmd("SAML", "FROM:<a@example.test>")[0], 502)
            self.assertEqual(s.rcpt("alice@branch.test")[0], 250)
            code, msg = s.data(b"Subject: after SAML\r\n\r\nx\r\n")
            hf.queued_id((code, msg))
        finally:
            s.quit()

    def test_help(self):
        s = self.relayd.smtp()
        try:
            s.ehlo(hf.CLIENT_NAME)
            text = s.help().decode()
            self.assertTrue(text.startswith("2.0.0 Commands:"), text)
            listed = text.split(":", 1)[1].split(";")[0].split()
            for verb in ("HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT",
                         "VRFY", "HELP", "ETRN"):
                self.assertIn(verb, listed)
            for verb in ("SEND", "SOML", "SAML", "EXPN", "TURN", "STARTTLS", "AUTH"):
                self.assertNotIn(verb, listed)  # no TLS configured: no STARTTLS, no AUTH
            code, msg = s.docmd("HELP", "bdat")
            self.assertEqual(code, 214, msg)
            self.assertIn(b"BDAT size [LAST]", msg)
            for topic in ("SEND", "EXPN", "nonsense"):
                self.assertEqual(s.docmd("HELP", topic)[0], 504, topic)
        finally:
            s.quit()


if __name__ == "__main__":
    unittest.main()
