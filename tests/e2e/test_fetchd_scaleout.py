"""Scale-out (issue 14): an ISP runs two relayd nodes as the MX hosts of a customer domain,
each holding what reached it; the customer's fetchd pulls from both with ATRN (RFC 2645).

Network namespaces made by the test: `peer` holds the two relayd nodes (ODMR listeners on
10.213.7.1 and 10.213.7.3, their SMTP ports on the namespace's loopback), `inner` holds
fetchd and its local MTA (python3-aiosmtpd, nssink.py), joined by a veth pair whose inner
end starts down. Nothing is added to the host's namespace.

  - link-up: fetchd releases from both nodes in parallel; every message of both arrives at
    the local MTA byte-exact (as relayctl shows it), exactly once; both queues are empty.
  - one node down at link-up: the other is released at once; the down one is retried with
    the backoff and released once it is back, with nothing twice.
Where namespaces cannot be made (not root) the test says so and skips. Every wait is bounded.
"""

import base64
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfharness  # noqa: E402
import odmrlib  # noqa: E402
from fetchdlib import Fetchd, Netns, NetnsRelayd, timeout, wait_until  # noqa: E402
from hfharness import HFTestCase, free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NODES = {"mx10": "10.213.7.1", "mx20": "10.213.7.3"}
DOMAIN = "cust.test"

INJECT = r'''
import smtplib, sys
port, n, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for i in range(n):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("isp-inbound.test")
    body = ("From: <s@example.org>\r\nTo: <u%d@cust.test>\r\nSubject: %s %d\r\n\r\n"
            "held on %s, message %d\r\n.leading dot\r\n" % (i, tag, i, tag, i))
    s.sendmail("s@example.org", ["u%d@cust.test" % i], body)
    s.quit()
print("ok")
'''


