"""Outbound DANE (RFC 7672) end to end: `tls = dane` in a [domain] section (issue 5).

A python3-dnslib server answers MX, A and TLSA queries and sets the AD bit the way a
DNSSEC-validating resolver would (RFC 4035 3.2.3): on every answer, except for the names in
INSECURE (an answer from an unsigned zone) and on SERVFAIL (how a validating resolver reports
a bogus answer). relayd asks for TLSA `_P._tcp.<mx host>` (P is smtp_port, the sinks' common
port), so the TLSA names are made once the sinks have their port. The TLSA association data
is computed from certificates made at test time with the openssl CLI:

  3 1 1   sha256 of the DER SubjectPublicKeyInfo of the MX's certificate
          (`openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER`, then sha256)
  2 0 1   sha256 of the DER certificate of the test CA (`openssl x509 -outform DER`)
  2 1 1   sha256 of the DER SubjectPublicKeyInfo of the test CA

The MX hosts are python3-aiosmtpd sinks on 127.0.0.x (one common port); several MX names
can point at one sink, each with its own TLSA records:

  127.0.0.2  EE     self-signed certificate for elsewhere.test (neither its name nor its
                    issuer fits any MX name): only a DANE-EE(3) record can authenticate it.
                    STARTTLS required.
  127.0.0.3  TA     certificate from the test CA naming mx-ta.test and mx-ta2.test, served
                    with the CA certificate in its chain (a digest DANE-TA record needs the
                    trust anchor in the chain, RFC 7671 5.2.2). STARTTLS required.
  127.0.0.5  PLAIN  no STARTTLS at all.
  127.0.0.6  SECOND self-signed certificate, STARTTLS offered, not required.
  127.0.0.7  SFAIL  the exchanger whose TLSA lookup fails: must never be connected to.

relayd gets no tls_ca_file that knows the test CA (only the system store): whatever is
"verified" here is verified by DANE alone. Mail is held, released with ETRN, and the run's
summary line, the per-recipient delivery line, `relayctl list --json` and what each sink
received are checked. Every wait is bounded and woken by the event itself; no sleeps.
"""

import hashlib
import logging
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import tlslib  # noqa: E402
from dnslib import RCODE, TLSA  # noqa: E402
from etrnlib import a, mx  # noqa: E402

EE, TA, PLAIN, SECOND, SFAIL = "127.0.0.2", "127.0.0.3", "127.0.0.5", "127.0.0.6", "127.0.0.7"

# "QID: to=<rcpt>, relay=HOST[ADDR]:PORT, delay=N, ..., status=sent (...) tls=TLSv1.3,CIPHER,verified"
DELIVERY_RE = (r"(?P<qid>[0-9A-F]{16}): to=<%s>, (?P<fields>(?:[a-z]+=[^,\s]*, )+)"
               r"status=(?P<status>\w+) \((?P<text>.*)\)(?P<extra>(?: [a-z]+=\S+)*)$")
TLS_FIELD_RE = r"^(TLSv1\.[23]),(\S+),(verified|unverified)$"

# What the last_error of a deferred recipient must name.
DANE_WHY = r"(?i)dane|tlsa"
TLSA_FAIL_WHY = r"(?i)tlsa lookup .*fail"
NO_STARTTLS_WHY = r"(?i)does not offer STARTTLS|STARTTLS not offered|no STARTTLS"

# aiosmtpd logs a traceback for every handshake relayd aborts on purpose.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)


# ---- TLSA association data from certificates (openssl CLI) --------------------------------

def _der_cert(pem):
    return tlslib.run([tlslib.OPENSSL, "x509", "-in", pem, "-outform", "DER"]).stdout


def _der_spki(pem):
    pub = tlslib.run([tlslib.OPENSSL, "x509", "-in", pem, "-pubkey", "-noout"]).stdout
    return tlslib.run([tlslib.OPENSSL, "pkey", "-pubin", "-outform", "DER"],
                      input_bytes=pub).stdout


def spki_sha256(pem):
    """DANE selector 1 (SPKI), matching type 1 (SHA2-256)."""
    return hashlib.sha256(_der_spki(pem)).digest()


def cert_sha256(pem):
    """DANE selector 0 (full certificate), matching type 1 (SHA2-256)."""
    return hashlib.sha256(_der_cert(pem)).digest()


