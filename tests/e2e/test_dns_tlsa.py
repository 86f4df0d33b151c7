"""dns_tlsa_resolve() (DANE, RFC 7672) against a real DNS server on loopback.

A python3-dnslib server (UDP and TCP on one free 127.0.0.1 port, in threads of this
process) answers TLSA queries. Every answer for a name under secure.test carries the AD
bit, as a validating resolver's would (RFC 4035 3.2.3); names under insecure.test get
answers without it. The zones hold single and several records, NODATA, NXDOMAIN, SERVFAIL
(a bogus answer), a server that never answers, CNAME chains in any order, records of other
types and owners to be ignored, a record set too large for UDP, a server that refuses
EDNS with FORMERR, and hand-made malformed answers (truncated RDATA, an RDATA shorter
than its fixed fields, an answer count that lies, a compression loop) that must give
EDNS, not a crash. tests/e2e/dnsprobe -T PORT (HF_DNSPROBE) prints one line per result and
per record; the tests compare those lines exactly and check what the queries asked for
(EDNS0 with DO, the AD bit).

Every wait is bounded (subprocess timeouts, c-ares' own timeouts); no sleeps; only
127.0.0.1.
"""

import glob
import hashlib
import os
import random
import struct
import subprocess
import threading
import sys
import unittest

from dnslib import A, CNAME, QTYPE, RCODE, RD, RR, TLSA, DNSLabel
from dnslib.server import BaseResolver, DNSError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_dns  # noqa: E402  (its DNS server helpers)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HF_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
SANITIZE = os.environ.get("HF_SANITIZE", "0") in ("1", "ON", "on", "true", "TRUE")
SLOW = 4.0 if SANITIZE else 1.0


def _find_probe():
    """HF_DNSPROBE, else the probe next to HF_BIN_DIR (CTest sets it), else the newest
    probe among the build directories of the source tree."""
    env = os.environ.get("HF_DNSPROBE")
    if env:
        return env
    bin_dir = os.environ.get("HF_BIN_DIR")
    if bin_dir:
        return os.path.normpath(os.path.join(bin_dir, "..", "tests", "dnsprobe"))
    cands = glob.glob(os.path.join(SOURCE_DIR, "build*", "tests", "dnsprobe"))
    if not cands:
        return os.path.join(SOURCE_DIR, "build", "tests", "dnsprobe")
    return max(cands, key=os.path.getmtime)


PROBE = _find_probe()

H256 = hashlib.sha256(b"holdfast dane ee key").digest()
H256B = hashlib.sha256(b"holdfast dane ee key, rollover").digest()
H512 = hashlib.sha512(b"holdfast dane ta cert").digest()


def tlsa(owner, usage, selector, mtype, data):
    return RR(DNSLabel(owner), QTYPE.TLSA, rdata=TLSA(usage, selector, mtype, data), ttl=60)


def cname(owner, target):
    return RR(DNSLabel(owner), QTYPE.CNAME, rdata=CNAME(target), ttl=60)


def raw(owner, rtype, data):
    """A record of any type with raw RDATA."""
    return RR(DNSLabel(owner), rtype, rdata=RD(data), ttl=60)


