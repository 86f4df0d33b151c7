"""relayctl stats and the Prometheus metrics endpoint (issue 6).

The counters must follow what happened: SMTP connections, messages accepted (and their
octets), a recipient refused at RCPT, recipients delivered and deferred by flushes, ETRN
replies by code. `stats` (human and --json) and /metrics say the same; /metrics also has a
gauge per queued domain (messages, recipients, bytes, oldest age, held, running flush) that
matches `relayctl queue --json`; any other path is 404.
"""

import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etrnlib import CLIENT_NAME, bound  # noqa: E402
from test_relayctl_inspect import SINK, RelayctlCase  # noqa: E402

COUNTERS = ("connections", "connections_refused", "accepted", "accepted_bytes",
            "rejected_rcpt", "rejected_data", "queue_errors", "delivered", "deferred", "failed",
            "etrn_250", "etrn_251", "etrn_252", "etrn_253", "etrn_458", "etrn_459")

# One sample line of the Prometheus text format 0.0.4: name{labels} value.
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|'
                       r'\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? '
                       r'(-?[0-9.eE+-]+|NaN|[+-]Inf)$')


def parse_metrics(text):
    """Prometheus text -> ({(name, labels): float}, {name: type}); fails on a line that is
    neither a comment nor a well-formed sample."""
    samples, types = {}, {}
    for ln in text.splitlines():
        if not ln:
            continue
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(" ", 3)
            types[name] = typ
            continue
        if ln.startswith("#"):
            continue
        m = SAMPLE_RE.match(ln)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % ln)
        samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples, types