class ScaleOut(HFTestCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("network namespaces need root (CAP_SYS_ADMIN); skipped")
        self.ns = Netns()
        self.addCleanup(self.ns.cleanup)
        self.ns.create()  # raises SkipTest with the reason when this machine cannot
        self.ns.exec_ip(self.ns.peer, "link", "set", "lo", "up")
        self.ns.exec_ip(self.ns.peer, "addr", "add", NODES["mx20"] + "/24", "dev",
                        self.ns.peer_dev)
        self.tmp = tempfile.mkdtemp(prefix="hf-scaleout-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.auth, self.cram = odmrlib.write_odmr_files(self.tmp)
        self.nodes = {}
        for name, addr in NODES.items():
            port = free_port()
            r = NetnsRelayd(self.ns.peer, domains={DOMAIN: {"hold": "yes"}},
                            conf={"listen_odmr": "%s:%d" % (addr, port),
                                  "auth_file": self.auth, "cram_file": self.cram})
            r.odmr_port = port
            self._daemons.append(r)
            self.addCleanup(r.stop)  # before the namespaces go (cleanups run LIFO)
            self.nodes[name] = r
        self.sink_dir = os.path.join(self.tmp, "local-mta")
        os.mkdir(self.sink_dir)
        self.sink_port = free_port()
        self.sink = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.inner, "/usr/bin/python3",
             os.path.join(HERE, "nssink.py"), "127.0.0.1", str(self.sink_port), self.sink_dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.addCleanup(self._stop_sink)
        line = self.sink.stdout.readline().decode().strip()
        if line != "ready":
            self.fail("the local MTA in the namespace did not start: %r" % line)

    def _stop_sink(self):
        if self.sink.poll() is None:
            self.sink.terminate()
            try:
                self.sink.wait(timeout(10))
            except subprocess.TimeoutExpired:
                self.sink.kill()
                self.sink.wait(timeout(10))

    def hold(self, name, n):
        """n messages for cust.test into node name, over SMTP inside the namespace; returns
        the stored bytes of each, as relayctl shows them."""
        r = self.nodes[name]
        p = subprocess.run(["ip", "netns", "exec", self.ns.peer, "/usr/bin/python3", "-c",
                            INJECT, str(r.port), str(n), name], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout(60))
        self.assertEqual(p.stdout.strip(), b"ok", p.stderr.decode("utf-8", "replace"))
        return [r.relayctl("show", m["id"], "--body").stdout for m in self.listed(name)]

    def listed(self, name):
        r = self.nodes[name]
        return json.loads(r.relayctl("list", "--json").stdout.decode())["messages"]

    def fetchd(self):
        path = os.path.join(self.tmp, "cram.secret")
        with open(path, "w") as f:
            f.write(odmrlib.ODMR_USERS["branch"][1] + "\n")
        os.chmod(path, 0o600)
        relays = {}
        for name, addr in NODES.items():
            relays[name] = {"host": addr, "port": self.nodes[name].odmr_port, "mode": "atrn",
                            "tls": "no", "domains": DOMAIN, "auth_user": "branch",
                            "auth_password_file": path}
        f = Fetchd({"debounce": "1", "interval": "0", "retry_delay": "1",
                    "retry_delay_max": "2", "retry_limit": "1000",
                    "local_mta": "127.0.0.1:%d" % self.sink_port}, relays, netns=self.ns.inner)
        f.write_config()
        self.addCleanup(self._stop_fetchd, f)
        return f

    def _stop_fetchd(self, f):
        f.stop()
        if f.problems:
            sys.stderr.write(f.log_text())
            self.fail("; ".join(f.problems))
        shutil.rmtree(f.dir, ignore_errors=True)

    def arrived(self):
        out = []
        for p in sorted(glob.glob(os.path.join(self.sink_dir, "msg-*.json"))):
            with open(p) as f:
                out.append(base64.b64decode(json.load(f)["data"]))
        return out

    def wait_arrived(self, n, f):
        wait_until(lambda: len(self.arrived()) >= n, 60,
                   "%d messages at the local MTA\n%s" % (n, f.log_text()))
        return self.arrived()

    def add_user(self):
        """The customer's account lists cust.test (odmrlib's "branch" user lists other
        domains): rewrite auth_file before the nodes start."""
        with open(self.auth, "w") as fh:
            fh.write(odmrlib.tlslib.credentials_line("branch", odmrlib.ODMR_USERS["branch"][0],
                                                     DOMAIN) + "\n")
        os.chmod(self.auth, 0o600)

    def wait_node_log(self, name, pattern, seconds=60):
        rx = re.compile(pattern)
        r = self.nodes[name]
        wait_until(lambda: rx.search(r.log_text()), seconds,
                   "%r in %s's log\n%s" % (pattern, name, r.log_text()))

    def test_link_up_releases_both_nodes(self):
        self.add_user()
        for r in self.nodes.values():
            r.start()
        held = self.hold("mx10", 3) + self.hold("mx20", 2)
        self.assertEqual(len(held), 5)
        f = self.fetchd()
        f.start("-f")
        f.wait_log(r"started relays=2 ")
        self.ns.link(True)
        got = self.wait_arrived(5, f)
        for name in self.nodes:
            self.wait_node_log(name, r"atrn done user=branch .*domains=cust\.test .* sent=\d+ "
                               r"deferred=0 bounced=0")
        self.assertEqual(sorted(got), sorted(held))  # byte-exact, each exactly once
        for name in self.nodes:
            wait_until(lambda: self.listed(name) == [], 30, "%s's queue empty" % name)
        self.assertEqual(len(self.arrived()), 5)

    def test_one_node_down_is_retried(self):
        self.add_user()
        for r in self.nodes.values():
            r.start()
        held10 = self.hold("mx10", 2)
        held20 = self.hold("mx20", 2)
        self.nodes["mx20"].stop()  # its queue stays on disk
        f = self.fetchd()
        f.start("-f")
        f.wait_log(r"started relays=2 ")
        self.ns.link(True)
        got = self.wait_arrived(2, f)
        self.assertEqual(sorted(got), sorted(held10))
        rx = re.compile(r"relay=mx20\[\S+ connect failed err=ECONNREFUSED")
        wait_until(lambda: rx.search(f.log_text()), 60,
                   "fetchd's failure with mx20 down\n" + f.log_text())
        self.nodes["mx20"].start()
        got = self.wait_arrived(4, f)
        self.assertEqual(sorted(got), sorted(held10 + held20))
        self.wait_node_log("mx20", r"atrn done user=branch .* sent=2 deferred=0 bounced=0")
        wait_until(lambda: self.listed("mx20") == [], 30, "mx20's queue empty")
        self.assertEqual(len(self.arrived()), 4)


if __name__ == "__main__":
    unittest.main()