# qname -> the answer section sent for a TLSA query, verbatim. A name present here exists
# (NODATA for other types); NAMES adds names that exist without TLSA records (NODATA);
# any other name is NXDOMAIN unless it is in SPECIAL.
ANSWERS = {
    "_25._tcp.mx.secure.test": [tlsa("_25._tcp.mx.secure.test", 3, 1, 1, H256)],
    "_465._tcp.mx.secure.test": [tlsa("_465._tcp.mx.secure.test", 2, 0, 2, H512)],
    "_25._tcp.mx.insecure.test": [tlsa("_25._tcp.mx.insecure.test", 3, 1, 1, H256)],
    # Several records, in the published order, with an RRSIG (what a DO answer carries)
    # and a TXT record between them, both ignored; an empty association data field is
    # passed on (the caller finds it unusable, RFC 7672 2.2).
    "_25._tcp.multi.secure.test": [
        tlsa("_25._tcp.multi.secure.test", 3, 1, 1, H256),
        raw("_25._tcp.multi.secure.test", QTYPE.RRSIG, b"\x00\x34" + b"\x00" * 30),
        tlsa("_25._tcp.multi.secure.test", 2, 0, 2, H512),
        raw("_25._tcp.multi.secure.test", QTYPE.TXT, b"\x05hello"),
        tlsa("_25._tcp.multi.secure.test", 3, 1, 1, H256B),
        tlsa("_25._tcp.multi.secure.test", 255, 7, 9, b""),
    ],
    # A CNAME chain of two links, published in reverse order, with a decoy TLSA record
    # of an unrelated owner: only the target's record counts.
    "_25._tcp.alias.secure.test": [
        tlsa("_25._tcp.other.secure.test", 2, 0, 1, H256B),
        tlsa("_25._tcp.target.secure.test", 3, 1, 1, H256),
        cname("_25._tcp.mid.secure.test", "_25._tcp.target.secure.test"),
        cname("_25._tcp.alias.secure.test", "_25._tcp.mid.secure.test"),
    ],
    # A CNAME loop: no record for the name asked, and no endless walk.
    "_25._tcp.cloop.insecure.test": [
        cname("_25._tcp.cloop.insecure.test", "_25._tcp.cloop2.insecure.test"),
        cname("_25._tcp.cloop2.insecure.test", "_25._tcp.cloop.insecure.test"),
    ],
    # Records of another owner only: no TLSA for the name asked.
    "_25._tcp.stray.insecure.test": [tlsa("_25._tcp.elsewhere.insecure.test", 3, 1, 1, H256)],
    # An RDATA of two octets: shorter than usage, selector and matching type.
    "_25._tcp.short.insecure.test": [raw("_25._tcp.short.insecure.test", QTYPE.TLSA, b"\x03\x01")],
    # More than 512 octets: truncated over UDP, asked again over TCP.
    "_25._tcp.big.secure.test": [tlsa("_25._tcp.big.secure.test", 2, 0, 2,
                                      hashlib.sha512(b"%d" % i).digest()) for i in range(12)],
    # Answered only without EDNS (see FORMERR_WITH_EDNS).
    "_25._tcp.noedns.insecure.test": [tlsa("_25._tcp.noedns.insecure.test", 3, 1, 1, H256)],
}

NAMES = {"_25._tcp.nodata.secure.test", "_25._tcp.nodata.insecure.test"}

SPECIAL = {
    "_25._tcp.bogus.secure.test": "SERVFAIL",  # how a validating resolver reports bogus
    "_25._tcp.timeout.secure.test": "DROP",
    "_25._tcp.trunc.insecure.test": "TRUNCATED_RDATA",
    "_25._tcp.ancount.insecure.test": "ANCOUNT_LIES",
    "_25._tcp.ptrloop.insecure.test": "POINTER_LOOP",
    "_25._tcp.noedns.insecure.test": "FORMERR_WITH_EDNS",
}


class Query:
    def __init__(self, request, protocol):
        self.name = str(request.q.qname).rstrip(".").lower()
        self.qtype = QTYPE[request.q.qtype]
        self.protocol = protocol
        self.id = request.header.id
        self.ad = bool(request.header.ad)
        self.rd = bool(request.header.rd)
        opt = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
        self.edns = bool(opt)
        self.do = bool(opt and opt[0].ttl & 0x8000)
        self.udp_len = opt[0].rclass if opt else 0


class ZoneResolver(BaseResolver):
    def __init__(self):
        self.lock = threading.Lock()
        self.queries = []

    def resolve(self, request, handler):
        query = Query(request, handler.protocol)
        with self.lock:
            self.queries.append(query)
        qname = query.name
        reply = request.reply()
        # request.reply() copies the query's flags, AD among them: set it as a validating
        # resolver would, for the signed zone only.
        reply.header.ad = 1 if qname.endswith(".secure.test") else 0
        special = SPECIAL.get(qname)
        if special == "DROP":
            raise DNSError("dropped on purpose")
        if special == "SERVFAIL":
            reply.header.ad = 0
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if special == "FORMERR_WITH_EDNS" and query.edns:
            # RFC 6891 7: a responder without EDNS answers FORMERR, without an OPT record.
            reply.header.rcode = RCODE.FORMERR
            return reply
        if special in ("TRUNCATED_RDATA", "ANCOUNT_LIES"):
            reply.add_answer(tlsa(qname, 3, 1, 1, H256))
            return reply
        if qname.startswith(FUZZ_PREFIX):
            # Records of the name itself, a CNAME and others: material for _fuzz.
            reply.add_answer(cname(qname, "_25._tcp.multi.secure.test"))
            for rr in ANSWERS["_25._tcp.multi.secure.test"]:
                reply.add_answer(rr)
            reply.add_answer(tlsa(qname, 3, 1, 1, H256))
            return reply
        if qname not in ANSWERS and qname not in NAMES and special is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if query.qtype == "TLSA":
            for rr in ANSWERS.get(qname, []):
                reply.add_answer(rr)
        return reply