def tlsa(usage, selector, mtype, data):
    return ("TLSA", TLSA(usage, selector, mtype, data))


# ---- DNS with the AD bit -------------------------------------------------------------------

class _ADResolver(etrnlib._ZoneResolver):
    """etrnlib's zone resolver that sets AD like a validating resolver: on NOERROR and
    NXDOMAIN answers of every name but those in `insecure`, never on SERVFAIL. (dnslib's
    request.reply() copies the query's flags, AD among them: it is set explicitly here.)"""

    def __init__(self, zone, special, insecure):
        super().__init__(zone, special)
        self.insecure = {n.lower().rstrip(".") for n in insecure}

    def resolve(self, request, handler):
        reply = super().resolve(request, handler)
        qname = str(request.q.qname).rstrip(".").lower()
        ok = reply.header.rcode in (RCODE.NOERROR, RCODE.NXDOMAIN)
        reply.header.ad = 1 if ok and qname not in self.insecure else 0
        return reply


class ADZoneDNS(etrnlib.ZoneDNS):
    def __init__(self, zone, special=None, insecure=()):
        super().__init__(zone, special)
        self.resolver = _ADResolver(zone, special or {}, insecure)


# ---- the test ------------------------------------------------------------------------------

class Delivery:
    """One delivery log line: qid, relay, tls (None when absent), status, text, string."""

    def __init__(self, m):
        self.string = m.string
        self.qid, self.status, self.text = m.group("qid"), m.group("status"), m.group("text")
        fields = dict(f.split("=", 1) for f in (m.group("fields").replace(",", " ")
                                                 + m.group("extra")).split())
        self.relay = fields.get("relay")
        self.tls = fields.get("tls")


