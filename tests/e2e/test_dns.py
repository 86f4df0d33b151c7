"""dns.c and mx.c against a real DNS server on loopback.

A python3-dnslib server (UDP and TCP on one free 127.0.0.1 port, in threads of this
process) serves small test zones: MX with ties and both families, NODATA (implicit MX),
NXDOMAIN, SERVFAIL, a server that never answers, a null MX, the relay as one of the MX
hosts by name and by address, broken exchangers, and an MX set too large for UDP (the
answer is truncated, c-ares retries over TCP). tests/e2e/dnsprobe (HF_DNSPROBE) resolves
names with dns_mx_resolve()/dns_addr_resolve() and prints the result and the mx plan one
line per fact; the tests compare those lines exactly.

Every wait is bounded (subprocess timeouts, c-ares' own timeouts); no sleeps; only
127.0.0.1.
"""

import os
import socket
import subprocess
import threading
import unittest

from dnslib import AAAA, A, MX, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSError, DNSHandler, DNSLogger, DNSServer

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HF_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
SANITIZE = os.environ.get("HF_SANITIZE", "0") in ("1", "ON", "on", "true", "TRUE")
SLOW = 4.0 if SANITIZE else 1.0


def _find_probe():
    env = os.environ.get("HF_DNSPROBE")
    if env:
        return env
    for cand in ("build", "build-dns", "build-e2e"):
        p = os.path.join(SOURCE_DIR, cand, "tests", "dnsprobe")
        if os.path.exists(p):
            return p
    bin_dir = os.environ.get("HF_BIN_DIR")
    if bin_dir:
        return os.path.join(bin_dir, "..", "tests", "dnsprobe")
    return os.path.join(SOURCE_DIR, "build", "tests", "dnsprobe")


PROBE = _find_probe()

# name -> list of (qtype, rdata). A name present here exists (NOERROR/NODATA for other
# types); any other name is NXDOMAIN unless it is in SPECIAL.
ZONE = {
    # Two hosts at 10 (a tie), one at 20 with both families.
    "mx.test": [("MX", MX("mx1.mx.test", 10)), ("MX", MX("mx2.mx.test", 20)),
                ("MX", MX("mx1b.mx.test", 10))],
    "mx1.mx.test": [("A", A("127.0.0.2"))],
    "mx1b.mx.test": [("A", A("127.0.0.3")), ("A", A("127.0.0.13"))],
    "mx2.mx.test": [("A", A("127.0.0.4")), ("AAAA", AAAA("::1"))],
    # NODATA for MX: the implicit MX.
    "nomx.test": [("A", A("127.0.0.5"))],
    # A name with MX only: no address (dns_addr_resolve: ENOENT).
    "noaddr.test": [("MX", MX("mx1.mx.test", 10))],
    # RFC 7505 null MX.
    "null.test": [("MX", MX(".", 0))],
    # The relay (relay.holdfast.test) is the 10; only the 5 remains.
    "self.test": [("MX", MX("relay.holdfast.test", 10)), ("MX", MX("best.self.test", 5)),
                  ("MX", MX("worse.self.test", 20))],
    "best.self.test": [("A", A("127.0.0.6"))],
    "worse.self.test": [("A", A("127.0.0.7"))],
    "relay.holdfast.test": [("A", A("127.0.0.9"))],
    # The best MX is the relay, known by its address only.
    "selfaddr.test": [("MX", MX("a.selfaddr.test", 10)), ("MX", MX("b.selfaddr.test", 20))],
    "a.selfaddr.test": [("A", A("127.0.0.9"))],
    "b.selfaddr.test": [("A", A("127.0.0.8"))],
    # One exchanger does not exist, the other does.
    "broken.test": [("MX", MX("missing.broken.test", 10)), ("MX", MX("ok.broken.test", 20))],
    "ok.broken.test": [("A", A("127.0.0.10"))],
    # The only exchanger's address lookups fail with SERVFAIL.
    "tempmx.test": [("MX", MX("sf.tempmx.test", 10))],
    # More MX records than fit in 512 octets of UDP and than dns.c keeps (32).
    "big.test": [("MX", MX("host%02d.big.test" % i, 100 - i)) for i in range(40)],
}
for _i in range(40):
    ZONE["host%02d.big.test" % _i] = [("A", A("127.0.1.%d" % _i))]

SPECIAL = {
    "fail.test": "SERVFAIL",
    "sf.tempmx.test": "SERVFAIL",
    "timeout.test": "DROP",
}


class ZoneResolver(BaseResolver):
    def __init__(self):
        self.lock = threading.Lock()
        self.queries = []  # (name, type, protocol)

    def resolve(self, request, handler):
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((qname, qtype, handler.protocol))
        reply = request.reply()
        special = SPECIAL.get(qname)
        if special == "DROP":
            raise DNSError("dropped on purpose")
        if special == "SERVFAIL":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if qname not in ZONE:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, rdata in ZONE[qname]:
            if rtype == qtype:
                reply.add_answer(RR(DNSLabel(qname), QTYPE.reverse[rtype], rdata=rdata, ttl=60))
        return reply