FUZZ_PREFIX = "_25._tcp.fuzz"


def _fuzz(qname, rdata):
    """A seeded mutation of a packed answer (the seed is the number in the name): bytes of
    the answer section flipped, the answer count changed, or the message cut short. The
    header's id and the question stay intact so that c-ares hands the answer on."""
    rng = random.Random(int(qname[len(FUZZ_PREFIX):].split(".")[0]))
    qend = 12 + sum(len(label) + 1 for label in qname.split(".")) + 1 + 4
    msg = bytearray(rdata)
    for _ in range(rng.randint(1, 6)):
        pos = rng.randrange(qend, len(msg))
        msg[pos] = rng.randrange(256) if rng.random() < 0.7 else msg[pos] ^ 0xC0
    if rng.random() < 0.3:
        msg[6:8] = struct.pack("!H", rng.randrange(12))
    if rng.random() < 0.3:
        msg = msg[:rng.randrange(qend, len(msg) + 1)]
    return bytes(msg)


def _mangle(qname, rdata):
    """Breaks a packed answer the way SPECIAL[qname] asks."""
    if qname.startswith(FUZZ_PREFIX):
        return _fuzz(qname, rdata)
    special = SPECIAL.get(qname)
    if special == "TRUNCATED_RDATA":
        # The TLSA record is last: RDLENGTH says 35, ten octets are missing.
        return rdata[:-10]
    if special == "ANCOUNT_LIES":
        return rdata[:6] + struct.pack("!H", 2) + rdata[8:]
    if special == "POINTER_LOOP":
        # One answer record whose owner is a compression pointer to itself.
        hdr = bytearray(rdata[:12])
        hdr[6:8] = struct.pack("!H", 1)
        body = rdata[12:]
        off = len(rdata)
        rr = struct.pack("!H", 0xC000 | off) + struct.pack("!HHIH", 52, 1, 60, 3) + b"\x03\x01\x01"
        return bytes(hdr) + body + rr
    return rdata


class Handler(test_dns.TruncatingHandler):
    """test_dns's handler (the question kept when truncating for UDP), with answers broken on
    purpose for the malformed-answer cases."""

    def mangle(self, request, rdata):
        return _mangle(str(request.q.qname).rstrip(".").lower(), rdata)


def tlsa_line(host, status, secure, nrrs, port=25):
    return "tlsa %s _%d._tcp.%s status %s secure %d nrrs %d" % (host, port, host, status,
                                                                 secure, nrrs)