class Dane(etrnlib.SharedRelaydCase):
    """One PKI, one DNS server, five sinks and one relayd for the class; every test has
    domains of its own, so the tests do not see each other's mail."""

    @classmethod
    def _certs(cls):
        pki = cls.pki = tlslib.shared_pki()
        ee = pki.self_signed("dane-ee", "elsewhere.test")
        second = pki.self_signed("dane-second", "second.elsewhere.test")
        ta = pki.leaf("dane-ta", "mx-ta.test", sans=["mx-ta2.test", "mx-ta-otherca.test"])
        # Leaf then CA: the trust anchor a digest DANE-TA record names travels in the chain.
        chain = os.path.join(pki.dir, "dane-ta-chain.pem")
        with open(chain, "wb") as f:
            for p in (ta.cert, pki.ca_cert):
                with open(p, "rb") as g:
                    f.write(g.read())
        ta_chain = tlslib.Cert(ta.name, chain, ta.key)
        # Another CA's certificate: a DANE-TA record for it matches nothing the TA MX sends.
        other = pki.self_signed("dane-otherca", "some other CA")
        cls.ee_cert, cls.ta_cert = ee, ta
        cls.digests = {
            "ee": spki_sha256(ee.cert),
            "ca_cert": cert_sha256(pki.ca_cert),
            "ca_spki": spki_sha256(pki.ca_cert),
            "other_cert": cert_sha256(other.cert),
            "ta_spki": spki_sha256(ta.cert),
        }
        return {EE: (ee, True), TA: (ta_chain, True), PLAIN: (None, False),
                SECOND: (second, False), SFAIL: (ee, True)}

    @classmethod
    def _zone(cls, port):
        d = cls.digests
        wrong = hashlib.sha256(b"not the key of any certificate here").digest()

        def t(host):
            return "_%d._tcp.%s" % (port, host)

        zone = {
            # 1. DANE-EE matching; the certificate names elsewhere.test, self-signed.
            "ee-ok.test": [mx("mx-ee-ok.test", 10)],
            "mx-ee-ok.test": [a(EE)],
            t("mx-ee-ok.test"): [tlsa(3, 1, 1, wrong), tlsa(3, 1, 1, d["ee"])],
            # 2. DANE-EE not matching.
            "ee-bad.test": [mx("mx-ee-bad.test", 10)],
            "mx-ee-bad.test": [a(EE)],
            t("mx-ee-bad.test"): [tlsa(3, 1, 1, wrong)],
            # 3. DANE-TA for the CA: full certificate, then SPKI.
            "ta-cert.test": [mx("mx-ta.test", 10)],
            "mx-ta.test": [a(TA)],
            t("mx-ta.test"): [tlsa(2, 0, 1, d["ca_cert"])],
            "ta-spki.test": [mx("mx-ta2.test", 10)],
            "mx-ta2.test": [a(TA)],
            t("mx-ta2.test"): [tlsa(2, 1, 1, d["ca_spki"])],
            # 3b. DANE-TA matching the CA, but the MX name is not in the certificate.
            "ta-noname.test": [mx("mx-ta-noname.test", 10)],
            "mx-ta-noname.test": [a(TA)],
            t("mx-ta-noname.test"): [tlsa(2, 0, 1, d["ca_cert"])],
            # 3c. DANE-TA for a CA that did not sign the certificate (the name fits).
            "ta-otherca.test": [mx("mx-ta-otherca.test", 10)],
            "mx-ta-otherca.test": [a(TA)],
            t("mx-ta-otherca.test"): [tlsa(2, 0, 1, d["other_cert"])],
            # 4. TLSA present, not matching, answer without AD (see INSECURE).
            "insecure.test": [mx("mx-insecure.test", 10)],
            "mx-insecure.test": [a(EE)],
            t("mx-insecure.test"): [tlsa(3, 1, 1, wrong)],
            # 4b. No TLSA at all (NODATA, NXDOMAIN): opportunistic, plaintext when no STARTTLS.
            "notlsa-plain.test": [mx("mx-notlsa-plain.test", 10)],
            "mx-notlsa-plain.test": [a(PLAIN)],
            t("mx-notlsa-plain.test"): [a("192.0.2.1")],  # the name exists: NODATA for TLSA
            "nxtlsa.test": [mx("mx-nxtlsa.test", 10)],
            "mx-nxtlsa.test": [a(EE)],                     # no TLSA name: NXDOMAIN
            # 5. Secure, but only PKIX-TA(0) / PKIX-EE(1) records (unusable for SMTP,
            #    RFC 7672 3.1.3), one of them matching the certificate's key.
            "unusable.test": [mx("mx-unusable.test", 10)],
            "mx-unusable.test": [a(TA)],
            t("mx-unusable.test"): [tlsa(0, 0, 1, wrong), tlsa(1, 1, 1, d["ta_spki"]),
                                    tlsa(1, 1, 1, wrong)],
            # 6. The TLSA lookup of the only MX fails (SERVFAIL).
            "servfail.test": [mx("mx-servfail.test", 10)],
            "mx-servfail.test": [a(SFAIL)],
            # 6b. ... and with a second, less preferred MX whose TLSA answer is NODATA.
            "servfail2.test": [mx("mx-servfail.test", 10), mx("mx-second.test", 20)],
            "mx-second.test": [a(SECOND)],
            t("mx-second.test"): [a("192.0.2.2")],
            # 6c. The TLSA query of the only MX is never answered (timeout).
            "timeout.test": [mx("mx-timeout.test", 10)],
            "mx-timeout.test": [a(SFAIL)],
            # 7. Secure TLSA, and the MX does not offer STARTTLS.
            "plain.test": [mx("mx-plain.test", 10)],
            "mx-plain.test": [a(PLAIN)],
            t("mx-plain.test"): [tlsa(3, 1, 1, d["ee"])],
        }
        special = {t("mx-servfail.test"): "SERVFAIL", t("mx-timeout.test"): "DROP"}
        insecure = {t("mx-insecure.test")}
        return zone, special, insecure

    DOMAINS = ("ee-ok.test", "ee-bad.test", "ta-cert.test", "ta-spki.test", "ta-noname.test",
               "ta-otherca.test", "insecure.test", "notlsa-plain.test", "nxtlsa.test",
               "unusable.test", "servfail.test", "servfail2.test", "timeout.test", "plain.test")

    @classmethod
    def setUpClass(cls):
        specs = cls._certs()
        cls.sinks = tlslib.TLSSinks(specs).start()
        cls.port = cls.sinks.port
        try:
            zone, special, insecure = cls._zone(cls.port)
            cls.dns = ADZoneDNS(zone, special, insecure).start()
        except BaseException:
            cls.sinks.stop()
            raise
        cls.relayd = etrnlib.Relayd(cls.dns.port, cls.port,
                                    {d: {"tls": "dane"} for d in cls.DOMAINS})
        cls.start_shared(cls.relayd)

    # ---- helpers -------------------------------------------------------------------------

    def tlsa_name(self, host):
        return "_%d._tcp.%s" % (self.port, host)

    def hold(self, domain, local="user"):
        """Queues one message for local@domain; returns (rcpt, qid, stored bytes)."""
        rcpt = "%s@%s" % (local, domain)
        qid = self.relayd.send("sender@example.org", [rcpt],
                               etrnlib.make_body("dane to " + domain, "dane test\r\n", rcpt))
        return rcpt, qid, self.relayd.body(qid)

    def release(self, domain):
        """ETRN domain; waits for the run's summary line; returns it (a dict, with mark)."""
        r = self.relayd
        mark = r.mark()
        code, text = r.etrn(domain)
        self.assertIn(code, (250, 253), "ETRN %s: %d %s" % (domain, code, text))
        s = r.wait_flush(domain, seconds=30, after=mark)
        s["mark"] = mark
        return s

    def delivery(self, rcpt, mark):
        m = self.relayd.wait_log(DELIVERY_RE % re.escape(rcpt), after=mark)
        return Delivery(m[-1])

    def tlsa_line(self, domain, host, mark):
        """The `flush domain=D tlsa host=H status=S secure=yes|no records=N` line."""
        m = self.relayd.wait_log(r"flush domain=%s tlsa host=%s status=(\S+) secure=(yes|no) "
                                 r"records=(\d+)" % (re.escape(domain), re.escape(host)),
                                 after=mark)[0]
        return m.group(1), m.group(2), int(m.group(3))

    def messages_for(self, host, domain):
        return [m for m in self.sinks[host].snapshot()
                if any(x.endswith("@" + domain) for x in m.rcpts)]

    def assertTLSAQueried(self, host):
        self.assertTrue([q for q in self.dns.queries_for(self.tlsa_name(host)) if q[1] == "TLSA"],
                        "relayd never asked for TLSA %s" % self.tlsa_name(host))

    def assertDelivered(self, domain, mx_host, ip, tls, verified=None):
        """One message to domain is delivered to the sink at ip via mx_host; tls: True (over
        TLS) or False (plaintext); verified: True/False checks the delivery line's word.
        Returns (delivery line, summary)."""
        rcpt, qid, stored = self.hold(domain)
        s = self.release(domain)
        self.assertEqual((s["messages"], s["sent"], s["deferred"], s["bounced"]),
                         (1, 1, 0, 0), s["line"])
        got = self.messages_for(ip, domain)
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0].rcpts, [rcpt])
        self.assertEqual(got[0].data, stored)
        d = self.delivery(rcpt, s["mark"])
        self.assertEqual(d.status, "sent", d.string)
        self.assertTrue((d.relay or "").startswith("%s[%s]" % (mx_host, ip)), d.string)
        if tls:
            self.assertIsNotNone(got[0].tls, "delivered without TLS")
            version, cipher = got[0].tls
            m = re.match(TLS_FIELD_RE, d.tls or "")
            self.assertTrue(m, "delivery line without tls=VERSION,CIPHER,HOW: %s" % d.string)
            self.assertEqual((m.group(1), m.group(2)), (version, cipher), d.string)
            if verified is not None:
                self.assertEqual(m.group(3), "verified" if verified else "unverified",
                                 d.string)
        else:
            self.assertIsNone(got[0].tls, "delivered over TLS (%s)" % (got[0].tls,))
            self.assertEqual(d.tls, "none", d.string)
        self.assertNotIn(rcpt, self.relayd.rcpts(), "the delivered recipient is still queued")
        self.assertTLSAQueried(mx_host)
        return d, s

    def assertDeferred(self, domain, ip, why_re):
        """One message to domain is released and not delivered: it stays queued, deferred,
        with a last_error matching why_re, byte for byte; the sink at ip got nothing for
        domain. Returns (recipient record, summary)."""
        rcpt, qid, stored = self.hold(domain)
        s = self.release(domain)
        self.assertEqual((s["messages"], s["sent"], s["deferred"], s["bounced"]),
                         (1, 0, 1, 0), s["line"])
        self.assertEqual(self.messages_for(ip, domain), [])
        rc = self.relayd.rcpts()
        self.assertIn(rcpt, rc, "the recipient left the queue")
        rec = rc[rcpt]
        self.assertEqual(rec["id"], qid)
        self.assertEqual(rec["state"], "deferred", rec)
        self.assertEqual(rec["attempts"], 1, rec)
        self.assertRegex(rec["last_error"], why_re, rec)
        self.assertEqual(self.relayd.body(qid), stored, "the queued message changed")
        return rec, s

    # ---- 1. DANE-EE ----------------------------------------------------------------------

    def test_1_dane_ee_match_delivers_verified_whatever_the_name(self):
        d, s = self.assertDelivered("ee-ok.test", "mx-ee-ok.test", EE, tls=True, verified=True)
        self.assertEqual(self.tlsa_line("ee-ok.test", "mx-ee-ok.test", s["mark"]),
                         ("OK", "yes", 2))
        est = self.relayd.wait_log(r"flush domain=ee-ok\.test relay=mx-ee-ok\.test\S* "
                                   r"tls established .* verify=(\S+) policy=dane",
                                   after=s["mark"])[0]
        self.assertEqual(est.group(1), "dane", est.string)
        # The certificate names neither the MX host nor chains to anything relayd trusts.
        self.assertEqual(self.ee_cert.name, "elsewhere.test")

    # ---- 2. DANE-EE not matching -----------------------------------------------------------

    def test_2_dane_ee_mismatch_defers(self):
        before = self.sinks[EE].connections
        rec, s = self.assertDeferred("ee-bad.test", EE, DANE_WHY)
        self.assertEqual(self.tlsa_line("ee-bad.test", "mx-ee-bad.test", s["mark"]),
                         ("OK", "yes", 1))
        # The handshake was tried (the MX was reached) and refused by relayd.
        self.assertGreater(self.sinks[EE].connections, before)
        self.assertFalse(self.relayd.log_lines(r"flush domain=ee-bad\.test .*tls established",
                                               after=s["mark"]))
        self.assertNotIn("user@ee-bad.test", self.sinks[EE].rcpt_log)
        self.assertFalse(self.relayd.log_lines(r"to=<user@ee-bad\.test>, .*status=sent",
                                               after=s["mark"]))
        d = self.delivery("user@ee-bad.test", s["mark"])
        self.assertEqual(d.status, "deferred", d.string)
        self.assertRegex(d.text, DANE_WHY, d.string)

    # ---- 3. DANE-TA ----------------------------------------------------------------------

    def test_3_dane_ta_full_certificate_delivers(self):
        d, s = self.assertDelivered("ta-cert.test", "mx-ta.test", TA, tls=True, verified=True)
        self.assertEqual(self.tlsa_line("ta-cert.test", "mx-ta.test", s["mark"]),
                         ("OK", "yes", 1))
        self.relayd.wait_log(r"flush domain=ta-cert\.test relay=mx-ta\.test\S* "
                             r"tls established .* verify=dane policy=dane", after=s["mark"])

    def test_3_dane_ta_spki_delivers(self):
        d, s = self.assertDelivered("ta-spki.test", "mx-ta2.test", TA, tls=True, verified=True)
        self.relayd.wait_log(r"flush domain=ta-spki\.test relay=mx-ta2\.test\S* "
                             r"tls established .* verify=dane policy=dane", after=s["mark"])

    def test_3_dane_ta_name_mismatch_defers(self):
        # DANE-TA authenticates the issuer; the MX host name must still be in the certificate
        # (RFC 7672 3.2.2).
        self.assertDeferred("ta-noname.test", TA, r"(?i)dane|tlsa|host ?name|name mismatch")

    def test_3_dane_ta_other_ca_defers(self):
        self.assertDeferred("ta-otherca.test", TA, DANE_WHY)

    # ---- 4. insecure TLSA answer ----------------------------------------------------------

    def test_4_insecure_tlsa_is_opportunistic(self):
        d, s = self.assertDelivered("insecure.test", "mx-insecure.test", EE, tls=True,
                                    verified=False)
        self.assertEqual(self.tlsa_line("insecure.test", "mx-insecure.test", s["mark"]),
                         ("OK", "no", 1))
        self.assertFalse(self.relayd.log_lines(r"flush domain=insecure\.test .*verify=dane",
                                               after=s["mark"]))

    def test_4_no_tlsa_nodata_is_opportunistic_plaintext(self):
        d, s = self.assertDelivered("notlsa-plain.test", "mx-notlsa-plain.test", PLAIN,
                                    tls=False)
        st, secure, n = self.tlsa_line("notlsa-plain.test", "mx-notlsa-plain.test", s["mark"])
        self.assertEqual(n, 0)
        self.assertNotEqual(st, "OK")

    def test_4_no_tlsa_nxdomain_is_opportunistic_tls(self):
        d, s = self.assertDelivered("nxtlsa.test", "mx-nxtlsa.test", EE, tls=True,
                                    verified=False)
        st, secure, n = self.tlsa_line("nxtlsa.test", "mx-nxtlsa.test", s["mark"])
        self.assertEqual(n, 0)

    # ---- 5. only unusable records ----------------------------------------------------------

    def test_5_only_pkix_records_tls_unverified(self):
        d, s = self.assertDelivered("unusable.test", "mx-unusable.test", TA, tls=True,
                                    verified=False)
        self.assertEqual(self.tlsa_line("unusable.test", "mx-unusable.test", s["mark"]),
                         ("OK", "yes", 3))
        self.assertFalse(self.relayd.log_lines(r"flush domain=unusable\.test .*verify=dane",
                                               after=s["mark"]))

    # ---- 6. TLSA lookup failure ------------------------------------------------------------

    def test_6_tlsa_servfail_only_mx_defers(self):
        before = self.sinks[SFAIL].connections
        rec, s = self.assertDeferred("servfail.test", SFAIL, TLSA_FAIL_WHY)
        self.assertIn("mx-servfail.test", rec["last_error"], rec)
        st, secure, n = self.tlsa_line("servfail.test", "mx-servfail.test", s["mark"])
        self.assertNotIn(st, ("OK", "ENOENT"), "a SERVFAIL taken for an answer or for NODATA")
        self.assertEqual(n, 0)
        self.assertTLSAQueried("mx-servfail.test")
        self.assertEqual(self.sinks[SFAIL].connections, before,
                         "relayd connected to an MX whose TLSA lookup failed")

    def test_6_tlsa_servfail_skips_to_second_mx(self):
        before = self.sinks[SFAIL].connections
        d, s = self.assertDelivered("servfail2.test", "mx-second.test", SECOND, tls=True,
                                    verified=False)
        st, secure, n = self.tlsa_line("servfail2.test", "mx-second.test", s["mark"])
        self.assertEqual(n, 0)
        self.relayd.wait_log(r"flush domain=servfail2\.test host=mx-servfail\.test "
                             r"tlsa lookup failed", after=s["mark"])
        self.assertEqual(self.sinks[SFAIL].connections, before,
                         "relayd connected to an MX whose TLSA lookup failed")
        self.assertEqual(self.messages_for(SFAIL, "servfail2.test"), [])

    def test_6_tlsa_timeout_only_mx_defers(self):
        before = self.sinks[SFAIL].connections
        rec, s = self.assertDeferred("timeout.test", SFAIL, TLSA_FAIL_WHY)
        self.assertIn("mx-timeout.test", rec["last_error"], rec)
        st, secure, n = self.tlsa_line("timeout.test", "mx-timeout.test", s["mark"])
        self.assertNotIn(st, ("OK", "ENOENT"), "a timeout taken for an answer or for NODATA")
        self.assertTLSAQueried("mx-timeout.test")
        self.assertEqual(self.sinks[SFAIL].connections, before,
                         "relayd connected to an MX whose TLSA lookup timed out")

    # ---- 7. secure TLSA, no STARTTLS --------------------------------------------------------

    def test_7_secure_tlsa_without_starttls_defers(self):
        before = self.sinks[PLAIN].connections
        rec, s = self.assertDeferred("plain.test", PLAIN, NO_STARTTLS_WHY)
        self.assertEqual(self.tlsa_line("plain.test", "mx-plain.test", s["mark"]),
                         ("OK", "yes", 1))
        self.assertGreater(self.sinks[PLAIN].connections, before)
        self.assertNotIn("user@plain.test", self.sinks[PLAIN].rcpt_log,
                         "RCPT sent in plaintext to an MX with secure TLSA records")
        self.assertFalse(self.relayd.log_lines(r"to=<user@plain\.test>, .*status=sent "
                                               r".* tls=none$", after=s["mark"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