class TruncatingHandler(DNSHandler):
    """RFC 1035 4.2.1: a UDP answer over 512 octets is sent truncated (TC set), and the
    client asks again over TCP. dnslib's own truncation drops the question section, which
    c-ares rightly refuses to match to its query, so the question is kept here."""

    def mangle(self, request, rdata):
        """Hook for tests that break answers on purpose (test_dns_tlsa.py); here: none."""
        return rdata

    def get_reply(self, data):
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        rdata = self.mangle(request, reply.pack())
        if self.protocol == "udp" and len(rdata) > 512:
            header = DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1)
            rdata = DNSRecord(header, q=reply.q).pack()
        return rdata


class QuietLogger(DNSLogger):
    def __init__(self):
        super().__init__(log="-request,-reply,-truncated,-recv,-send,-data,-error")


def start_servers(resolver, handler=TruncatingHandler):
    """UDP and TCP servers on the same free port; a bounded number of tries."""
    last = None
    for _ in range(20):
        udp = DNSServer(resolver, port=0, address="127.0.0.1", logger=QuietLogger(),
                        handler=handler)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, port=port, address="127.0.0.1", tcp=True,
                            logger=QuietLogger(), handler=handler)
        except OSError as e:
            udp.server.server_close()
            last = e
            continue
        udp.start_thread()
        tcp.start_thread()
        return port, udp, tcp
    raise RuntimeError("no free port for UDP and TCP: %s" % last)


class DNSTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(PROBE):
            raise unittest.SkipTest("dnsprobe not built: %s" % PROBE)
        cls.resolver = ZoneResolver()
        cls.port, cls.udp, cls.tcp = start_servers(cls.resolver)

    @classmethod
    def tearDownClass(cls):
        cls.udp.stop()
        cls.tcp.stop()
        cls.udp.server.server_close()
        cls.tcp.server.server_close()

    def probe(self, *args, timeout_ms=300, tries=2, expect_rc=0):
        cmd = [PROBE, "-s", "127.0.0.1:%d" % self.port, "-t", str(timeout_ms), "-r", str(tries)]
        cmd += list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60 * SLOW)
        if p.returncode != expect_rc or "Sanitizer" in p.stderr or "runtime error" in p.stderr:
            self.fail("dnsprobe %s: rc=%d\nstdout:\n%s\nstderr:\n%s"
                      % (" ".join(args), p.returncode, p.stdout, p.stderr))
        return p.stdout.splitlines()

    def queries_for(self, name):
        with self.resolver.lock:
            return [q for q in self.resolver.queries if q[0] == name]

    # ---- MX lookups and plans ----

    def test_mx_ordered_with_both_families(self):
        out = self.probe("mx.test")
        self.assertEqual(out, [
            "mx mx.test status OK implicit 0",
            "host mx.test mx1.mx.test 10 OK 127.0.0.2",
            "host mx.test mx2.mx.test 20 OK 127.0.0.4,::1",
            "host mx.test mx1b.mx.test 10 OK 127.0.0.3,127.0.0.13",
            "plan mx.test OK",
            # Ties keep their order (the probe gives no random function); every address of
            # a host before the next host; A before AAAA.
            "attempt mx.test mx1.mx.test 10 127.0.0.2",
            "attempt mx.test mx1b.mx.test 10 127.0.0.3",
            "attempt mx.test mx1b.mx.test 10 127.0.0.13",
            "attempt mx.test mx2.mx.test 20 127.0.0.4",
            "attempt mx.test mx2.mx.test 20 ::1",
        ])

    def test_implicit_mx_on_nodata(self):
        out = self.probe("nomx.test")
        self.assertEqual(out, [
            "mx nomx.test status OK implicit 1",
            "host nomx.test nomx.test 0 OK 127.0.0.5",
            "plan nomx.test OK",
            "attempt nomx.test nomx.test 0 127.0.0.5",
        ])

    def test_nxdomain_is_permanent(self):
        self.assertEqual(self.probe("nx.test"), ["mx nx.test status EDNS implicit 0"])

    def test_servfail_is_temporary(self):
        self.assertEqual(self.probe("fail.test"), ["mx fail.test status EDNSTEMP implicit 0"])

    def test_timeout_is_temporary(self):
        out = self.probe("timeout.test", timeout_ms=100, tries=1)
        self.assertEqual(out, ["mx timeout.test status EDNSTEMP implicit 0"])

    def test_null_mx(self):
        out = self.probe("null.test")
        self.assertEqual(out, [
            "mx null.test status OK implicit 0",
            "host null.test . 0 ENULLMX -",
            "plan null.test ENULLMX",
        ])
        # RFC 7505: the "." target is never looked up.
        self.assertEqual([q for q in self.resolver.queries if q[0] in ("", ".")], [])

    def test_self_by_name_keeps_only_better_hosts(self):
        out = self.probe("-n", "Relay.Holdfast.Test.", "self.test")
        self.assertIn("plan self.test OK", out)
        self.assertEqual([line for line in out if line.startswith("attempt")],
                         ["attempt self.test best.self.test 5 127.0.0.6"])

    def test_self_by_address_best_mx_is_us(self):
        out = self.probe("-i", "127.0.0.9", "selfaddr.test")
        self.assertIn("host selfaddr.test a.selfaddr.test 10 OK 127.0.0.9", out)
        self.assertIn("plan selfaddr.test ELOOP", out)
        self.assertEqual([line for line in out if line.startswith("attempt")], [])

    def test_missing_exchanger_is_skipped(self):
        out = self.probe("broken.test")
        self.assertIn("host broken.test missing.broken.test 10 EDNS -", out)
        self.assertEqual([line for line in out if line.startswith("attempt")],
                         ["attempt broken.test ok.broken.test 20 127.0.0.10"])

    def test_exchanger_servfail_is_temporary(self):
        out = self.probe("tempmx.test")
        self.assertEqual(out, [
            "mx tempmx.test status OK implicit 0",
            "host tempmx.test sf.tempmx.test 10 EDNSTEMP -",
            "plan tempmx.test EDNSTEMP",
        ])

    def test_large_answer_over_tcp_keeps_best_32(self):
        out = self.probe("big.test")
        hosts = [line for line in out if line.startswith("host ")]
        self.assertEqual(len(hosts), 32)
        attempts = [line.split()[2] for line in out if line.startswith("attempt")]
        # Preferences 100 - i: host39 is the best, host08 the 32nd.
        self.assertEqual(attempts, ["host%02d.big.test" % i for i in range(39, 7, -1)])
        self.assertIn(("big.test", "MX", "tcp"), self.queries_for("big.test"))

    def test_address_literal_domain(self):
        out = self.probe("[127.0.0.7]")
        self.assertEqual(out, [
            "mx [127.0.0.7] status OK implicit 1",
            "host [127.0.0.7] [127.0.0.7] 0 OK 127.0.0.7",
            "plan [127.0.0.7] OK",
            "attempt [127.0.0.7] [127.0.0.7] 0 127.0.0.7",
        ])

    def test_bad_domain_refused_at_once(self):
        self.assertEqual(self.probe("a" * 300), ["submit %s EADDR" % ("a" * 300)])

    def test_parallel_lookups(self):
        out = self.probe("mx.test", "nx.test", "nomx.test", "fail.test")
        for line in ("mx mx.test status OK implicit 0", "mx nx.test status EDNS implicit 0",
                     "mx nomx.test status OK implicit 1",
                     "mx fail.test status EDNSTEMP implicit 0"):
            self.assertIn(line, out)

    # ---- cancellation by dns_free ----

    def test_free_cancels_pending(self):
        out = self.probe("-c", "mx.test", "timeout.test", "[127.0.0.1]")
        self.assertEqual(sorted(out), sorted([
            "mx mx.test status ECANCELED implicit 0",
            "mx timeout.test status ECANCELED implicit 0",
            "mx [127.0.0.1] status ECANCELED implicit 0",
        ]))

    def test_free_from_callback(self):
        # The literal is answered from a zero timer, which libuv runs before it polls for
        # the DNS answers: it is always first, and its callback frees the resolver.
        out = self.probe("-f", "-t", "30000", "[127.0.0.1]", "timeout.test", "mx.test")
        self.assertEqual(out[0], "mx [127.0.0.1] status OK implicit 1")
        self.assertIn("mx timeout.test status ECANCELED implicit 0", out)
        self.assertIn("mx mx.test status ECANCELED implicit 0", out)

    # ---- dns_addr_resolve ----

    def test_addr(self):
        out = self.probe("-a", "mx2.mx.test", "nx.test", "noaddr.test", "fail.test",
                         "127.0.0.1", "[::1]", "localhost")
        self.assertEqual(sorted(out), sorted([
            "addr mx2.mx.test status OK 127.0.0.4,::1",
            "addr nx.test status EDNS -",
            "addr noaddr.test status ENOENT -",
            "addr fail.test status EDNSTEMP -",
            "addr 127.0.0.1 status OK 127.0.0.1",
            "addr [::1] status OK ::1",
            "addr localhost status OK 127.0.0.1,::1",
        ]))
        # Literals and localhost never reach the server.
        self.assertEqual(self.queries_for("localhost"), [])
        self.assertEqual(self.queries_for("127.0.0.1"), [])

    def test_bad_server_list(self):
        p = subprocess.run([PROBE, "-s", "not a server", "mx.test"], capture_output=True,
                           text=True, timeout=60 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), ["new ECONFIG"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
