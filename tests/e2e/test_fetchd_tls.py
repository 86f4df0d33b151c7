"""fetchd's ETRN over STARTTLS with AUTH PLAIN (issues 5 and 7), against a real relayd.

relayd serves STARTTLS with a certificate for relay.holdfast.test signed by a test CA made
with the openssl CLI (tlslib.PKI), offers AUTH over TLS from an auth_file made with
`relayd --hash-password alice branch.test`, and answers ETRN only after AUTH
(etrn_require_auth = yes). It holds mail for branch.test (hold = yes) with a static next hop
at a python3-aiosmtpd sink on 127.0.0.2. A loopback dnslib server resolves
relay.holdfast.test (and wrong.holdfast.test, the same address under a name the
certificate does not carry) to 127.0.0.1 for fetchd; fetchd trusts the test CA through
tls_ca_file.

  - tls = require + auth: fetchd --once gets 253, exits 0, the held mail arrives at the sink;
    relayd logs "tls established" and "auth ok user=alice"; fetchd logs its side.
  - a wrong password: 535 from relayd, exit 1, "authentication failed", not retried.
  - tls = require against a relayd without TLS: exit 1, "TLS required but the server does
    not offer STARTTLS"; neither AUTH nor ETRN is sent.
  - the relay's name does not match its certificate: the handshake is refused ("hostname
    mismatch"), exit 1, the password never leaves.
  - tls = may + auth against a relayd without TLS: the credentials are not sent in clear.
  - a password file with mode 0644: configuration error, exit 2 (and `-t` names it).

Every wait is bounded; only 127.0.0.0/8.
"""

import os
import re
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import tlslib  # noqa: E402
from fetchdlib import Fetchd  # noqa: E402

RELAY_NAME = tlslib.SERVER_CN  # relay.holdfast.test: the name in relayd's certificate
WRONG_NAME = "wrong.holdfast.test"
ALICE_PW = tlslib.USERS["alice"][0]


class FetchdTLSCase(tlslib.TLSRelaydCase):
    AUTH = True
    CONF = {"etrn_require_auth": "yes"}
    SINKS = {"127.0.0.2": (None, False)}
    ZONE = {RELAY_NAME: [etrnlib.a("127.0.0.1")], WRONG_NAME: [etrnlib.a("127.0.0.1")]}

    def domains(self):
        return {"branch.test": {"hold": "yes",
                                "next_hop": "[127.0.0.2]:%d" % self.sinks.port}}

    def setUp(self):
        super().setUp()
        self.fetchds = []
        self.addCleanup(self._stop_fetchds)

    def _stop_fetchds(self):
        problems = []
        for f in self.fetchds:
            f.stop()
            problems += f.problems
            if self._failed():
                sys.stderr.write("\n---- fetchd log (%s) ----\n%s---- end ----\n"
                                 % (f.dir, f.log_text()))
            else:
                shutil.rmtree(f.dir, ignore_errors=True)
        if problems:
            self.fail("; ".join(problems))

    def hold_one(self, relayd=None):
        r = relayd or self.relayd
        return r.send("sender@example.org", ["alice@branch.test"],
                      etrnlib.make_body("held for the branch", b"released over TLS\r\n"))

    def fetchd(self, relayd=None, password=ALICE_PW, mode=0o600, host=RELAY_NAME, **relay):
        """A fetchd config asking relayd (default self.relayd) for branch.test as alice."""
        r = relayd or self.relayd
        opts = {"host": host, "port": r.port, "domains": "branch.test", "tls": "require",
                "auth_user": "alice"}
        opts.update(relay)
        if not opts["auth_user"]:
            del opts["auth_user"]
        f = Fetchd({"dns_servers": "127.0.0.1:%d" % self.dns.port, "dns_timeout": "2",
                    "tls_ca_file": self.pki.ca_cert, "retry_limit": "0"},
                   {"hq": opts})
        self.fetchds.append(f)
        if opts.get("auth_user"):
            path = os.path.join(f.dir, "hq.password")
            with open(path, "w") as fh:
                fh.write(password + "\n")
            os.chmod(path, mode)
            opts["auth_password_file"] = path
        f.write_config()
        return f

    def plain_relayd(self):
        """A second relayd like self.relayd but without TLS (and so without AUTH)."""
        r = etrnlib.Relayd(self.dns.port, self.sinks.port, self.domains(), {},
                           {"etrn_require_auth": "no"})
        self._relayds.append(r)
        self.addCleanup(self._stop_relayd, r)
        r.start()
        return r

    def assertNoCredentialsSent(self, relayd):
        log = relayd.log_text()
        self.assertNotRegex(log, r"auth (ok|failed)")
        self.assertNotRegex(log, r"etrn arg=")


