"""Outbound TLS per domain policy (issue 5): none, may, encrypt, verify.

A python3-dnslib server gives each test domain an MX; the MX hosts are python3-aiosmtpd
sinks on 127.0.0.x (one common port, relayd's smtp_port) with certificates made at test
time by a test CA (relayd's tls_ca_file):

  mx.good.test       127.0.0.2  valid certificate, STARTTLS required (530 before it)
  mx.wrongname.test  127.0.0.3  valid certificate for wrong.test (host name mismatch), required
  mx.expired.test    127.0.0.4  expired certificate (2020-01-01..02), required
  mx.optional.test   127.0.0.5  valid certificate, STARTTLS offered, not required
  mx.plain.test      127.0.0.6  no STARTTLS at all
  mx.selfsigned.test 127.0.0.7  self-signed certificate (not from the CA), required

Mail is held, then released (ETRN, or `relayctl -c CONF flush DOMAIN --wait`). Expected:
`may` delivers over TLS when offered and in plaintext when not; `none` never uses STARTTLS
(a sink that requires it answers 530 to MAIL: the recipient fails, and stays in the queue as
failed); `encrypt` defers when STARTTLS is not offered and delivers to a certificate it cannot
verify; `verify` delivers only to a certificate that chains to the CA and names the MX host
(log: tls=TLSv1.x,<cipher>,verified), and defers on a wrong name, an expired or a self-signed
certificate and on a static next_hop, saying why. Deferred mail stays queued, byte for byte.
"""

import os
import re
import sys
import logging
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import tlslib  # noqa: E402
from etrnlib import a, mx  # noqa: E402

GOOD, WRONG, EXPIRED, OPTIONAL, PLAIN, SELFSIGNED = (
    "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7")

SINKS = {
    GOOD: ("good", True),
    WRONG: ("wrong", True),
    EXPIRED: ("expired", True),
    OPTIONAL: ("optional", False),
    PLAIN: (None, False),
    SELFSIGNED: ("selfsigned", True),
}

MX_HOSTS = {
    "mx.good.test": GOOD,
    "mx.wrongname.test": WRONG,
    "mx.expired.test": EXPIRED,
    "mx.optional.test": OPTIONAL,
    "mx.plain.test": PLAIN,
    "mx.selfsigned.test": SELFSIGNED,
}

# relay domain -> (tls policy, MX host)
POLICIES = {
    "may-good.test": ("may", "mx.good.test"),
    "may-plain.test": ("may", "mx.plain.test"),
    "none-optional.test": ("none", "mx.optional.test"),
    "none-strict.test": ("none", "mx.good.test"),
    "encrypt-good.test": ("encrypt", "mx.good.test"),
    "encrypt-plain.test": ("encrypt", "mx.plain.test"),
    "encrypt-wrong.test": ("encrypt", "mx.wrongname.test"),
    "verify-good.test": ("verify", "mx.good.test"),
    "verify-wrong.test": ("verify", "mx.wrongname.test"),
    "verify-expired.test": ("verify", "mx.expired.test"),
    "verify-selfsigned.test": ("verify", "mx.selfsigned.test"),
    "verify-plain.test": ("verify", "mx.plain.test"),
}

ZONE = {}
for _dom, (_pol, _host) in POLICIES.items():
    ZONE[_dom] = [mx(_host, 10)]
for _host, _addr in MX_HOSTS.items():
    ZONE[_host] = [a(_addr)]

# What the error of a deferred recipient must say (the last_error relayctl shows, the
# delivery log line and the run's last_error): the reason, not only that TLS failed. The
# patterns cannot match the MX host names (mx.expired.test, static-next-hop...).
MISMATCH_WHY = r"(?i)host ?name mismatch"
EXPIRED_WHY = r"(?i)certificate has expired"
SELFSIGNED_WHY = r"(?i)self.signed certificate"
STATIC_WHY = r"(?i)needs an MX host name|cannot be (checked|verified)"
NO_STARTTLS_WHY = r"(?i)does not offer STARTTLS|STARTTLS not offered"