class DNSTLSATest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(PROBE):
            raise unittest.SkipTest("dnsprobe not built: %s" % PROBE)
        cls.resolver = ZoneResolver()
        cls.port, cls.udp, cls.tcp = test_dns.start_servers(cls.resolver, Handler)

    @classmethod
    def tearDownClass(cls):
        cls.udp.stop()
        cls.tcp.stop()
        cls.udp.server.server_close()
        cls.tcp.server.server_close()

    def probe(self, *args, port=25, timeout_ms=300, tries=2, expect_rc=0):
        cmd = [PROBE, "-s", "127.0.0.1:%d" % self.port, "-t", str(timeout_ms), "-r", str(tries),
               "-T", str(port)]
        cmd += list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60 * SLOW)
        if p.returncode != expect_rc or "Sanitizer" in p.stderr or "runtime error" in p.stderr:
            self.fail("dnsprobe %s: rc=%d\nstdout:\n%s\nstderr:\n%s"
                      % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
        return p.stdout.splitlines()

    def queries_for(self, name):
        with self.resolver.lock:
            return [q for q in self.resolver.queries if q.name == name]

    # ---- answers with records ----

    def test_secure_single_record(self):
        self.assertEqual(self.probe("mx.secure.test"), [
            tlsa_line("mx.secure.test", "OK", 1, 1),
            "rr mx.secure.test 3 1 1 " + H256.hex(),
        ])

    def test_insecure_single_record(self):
        self.assertEqual(self.probe("mx.insecure.test"), [
            tlsa_line("mx.insecure.test", "OK", 0, 1),
            "rr mx.insecure.test 3 1 1 " + H256.hex(),
        ])

    def test_other_port(self):
        self.assertEqual(self.probe("mx.secure.test", port=465), [
            tlsa_line("mx.secure.test", "OK", 1, 1, port=465),
            "rr mx.secure.test 2 0 2 " + H512.hex(),
        ])
        self.assertEqual([q.qtype for q in self.queries_for("_465._tcp.mx.secure.test")],
                         ["TLSA"])

    def test_several_records_in_order_others_ignored(self):
        self.assertEqual(self.probe("multi.secure.test"), [
            tlsa_line("multi.secure.test", "OK", 1, 4),
            "rr multi.secure.test 3 1 1 " + H256.hex(),
            "rr multi.secure.test 2 0 2 " + H512.hex(),
            "rr multi.secure.test 3 1 1 " + H256B.hex(),
            "rr multi.secure.test 255 7 9 -",
        ])

    def test_trailing_dot(self):
        out = self.probe("mx.secure.test.")
        self.assertEqual(out[0], "tlsa mx.secure.test. _25._tcp.mx.secure.test. status OK "
                                 "secure 1 nrrs 1")

    def test_cname_chain_any_order(self):
        self.assertEqual(self.probe("alias.secure.test"), [
            tlsa_line("alias.secure.test", "OK", 1, 1),
            "rr alias.secure.test 3 1 1 " + H256.hex(),
        ])

    def test_cname_loop(self):
        self.assertEqual(self.probe("cloop.insecure.test"),
                         [tlsa_line("cloop.insecure.test", "ENOENT", 0, 0)])

    def test_records_of_other_owner_ignored(self):
        self.assertEqual(self.probe("stray.insecure.test"),
                         [tlsa_line("stray.insecure.test", "ENOENT", 0, 0)])

    def test_large_set_over_tcp(self):
        out = self.probe("big.secure.test")
        self.assertEqual(out[0], tlsa_line("big.secure.test", "OK", 1, 12))
        self.assertEqual(out[1:], ["rr big.secure.test 2 0 2 " + hashlib.sha512(b"%d" % i)
                                   .hexdigest() for i in range(12)])
        self.assertIn("tcp", [q.protocol for q in self.queries_for("_25._tcp.big.secure.test")])

    # ---- what the query asks for ----

    def test_query_asks_for_dnssec(self):
        self.probe("mx.insecure.test")
        qs = self.queries_for("_25._tcp.mx.insecure.test")
        self.assertTrue(qs)
        for q in qs:
            self.assertEqual((q.qtype, q.rd, q.ad, q.edns, q.do), ("TLSA", True, True, True, True))
            self.assertGreaterEqual(q.udp_len, 512)

    def test_formerr_retries_without_edns(self):
        self.assertEqual(self.probe("noedns.insecure.test"), [
            tlsa_line("noedns.insecure.test", "OK", 0, 1),
            "rr noedns.insecure.test 3 1 1 " + H256.hex(),
        ])
        qs = self.queries_for("_25._tcp.noedns.insecure.test")
        self.assertEqual([(q.edns, q.do, q.ad) for q in qs],
                         [(True, True, True), (False, False, True)])

    # ---- no records ----

    def test_nodata(self):
        # Two lookups in parallel: they finish in whichever order the answers arrive.
        self.assertEqual(sorted(self.probe("nodata.secure.test", "nodata.insecure.test")), sorted([
            tlsa_line("nodata.secure.test", "ENOENT", 1, 0),
            tlsa_line("nodata.insecure.test", "ENOENT", 0, 0),
        ]))

    def test_nxdomain(self):
        self.assertEqual(sorted(self.probe("nx.secure.test", "nx.insecure.test")), sorted([
            tlsa_line("nx.secure.test", "ENOENT", 1, 0),
            tlsa_line("nx.insecure.test", "ENOENT", 0, 0),
        ]))

    # ---- failures ----

    def test_servfail_is_temporary(self):
        self.assertEqual(self.probe("bogus.secure.test"),
                         [tlsa_line("bogus.secure.test", "EDNSTEMP", 0, 0)])

    def test_timeout_is_temporary(self):
        self.assertEqual(self.probe("timeout.secure.test", timeout_ms=100, tries=1),
                         [tlsa_line("timeout.secure.test", "EDNSTEMP", 0, 0)])

    def test_malformed_answers(self):
        names = ["trunc.insecure.test", "short.insecure.test", "ancount.insecure.test",
                 "ptrloop.insecure.test"]
        self.assertEqual(sorted(self.probe(*names)),
                         sorted(tlsa_line(n, "EDNS", 0, 0) for n in names))

    def test_mutated_answers(self):
        """Seeded mutations of a valid answer: any of the defined outcomes, never a crash
        or a sanitizer report (probe() checks both), and every callback exactly once."""
        seen = set()
        for batch in range(4):
            names = ["fuzz%d.insecure.test" % (batch * 32 + i) for i in range(32)]
            out = self.probe(*names)
            lines = [line for line in out if line.startswith("tlsa ")]
            self.assertEqual(len(lines), 32, out)
            for line in lines:
                self.assertIn(line.split()[4], ("OK", "ENOENT", "EDNS", "EDNSTEMP"), line)
                seen.add(line.split()[4])
            for line in out:
                if line.startswith("rr "):
                    self.assertRegex(line, r"^rr \S+ \d+ \d+ \d+ ([0-9a-f]+|-)$")
        # The mutations reach the parser: some answers still parse, some do not.
        self.assertLessEqual({"OK", "EDNS"}, seen)

    def test_refused_at_once(self):
        long_host = ".".join(["a" * 50] * 5)  # 254 octets: too long with "_25._tcp."
        out = self.probe("127.0.0.1", "[127.0.0.1]", "::1", "", long_host, "mx.secure.test")
        self.assertEqual(out[:5], [
            "submit 127.0.0.1 EADDR",
            "submit [127.0.0.1] EADDR",
            "submit ::1 EADDR",
            "submit  EADDR",
            "submit %s EADDR" % long_host,
        ])
        self.assertEqual(out[5], tlsa_line("mx.secure.test", "OK", 1, 1))
        self.assertEqual(self.probe("mx.secure.test", port=0), ["submit mx.secure.test EINVAL"])
        self.assertEqual(self.probe("mx.secure.test", port=65536),
                         ["submit mx.secure.test EINVAL"])

    def test_label_too_long_refused(self):
        host = "b" * 64 + ".secure.test"
        self.assertEqual(self.probe(host, "mx.secure.test")[0], "submit %s EADDR" % host)

    # ---- parallel lookups, cancellation ----

    def test_parallel_lookups_distinct_ids(self):
        names = ["mx.secure.test", "mx.insecure.test", "multi.secure.test", "nx.insecure.test",
                 "nodata.secure.test", "bogus.secure.test", "alias.secure.test"]
        with self.resolver.lock:
            before = len(self.resolver.queries)
        out = self.probe(*names)
        status = {line.split()[1]: line for line in out if line.startswith("tlsa ")}
        self.assertEqual(status["mx.secure.test"], tlsa_line("mx.secure.test", "OK", 1, 1))
        self.assertEqual(status["mx.insecure.test"], tlsa_line("mx.insecure.test", "OK", 0, 1))
        self.assertEqual(status["multi.secure.test"], tlsa_line("multi.secure.test", "OK", 1, 4))
        self.assertEqual(status["nx.insecure.test"], tlsa_line("nx.insecure.test", "ENOENT", 0, 0))
        self.assertEqual(status["bogus.secure.test"],
                         tlsa_line("bogus.secure.test", "EDNSTEMP", 0, 0))
        self.assertEqual(len([line for line in out if line.startswith("rr ")]), 1 + 1 + 4 + 1)
        with self.resolver.lock:
            ids = [q.id for q in self.resolver.queries[before:] if q.protocol == "udp"
                   and q.name != "_25._tcp.bogus.secure.test"]
        self.assertEqual(len(ids), len(set(ids)), "query ids reused: %r" % ids)

    def test_free_cancels_pending(self):
        out = self.probe("-c", "mx.secure.test", "timeout.secure.test")
        self.assertEqual(sorted(out), sorted([
            tlsa_line("mx.secure.test", "ECANCELED", 0, 0),
            tlsa_line("timeout.secure.test", "ECANCELED", 0, 0),
        ]))

    def test_free_from_callback(self):
        # The first answer frees the resolver. timeout.secure.test never answers, so the
        # first callback is mx.secure.test's as long as its per-try timeout cannot run out
        # first: 30 s, which the test never waits for (the free cancels it).
        out = self.probe("-f", "-t", "30000", "mx.secure.test", "timeout.secure.test")
        self.assertEqual(out[:2], [tlsa_line("mx.secure.test", "OK", 1, 1),
                                   "rr mx.secure.test 3 1 1 " + H256.hex()])
        self.assertEqual(out[2:], [tlsa_line("timeout.secure.test", "ECANCELED", 0, 0)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