class FetchdTLS(FetchdTLSCase):

    def test_require_tls_and_auth_releases(self):
        r = self.relayd
        mark = r.mark()
        self.hold_one()
        f = self.fetchd()
        rc, text = f.run("--once")
        self.assertEqual(rc, 0, text)
        label = r"relay=hq\[127\.0\.0\.1\]:%d" % r.port
        self.assertRegex(text, label + r" tls established version=TLSv1\.[23] cipher=\S+ "
                         r"verified=yes subject=\"CN=relay\.holdfast\.test\"")
        self.assertRegex(text, label + r" authenticated user=alice")
        self.assertRegex(text, label + r" domain=branch\.test reply=253 .*verdict=done")
        self.assertNotIn("retry=", text)
        self.assertNotIn(ALICE_PW, text)
        sink = self.sinks["127.0.0.2"]
        sink.wait_for(lambda s: s.messages, 20, "the released mail")
        msgs = sink.snapshot()
        self.assertEqual([m.rcpts for m in msgs], [["alice@branch.test"]])
        self.assertIn(b"Subject: held for the branch", msgs[0].data)
        r.wait_log(r"c=\d+ tls established ", after=mark)
        r.wait_log(r"c=\d+ auth ok user=alice client=\[127\.0\.0\.1\]", after=mark)
        r.wait_log(r"etrn arg=branch\.test .*reply=253", after=mark)
        self.assertNotIn(ALICE_PW, r.log_text())

    def test_wrong_password_fails_without_retry(self):
        r = self.relayd
        mark = r.mark()
        self.hold_one()
        f = self.fetchd(password="not the password")
        f.globals["retry_limit"] = "3"  # a 535 must not be retried even so
        f.write_config()
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)
        self.assertRegex(text, r"relay=hq\[127\.0\.0\.1\]:\d+ authentication failed user=alice "
                         r"reply=535 text=\"5\.7\.8 ")
        self.assertRegex(text, r"domain=branch\.test reply=535 .*verdict=fatal")
        self.assertNotIn("retry=", text)
        r.wait_log(r"reject: AUTH from unknown\[127\.0\.0\.1\]: 535 5\.7\.8 .* sasl_username=alice ", after=mark)
        self.assertEqual(r.log_lines(r"etrn arg=", after=mark), [])
        self.assertEqual(self.sinks["127.0.0.2"].snapshot(), [])

    def test_require_tls_against_plain_relay(self):
        p = self.plain_relayd()
        self.hold_one(p)
        f = self.fetchd(relayd=p)
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)
        self.assertRegex(text, r"domain=branch\.test reply=none text=\"TLS required but the "
                         r"server does not offer STARTTLS\" verdict=retry")
        self.assertRegex(text, r"relay=hq giving up after 0 retries domains=branch\.test")
        self.assertNoCredentialsSent(p)

    def test_may_with_auth_never_sends_credentials_in_clear(self):
        p = self.plain_relayd()
        f = self.fetchd(relayd=p, tls="may")
        f.globals["retry_limit"] = "3"  # refusing is final: no retry either
        f.write_config()
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)
        self.assertRegex(text, r"domain=branch\.test reply=none text=\"refusing to send "
                         r"credentials without TLS\" verdict=fatal")
        self.assertNotIn("retry=", text)
        self.assertNoCredentialsSent(p)

    def test_certificate_for_another_name_is_refused(self):
        r = self.relayd
        mark = r.mark()
        self.hold_one()
        f = self.fetchd(host=WRONG_NAME)
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)
        label = r"relay=hq\[127\.0\.0\.1\]:%d" % r.port
        self.assertRegex(text, label + r" tls failed host=wrong\.holdfast\.test verify=yes "
                         r"reason=\"hostname mismatch\"")
        self.assertRegex(text, r"domain=branch\.test reply=none text=\"TLS handshake failed: "
                         r"hostname mismatch \(certificate checked\)\" verdict=retry")
        self.assertNotRegex(text, r"tls established|authenticated user")
        self.assertEqual(r.log_lines(r"auth (ok|failed)|etrn arg=", after=mark), [])

    def test_opportunistic_without_auth_logs_unverified_name(self):
        """tls = may without auth_user: encrypt, check the certificate only for the log
        (RFC 7435); relayd here wants AUTH for ETRN, so it answers 459 (fatal)."""
        f = self.fetchd(host=WRONG_NAME, tls="may", auth_user="")
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)
        self.assertRegex(text, r" tls established version=\S+ cipher=\S+ verified=no "
                         r"reason=hostname mismatch ")
        self.assertRegex(text, r"domain=branch\.test reply=459 .*authenticate first.*"
                         r"verdict=fatal")

    def test_password_file_open_to_others_is_a_config_error(self):
        f = self.fetchd(mode=0o644)
        rc, text = f.run("--once")
        self.assertEqual(rc, 2, text)
        self.assertRegex(text, r"relay=hq not started: auth_password_file \S+hq\.password: "
                         r"mode 0644 gives group or others access to the password; chmod 600")
        rc, text = f.run("-t")
        self.assertEqual(rc, 1, text)
        self.assertRegex(text, r"fetchd\.conf:\d+: relay hq: auth_password_file .*mode 0644")
        self.assertNotIn(ALICE_PW, text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