# "QID: to=<rcpt>, relay=HOST[ADDR]:PORT, delay=N, ..., status=sent (...) tls=TLSv1.3,CIPHER,verified"
# (the fields between to= and status= in any order; tls= absent when no connection was made).
DELIVERY_RE = (r"(?P<qid>[0-9A-F]{16}): to=<%s>, (?P<fields>(?:[a-z]+=[^,\s]*, )+)"
               r"status=(?P<status>\w+) \((?P<text>.*)\)(?P<extra>(?: [a-z]+=\S+)*)$")


class Delivery:
    """One delivery log line: qid, relay, tls (None when absent), status, text, string."""

    def __init__(self, m):
        self.string = m.string
        self.qid, self.status, self.text = m.group("qid"), m.group("status"), m.group("text")
        fields = dict(f.split("=", 1) for f in (m.group("fields").replace(",", " ")
                                                 + m.group("extra")).split())
        self.relay = fields.get("relay")
        self.tls = fields.get("tls")

    def group(self, name):
        return getattr(self, name)


# aiosmtpd logs a traceback for every handshake relayd aborts on purpose (bad certificate).
logging.getLogger("mail.log").setLevel(logging.CRITICAL)


class Outbound(etrnlib.SharedRelaydCase):
    """One DNS server, six sinks and one relayd for the class; each test has its own
    domain, so the tests do not see each other's mail."""

    @classmethod
    def setUpClass(cls):
        cls.pki = tlslib.shared_pki()
        cls.dns = etrnlib.ZoneDNS(ZONE).start()
        try:
            specs = {h: (cls.pki[tag] if tag else None, req) for h, (tag, req) in SINKS.items()}
            cls.sinks = tlslib.TLSSinks(specs).start()
        except BaseException:
            cls.dns.stop()
            raise
        domains = {d: {"tls": pol} for d, (pol, _) in POLICIES.items()}
        domains["verify-static.test"] = {"tls": "verify",
                                         "next_hop": "[%s]:%d" % (GOOD, cls.sinks.port)}
        domains["encrypt-static.test"] = {"tls": "encrypt",
                                          "next_hop": "[%s]:%d" % (GOOD, cls.sinks.port)}
        cls.relayd = etrnlib.Relayd(cls.dns.port, cls.sinks.port, domains,
                                    conf={"tls_ca_file": cls.pki.ca_cert})
        cls.start_shared(cls.relayd)

    # ---- helpers -------------------------------------------------------------------------

    def hold(self, domain, local="user"):
        """Queues one message for local@domain; returns (rcpt, qid, stored bytes)."""
        rcpt = "%s@%s" % (local, domain)
        qid = self.relayd.send("sender@example.org", [rcpt],
                               etrnlib.make_body("tls to " + domain, "policy test\r\n", rcpt))
        return rcpt, qid, self.relayd.body(qid)

    def release(self, domain, via="etrn"):
        """Releases domain and waits for the run's summary line; returns it (a dict)."""
        r = self.relayd
        mark = r.mark()
        if via == "etrn":
            code, text = r.etrn(domain)
            self.assertIn(code, (250, 251, 252, 253), text)
        else:
            p = tlslib.run([etrnlib.RELAYCTL, "-c", r.conf_path, "flush", domain, "--wait"],
                           check=False, seconds=60)
            out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
            self.assertNotRegex(out, etrnlib.SANITIZER_RE)
            self.relayctl_out = out
        s = r.wait_flush(domain, seconds=30, after=mark)
        s["mark"] = mark
        return s

    def delivery(self, rcpt, mark):
        """The delivery log line of rcpt after mark, as a match object."""
        m = self.relayd.wait_log(DELIVERY_RE % re.escape(rcpt), after=mark)
        return Delivery(m[-1])

    def messages_for(self, host, domain):
        return [m for m in self.sinks[host].snapshot()
                if any(x.endswith("@" + domain) for x in m.rcpts)]

    def assertDelivered(self, domain, host, tls, verified=None, via="etrn"):
        """One message to domain is delivered to host; tls: True (over TLS), False (plain).
        verified: True/False checks the log's verified/unverified word."""
        rcpt, qid, stored = self.hold(domain)
        s = self.release(domain, via)
        self.assertEqual((s["messages"], s["sent"], s["deferred"], s["bounced"]),
                         (1, 1, 0, 0), s["line"])
        got = self.messages_for(host, domain)
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0].rcpts, [rcpt])
        self.assertEqual(got[0].data, stored)
        d = self.delivery(rcpt, s["mark"])
        self.assertEqual(d.group("status"), "sent", d.string)
        self.assertTrue(d.group("relay").startswith(POLICIES.get(domain, ("", "mx.good.test"))[1]
                                                    + "["), d.string)
        if tls:
            self.assertIsNotNone(got[0].tls, "delivered without TLS")
            version, cipher = got[0].tls
            self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
            m = re.match(r"^(TLSv1\.[23]),(\S+),(verified|unverified)$", d.group("tls") or "")
            self.assertTrue(m, "delivery line without tls=VERSION,CIPHER,HOW: %s" % d.string)
            self.assertEqual((m.group(1), m.group(2)), (version, cipher), d.string)
            if verified is not None:
                self.assertEqual(m.group(3), "verified" if verified else "unverified",
                                 d.string)
        else:
            self.assertIsNone(got[0].tls, "delivered over TLS (%s)" % (got[0].tls,))
            self.assertEqual(d.group("tls"), "none", d.string)
        self.assertNotIn(rcpt, self.relayd.rcpts(), "the delivered recipient is still queued")
        return d

    def assertKept(self, domain, state, why_re, host=None):
        """One message to domain is released and not delivered: the recipient stays queued in
        `state` with a last_error matching why_re; the body is unchanged; host (if given)
        received nothing for domain."""
        rcpt, qid, stored = self.hold(domain)
        s = self.release(domain)
        want = (1, 0, 1, 0) if state == "deferred" else (1, 0, 0, 1)
        self.assertEqual((s["messages"], s["sent"], s["deferred"], s["bounced"]), want,
                         s["line"])
        if host is not None:
            self.assertEqual(self.messages_for(host, domain), [])
        rc = self.relayd.rcpts()
        if state == "failed":
            # A permanent refusal bounces at once: the recipient is gone, its DSN queued.
            self.assertNotIn(rcpt, rc, "a 5xx recipient stayed queued")
            d = self.delivery(rcpt, s["mark"])
            self.assertEqual(d.group("status"), "bounced", d.string)
            self.assertRegex(d.group("text"), why_re, "delivery log line: " + d.string)
            self.relayd.wait_log(r"%s: sender non-delivery notification: " % qid)
            return s, None
        self.assertEqual(rc[rcpt]["id"], qid)
        self.assertEqual(rc[rcpt]["state"], state, rc[rcpt])
        self.assertEqual(rc[rcpt]["attempts"], 1, rc[rcpt])
        self.assertEqual(self.relayd.body(qid), stored, "the queued message changed")
        d = self.delivery(rcpt, s["mark"])
        self.assertEqual(d.group("status"), "deferred" if state == "deferred" else "bounced",
                         d.string)
        # Last, so the checks above run even when only the wording is wrong.
        with self.subTest("the error says why", domain=domain):
            self.assertRegex(rc[rcpt]["last_error"], why_re,
                             "relayctl list: last_error of %s" % rcpt)
            self.assertRegex(d.group("text"), why_re, "delivery log line: " + d.string)
        return s, rc[rcpt]

    # ---- may ---------------------------------------------------------------------------

    def test_may_uses_starttls(self):
        self.assertDelivered("may-good.test", GOOD, tls=True)

    def test_may_without_starttls_sends_plain(self):
        self.assertDelivered("may-plain.test", PLAIN, tls=False)

    # ---- none --------------------------------------------------------------------------

    def test_none_does_not_use_offered_starttls(self):
        self.assertDelivered("none-optional.test", OPTIONAL, tls=False)

    def test_none_to_server_requiring_starttls_fails(self):
        """The sink answers MAIL with 530 (STARTTLS required): a permanent refusal, the
        recipient bounces at once with the reply in its DSN."""
        self.assertKept("none-strict.test", "failed", r"530", host=GOOD)

    # ---- encrypt -----------------------------------------------------------------------

    def test_encrypt_delivers_over_tls(self):
        self.assertDelivered("encrypt-good.test", GOOD, tls=True, via="relayctl")

    def test_encrypt_without_starttls_defers(self):
        s, rec = self.assertKept("encrypt-plain.test", "deferred", NO_STARTTLS_WHY,
                                 host=PLAIN)
        self.assertGreaterEqual(self.sinks[PLAIN].connections, 1)

    def test_encrypt_does_not_verify(self):
        self.assertDelivered("encrypt-wrong.test", WRONG, tls=True, verified=False)

    def test_encrypt_static_next_hop_delivers(self):
        rcpt, qid, stored = self.hold("encrypt-static.test")
        s = self.release("encrypt-static.test")
        self.assertEqual(s["sent"], 1, s["line"])
        got = self.messages_for(GOOD, "encrypt-static.test")
        self.assertEqual(len(got), 1, got)
        self.assertIsNotNone(got[0].tls)

    # ---- verify ------------------------------------------------------------------------

    def test_verify_good_certificate_delivers(self):
        self.assertDelivered("verify-good.test", GOOD, tls=True, verified=True, via="relayctl")
        # relayctl flush --wait reports the recipient's outcome too.
        self.assertRegex(self.relayctl_out, r"to=<user@verify-good\.test> .*status=sent",
                         self.relayctl_out)

    def assertVerifyFailure(self, domain, host, why_re):
        s, rec = self.assertKept(domain, "deferred", why_re, host=host)
        # relayd's TLS log line names the verification failure...
        lines = self.relayd.log_lines(r"flush domain=%s relay=\S+ tls handshake failed "
                                      r"policy=verify" % re.escape(domain), after=s["mark"])
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], why_re)
        # ...and so must the run's summary (last_error=...).
        with self.subTest("the flush summary says why", domain=domain):
            self.assertRegex(s["line"], why_re, "flush summary: " + s["line"])

    def test_verify_wrong_hostname_defers(self):
        self.assertVerifyFailure("verify-wrong.test", WRONG, MISMATCH_WHY)

    def test_verify_expired_certificate_defers(self):
        self.assertVerifyFailure("verify-expired.test", EXPIRED, EXPIRED_WHY)

    def test_verify_self_signed_defers(self):
        self.assertVerifyFailure("verify-selfsigned.test", SELFSIGNED, SELFSIGNED_WHY)

    def test_verify_without_starttls_defers(self):
        self.assertKept("verify-plain.test", "deferred", NO_STARTTLS_WHY, host=PLAIN)

    def test_verify_static_next_hop_defers(self):
        """A static next_hop has no MX host name from DNS to check: deferred, said so."""
        s, rec = self.assertKept("verify-static.test", "deferred", STATIC_WHY, host=GOOD)
        self.assertEqual(len(self.relayd.log_lines(
            r"flush domain=verify-static\.test tls=verify cannot be checked on a static next "
            r"hop", after=s["mark"])), 1)
        with self.subTest("the flush summary says why"):
            self.assertRegex(s["line"], STATIC_WHY, "flush summary: " + s["line"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
