"""SIGHUP reloads relayd's certificate without dropping sessions (issue 5).

Sessions are opened in TLS (STARTTLS and implicit) with the first certificate
(CN relay.holdfast.test); the certificate and key files are replaced by another pair (CN
reloaded.holdfast.test, same test CA) and relayd gets SIGHUP. New handshakes (openssl
s_client and smtplib, on both ports) see the new subject; the sessions opened before go on
and queue a message each. A broken pair (key not matching the certificate) is refused on the
next SIGHUP, logged, and the pair in use stays.
"""

import os
import shutil
import signal
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import tlslib  # noqa: E402
from tlslib import CLIENT_NAME, RELOAD_CN, SERVER_CN  # noqa: E402


def replace_file(src, dst):
    """Puts a copy of src at dst atomically (write beside it, rename over it)."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, dst)


class Reload(tlslib.TLSRelaydCase):
    TLS_LISTEN = True
    DOMAINS = {"branch.test": {}}

    def sighup(self):
        mark = self.relayd.mark()
        self.relayd.proc.send_signal(signal.SIGHUP)
        return mark

    def new_cn(self, implicit=False):
        """The CN of the certificate a new smtplib session gets (chain checked)."""
        ctx = self.pki.client_context()
        if implicit:
            s = smtplib.SMTP_SSL("127.0.0.1", self.relayd.tls_port, context=ctx,
                                 timeout=tlslib.bound(30))
        else:
            s = self.smtp_tls(context=ctx, ehlo=False)
        try:
            return tlslib.peer_cn(s.sock)
        finally:
            self.quit(s)

    def finish_message(self, s, subject):
        s.ehlo(CLIENT_NAME)
        code, msg = s.mail("sender@example.org")
        self.assertEqual(code, 250, msg)
        code, msg = s.rcpt("alice@branch.test")
        self.assertEqual(code, 250, msg)
        code, msg = s.data(etrnlib.make_body(subject, "opened before the reload\r\n"))
        self.assertEqual(code, 250, msg)
        self.assertRegex(msg.decode(), etrnlib.QUEUED_RE)

    def test_sighup_reloads_certificate(self):
        r = self.relayd
        ctx = self.pki.client_context()
        # Sessions open across the reload: STARTTLS (mid-dialogue) and implicit TLS.
        old = self.smtp_tls(context=ctx)
        self.addCleanup(old.close)
        self.assertEqual(tlslib.peer_cn(old.sock), SERVER_CN)
        old_implicit = smtplib.SMTP_SSL("127.0.0.1", r.tls_port, context=ctx,
                                        timeout=tlslib.bound(30))
        self.addCleanup(old_implicit.close)
        self.assertEqual(tlslib.peer_cn(old_implicit.sock), SERVER_CN)
        code, _ = old.mail("sender@example.org")  # a transaction in flight
        self.assertEqual(code, 250)

        replace_file(self.pki["reload"].cert, r.cert_path)
        replace_file(self.pki["reload"].key, r.key_path)
        mark = self.sighup()
        r.wait_log(r"signal HUP received: reloaded tls_cert=%s" % r.cert_path, after=mark)

        for port, extra, what in ((r.port, ["-starttls", "smtp"], "STARTTLS"),
                                  (r.tls_port, [], "implicit")):
            with self.subTest(what):
                sc = tlslib.s_client(self.pki, port, extra, name=RELOAD_CN)
                self.assertEqual(sc.rc, 0, sc)
                self.assertEqual(sc.subject_cn(), RELOAD_CN, sc)
                self.assertTrue(sc.verify_ok(), sc)
                self.assertEqual(sc.verified_peername(), RELOAD_CN, sc)
        self.assertEqual(self.new_cn(), RELOAD_CN)
        self.assertEqual(self.new_cn(implicit=True), RELOAD_CN)

        # The sessions opened before the reload go on with their own certificate.
        code, msg = old.rcpt("alice@branch.test")
        self.assertEqual(code, 250, msg)
        code, msg = old.data(etrnlib.make_body("old starttls", "across the reload\r\n"))
        self.assertEqual(code, 250, msg)
        self.assertEqual(tlslib.peer_cn(old.sock), SERVER_CN)
        self.finish_message(old_implicit, "old implicit")
        self.quit(old)
        self.quit(old_implicit)
        self.assertEqual(len(r.list_json()), 2)

    def test_broken_pair_keeps_the_one_in_use(self):
        r = self.relayd
        replace_file(self.pki["reload"].cert, r.cert_path)
        replace_file(self.pki["reload"].key, r.key_path)
        mark = self.sighup()
        r.wait_log(r"signal HUP received: reloaded", after=mark)
        self.assertEqual(self.new_cn(), RELOAD_CN)
        # Now a certificate whose key is not the one beside it.
        replace_file(self.pki["server"].cert, r.cert_path)
        mark = self.sighup()
        r.wait_log(r"signal HUP received: reload of tls_cert=%s failed" % r.cert_path,
                   after=mark)
        self.assertTrue(r.proc.poll() is None, "relayd exited after a bad reload")
        self.assertEqual(self.new_cn(), RELOAD_CN)
        self.assertEqual(self.new_cn(implicit=True), RELOAD_CN)
        # A file that is not PEM at all: refused too.
        with open(r.cert_path + ".new", "w") as f:
            f.write("not a certificate\n")
        os.replace(r.cert_path + ".new", r.cert_path)
        mark = self.sighup()
        r.wait_log(r"signal HUP received: reload of tls_cert=%s failed" % r.cert_path,
                   after=mark)
        self.assertEqual(self.new_cn(), RELOAD_CN)
        # Fixed files are picked up by the next SIGHUP.
        replace_file(self.pki["server"].key, r.key_path)
        replace_file(self.pki["server"].cert, r.cert_path)
        mark = self.sighup()
        r.wait_log(r"signal HUP received: reloaded", after=mark)
        self.assertEqual(self.new_cn(), SERVER_CN)


if __name__ == "__main__":
    unittest.main(verbosity=2)