class Stats(RelayctlCase):

    def refused_rcpt(self):
        """One session: a recipient the relay does not serve (550), then QUIT."""
        s = self.relayd.smtp()
        try:
            s.ehlo(CLIENT_NAME)
            self.assertEqual(s.mail("x@example.org")[0], 250)
            code, msg = s.rcpt("someone@not-served.example")
            self.assertEqual(code, 550, msg)
        finally:
            s.quit()

    def test_stats_follow_what_happened(self):
        r = self.relayd
        base = self.stats()
        self.assertEqual(sorted(k for k in base if k in COUNTERS), sorted(COUNTERS), base)
        for k in COUNTERS:
            self.assertIsInstance(base[k], int, k)
            if k != "connections":  # the harness's readiness probe is a connection
                self.assertEqual(base[k], 0, (k, base))

        sent = self.fill()                      # 4 sessions, 4 messages
        self.refused_rcpt()                     # 1 session, 1 recipient refused
        code, text = r.etrn("c.test")           # 1 session; trusted client, 1 pending: 253
        self.assertEqual(code, 253, text)
        r.wait_flush("c.test")                  # refused connection: 1 deferred
        c = self.ok("flush", "a.test", "--wait")  # 3 delivered
        self.assertIn("sent=3", c.out)
        code, text = r.etrn("nothing.example")  # 1 session; not served: 459
        self.assertEqual(code, 459, text)
        code, text = r.etrn("a.test")           # 1 session; nothing pending, trusted: 251
        self.assertEqual(code, 251, text)

        now = self.stats()
        delta = {k: now[k] - base[k] for k in COUNTERS}
        want = dict.fromkeys(COUNTERS, 0)
        want.update(connections=8, accepted=4,
                    accepted_bytes=sum(m["size"] for m in sent.msgs.values()),
                    rejected_rcpt=1, delivered=3, deferred=1, etrn_253=1, etrn_459=1,
                    etrn_251=1)
        self.assertEqual(delta, want)
        self.assertEqual(now["sessions"], 0, now)

        # The human listing: one "name value" line per counter, the same values.
        human = {}
        for ln in self.ok("stats").out.splitlines():
            m = re.match(r"^(\S+)\s+(\d+)$", ln)
            self.assertTrue(m, "stats line %r" % ln)
            human[m.group(1)] = int(m.group(2))
        for k in COUNTERS:
            self.assertEqual(human[k], now[k], k)

        # The same counters on /metrics.
        status, headers, text = self.metrics()
        self.assertEqual(status, 200)
        samples, types = parse_metrics(text)
        for k in COUNTERS:
            if k.startswith("etrn_"):
                key = ("holdfast_etrn_total", '{code="%s"}' % k[5:])
                self.assertEqual(types.get("holdfast_etrn_total"), "counter")
            else:
                key = ("holdfast_%s_total" % k, "")
                self.assertEqual(types.get(key[0]), "counter", key)
            self.assertEqual(samples.get(key), now[k], key)

    def test_metrics_endpoint(self):
        r = self.relayd
        status, headers, text = self.metrics()
        self.assertEqual(status, 200)
        samples, _ = parse_metrics(text)
        self.assertFalse([k for k in samples if k[0] == "holdfast_queue_messages"],
                         "an empty queue has no per-domain gauges: %r" % text)

        sent = self.fill()
        q1, q2, q3, q4 = sent.order
        self.ok("hold", "c.test")
        status, headers, text = self.metrics()
        self.assertEqual(status, 200)
        ctype = {k.lower(): v for k, v in headers.items()}["content-type"]
        self.assertRegex(ctype, r"^text/plain; version=0\.0\.4")
        samples, types = parse_metrics(text)
        self.assertEqual(samples[("holdfast_accepted_total", "")], 4)
        self.assertEqual(types["holdfast_accepted_total"], "counter")
        for g in ("holdfast_queue_messages", "holdfast_queue_recipients", "holdfast_queue_bytes",
                  "holdfast_queue_oldest_age_seconds", "holdfast_queue_held",
                  "holdfast_flush_running"):
            self.assertEqual(types.get(g), "gauge", g)

        now = int(time.time())
        doms = self.queue_by_domain()
        gauged = sorted(lab[len('{domain="'):-2] for (n, lab) in samples
                        if n == "holdfast_queue_messages")
        self.assertEqual(gauged, sorted(doms))
        for d, q in doms.items():
            lab = '{domain="%s"}' % d
            self.assertEqual(samples[("holdfast_queue_messages", lab)], q["messages"], d)
            self.assertEqual(samples[("holdfast_queue_recipients", lab)], q["rcpts"], d)
            self.assertEqual(samples[("holdfast_queue_bytes", lab)], q["bytes"], d)
            age = samples[("holdfast_queue_oldest_age_seconds", lab)]
            self.assertTrue(0 <= age <= now - q["oldest"] + 1, (d, age, q["oldest"]))
            self.assertEqual(samples[("holdfast_queue_held", lab)], 1 if d == "c.test" else 0, d)
            self.assertEqual(samples[("holdfast_flush_running", lab)], 0, d)
        self.assertEqual(samples[("holdfast_queue_messages", '{domain="a.test"}')], 2)
        self.assertEqual(samples[("holdfast_queue_messages", '{domain="sub.b.test"}')], 2)

        # A running flush shows; a flushed domain's gauges go with it.
        sink = self.sinks[SINK]
        sink.hold_data = True
        mark = r.mark()
        self.ok("flush", "a.test")
        sink.wait_for(lambda s: s.data_started >= 1, 10, "the first DATA of the run")
        samples, _ = parse_metrics(self.metrics()[2])
        self.assertEqual(samples[("holdfast_flush_running", '{domain="a.test"}')], 1)
        self.assertEqual(samples[("holdfast_flush_running", '{domain="b.test"}')], 0)
        sink.release()
        r.wait_flush("a.test", after=mark)
        samples, _ = parse_metrics(self.metrics()[2])
        self.assertNotIn(("holdfast_queue_messages", '{domain="a.test"}'), samples)
        self.assertEqual(samples[("holdfast_delivered_total", "")], 3)

        # Other paths and methods: 404.
        for path in ("/other", "/", "/metrics/x", "/metricsx"):
            status, _, body = self.metrics(path)
            self.assertEqual(status, 404, path)
        with socket.create_connection(("127.0.0.1", r.metrics_port), timeout=bound(10)) as s:
            s.sendall(b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
            resp = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                resp += chunk
        self.assertTrue(resp.startswith(b"HTTP/1.0 404 "), resp[:200])
        # relayd is still fine.
        self.assertEqual(self.metrics()[0], 200)


if __name__ == "__main__":
    unittest.main()
