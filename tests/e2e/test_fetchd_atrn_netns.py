"""Scale-out (issue 14): two relayd nodes, MX 10 and MX 20 of branch.test, each holding
what reached it; the customer's fetchd (mode = atrn, no `host`: every MX host of the domain
from DNS) in its own network namespace behind a veth link.

Namespaces made by the test: "inner" holds fetchd, a loopback DNS server (python3-dnslib:
branch.test MX 10 mx1.scale.test, MX 20 mx2.scale.test) and the local MTA (python3-aiosmtpd);
"peer" holds both relayd nodes, whose ODMR listeners are on 10.213.7.1 and 10.213.7.3, the
far end of fetchd's link. Servers inside namespaces run as separate processes
(ns_helper.py). The namespaces are always deleted; without root the test skips.

  - link down while mail is held on both nodes (fetchd's start-up release finds no route and
    gives up after its retries); link up: everything from both nodes reaches
    the local MTA byte-exact (the stored message: relayd's Received: line + what was sent),
    each message once; both queues are empty.
  - one node down: the other is released at once, the down one is retried (fetchd logs the
    retry), started again, and released by the retry; nothing twice.
  - the same with a [relay] section per node (host = each node): the section whose node is
    down is retried on its own; the other is asked once.

Every wait is bounded; traffic stays on the namespaces' own loopbacks and veth link.
"""

import json
import os
import re
import select
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfharness  # noqa: E402
import odmrlib  # noqa: E402
from fetchdlib import Fetchd, Netns, NetnsRelayd, wait_until  # noqa: E402
from hfharness import split_received, timeout  # noqa: E402

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ns_helper.py")
PY = "/usr/bin/python3"
NODE1, NODE2 = "10.213.7.1", "10.213.7.3"
ODMR_PORT = 2366
DNS_PORT = 5353
SINK_PORT = 2525


class NsServer:
    """ns_helper.py MODE ARGS in namespace ns; ready when it prints "ready"."""

    def __init__(self, ns, *args):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, PY, HELPER] + list(args),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout(20))
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.stop()
            raise AssertionError("ns_helper %s did not start: %r" % (args[0], line))

    def stop(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        try:
            p.stdin.close()
            p.wait(timeout(15))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout(10))


def ns_send(ns, port, sender, rcpts, body):
    r = subprocess.run(["ip", "netns", "exec", ns, PY, HELPER, "send", "127.0.0.1", str(port),
                        sender, ",".join(rcpts)], input=body, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout(60))
    if r.returncode != 0:
        raise AssertionError("sending in %s failed: %r" % (ns, r.stdout))


class ATRNScaleOut(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("network namespaces need root (CAP_SYS_ADMIN); skipped")
        self.ns = Netns()
        self.addCleanup(self.ns.cleanup)
        self.ns.create()  # raises SkipTest with the reason when this machine cannot
        self.ns.exec_ip(self.ns.peer, "link", "set", "lo", "up")
        self.ns.exec_ip(self.ns.peer, "addr", "add", NODE2 + "/24", "dev", self.ns.peer_dev)
        self.dir = hfharness.tempfile.mkdtemp(prefix="hf-atrn-ns-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.outdir = os.path.join(self.dir, "mail")
        os.mkdir(self.outdir)
        zone = {"branch.test": [["MX", 10, "mx1.scale.test"], ["MX", 20, "mx2.scale.test"]],
                "mx1.scale.test": [["A", NODE1]], "mx2.scale.test": [["A", NODE2]]}
        self.servers = []
        self.addCleanup(self._stop_servers)
        self.servers.append(NsServer(self.ns.inner, "dns", str(DNS_PORT), json.dumps(zone)))
        self.servers.append(NsServer(self.ns.inner, "sink", str(SINK_PORT), self.outdir))
        auth, cram = odmrlib.write_odmr_files(self.dir)
        self.nodes = []
        self.addCleanup(self._stop_nodes)  # runs before the namespaces go (LIFO)
        for name, addr in (("mx1.scale.test", NODE1), ("mx2.scale.test", NODE2)):
            n = NetnsRelayd(self.ns.peer, conf={"hostname": name, "auth_file": auth,
                                                "cram_file": cram,
                                                "listen_odmr": "%s:%d" % (addr, ODMR_PORT)},
                            domains={"branch.test": {"hold": "yes"}})
            self.nodes.append(n)
            n.start()
        self.fetchd = Fetchd({"debounce": "1", "interval": "0", "local_mta_wait": "10",
                              "local_mta": "127.0.0.1:%d" % SINK_PORT,
                              "dns_servers": "127.0.0.1:%d" % DNS_PORT, "dns_timeout": "2",
                              "retry_limit": "8", "retry_delay": "1", "retry_delay_max": "2"},
                             {}, netns=self.ns.inner)
        pw = os.path.join(self.fetchd.dir, "pw")
        with open(pw, "w") as f:
            f.write(odmrlib.ODMR_USERS["branch"][1] + "\n")  # the CRAM-MD5 secret
        os.chmod(pw, 0o600)
        self.relay_opts = {"port": ODMR_PORT, "domains": "branch.test", "mode": "atrn",
                           "tls": "no", "auth_user": "branch", "auth_password_file": pw}
        self.fetchd.relays["isp"] = dict(self.relay_opts)
        self.fetchd.write_config()
        self.addCleanup(self._stop_fetchd)
        self.sent = []

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        errs = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(t is self for t, _ in errs)

    def _stop_servers(self):
        for s in self.servers:
            s.stop()

    def _stop_nodes(self):
        for n in self.nodes:
            n.stop()
            if self._failed():
                sys.stderr.write("\n---- relayd %s ----\n%s" % (n.conf["hostname"],
                                                            n.log_text()))
            n.cleanup()

    def _stop_fetchd(self):
        self.fetchd.stop()
        if self._failed() or self.fetchd.problems:
            sys.stderr.write("\n---- fetchd log ----\n%s---- end ----\n" % self.fetchd.log_text())
        shutil.rmtree(self.fetchd.dir, ignore_errors=True)
        if self.fetchd.problems:
            self.fail("; ".join(self.fetchd.problems))

    def hold(self, node, tag):
        body = (b"From: s@example.org\r\nTo: u@branch.test\r\nSubject: " + tag.encode() +
                b"\r\n\r\n" + tag.encode() + b" held on one node\r\n..dot\r\n")
        ns_send(self.ns.peer, node.port, "s@example.org", ["u-%s@branch.test" % tag], body)
        self.sent.append(body)

    def arrived(self):
        out = []
        for fn in sorted(os.listdir(self.outdir)):
            if fn.endswith(".json"):
                with open(os.path.join(self.outdir, fn[:-5] + ".eml"), "rb") as f:
                    out.append(f.read())
        return out

    def wait_arrived(self, n):
        wait_until(lambda: len(self.arrived()) >= n, 60, "%d messages at the local MTA" % n)
        got = self.arrived()
        self.assertEqual(len(got), n)
        return sorted(split_received(m)[1] for m in got)

    def queued(self, node):
        return hfharness.relayctl_json("list", queue=node.queue_dir)["messages"]

    def wait_emptied(self, node):
        """relayd commits a release's results after the 250s fetchd saw: wait for them."""
        wait_until(lambda: self.queued(node) == [], 30,
                   "relayd %s's queue to empty" % node.conf["hostname"], poll=0.2)

    def test_link_up_releases_both_nodes_and_retries_one_down(self):
        n1, n2 = self.nodes
        self.hold(n1, "a1")
        self.hold(n1, "a2")
        self.hold(n2, "b1")
        self.hold(n2, "b2")
        self.ns.link(False)
        self.fetchd.start()
        # The start-up release finds no link and gives up after its retries; then the
        # link comes up, and that releases.
        self.fetchd.wait_log(r"relay=isp giving up after 8 retries", 90)
        self.assertEqual(self.arrived(), [])
        self.ns.link(True)
        self.assertEqual(self.wait_arrived(4), sorted(self.sent))
        log = self.fetchd.log_text()
        up = re.search(r"release reason=(?:link-up|addr-add|default-route)", log)
        self.assertIsNotNone(up, log)
        self.assertIn("atrn turned", log[up.end():])
        self.assertNotIn("atrn turned", log[:up.start()])
        self.fetchd.wait_log(r"relay=isp released domains=1 done=1", 60)
        self.fetchd.wait_log(r"relay=isp\[%s\]:%d mx=mx1\.scale\.test domain=branch\.test "
                             r"reply=250 .*verdict=done" % (NODE1, ODMR_PORT), 10)
        self.fetchd.wait_log(r"relay=isp\[%s\]:%d mx=mx2\.scale\.test domain=branch\.test "
                             r"reply=250 .*verdict=done" % (NODE2, ODMR_PORT), 10)
        self.wait_emptied(n1)
        self.wait_emptied(n2)

        # Node 2 down with mail on it: node 1 is released, node 2 retried until it is back.
        self.hold(n2, "b3")
        n2.stop()
        self.hold(n1, "a3")
        released = self.fetchd.count(r"relay=isp released domains=1 done=1")
        retries = self.fetchd.count(r"relay=isp retry=")
        self.ns.link(False)
        self.ns.link(True)
        self.fetchd.wait_log(r"relay=isp retry=", 30, count=retries + 1)
        self.assertEqual(len(self.arrived()), 5)  # a3 from node 1 came at once
        n2.start()
        self.assertEqual(self.wait_arrived(6), sorted(self.sent))
        self.fetchd.wait_log(r"relay=isp released domains=1 done=1", 60, count=released + 1)
        self.wait_emptied(n1)
        self.wait_emptied(n2)


    def test_relay_section_per_node_retried_independently(self):
        # [relay one] host = node 1, [relay two] host = node 2: node 2 is down at the start,
        # so relay two is retried while relay one is released at once and not asked again.
        n1, n2 = self.nodes
        self.fetchd.relays = {"one": dict(self.relay_opts, host=NODE1),
                              "two": dict(self.relay_opts, host=NODE2)}
        self.fetchd.write_config()
        self.hold(n1, "a1")
        self.hold(n2, "b1")
        self.hold(n2, "b2")
        n2.stop()
        self.ns.link(True)
        self.fetchd.start()
        self.fetchd.wait_log(r"relay=two retry=1/", 30)
        self.fetchd.wait_log(r"relay=one released domains=1 done=1 .*retries=0", 30)
        self.assertEqual(len(self.arrived()), 1)
        n2.start()
        self.assertEqual(self.wait_arrived(3), sorted(self.sent))
        self.fetchd.wait_log(r"relay=two released domains=1 done=1 .*retries=[1-9]", 60)
        self.assertEqual(self.fetchd.count(r"relay=one\[%s\]:%d domain=branch\.test reply="
                                           % (NODE1, ODMR_PORT)), 1)
        self.wait_emptied(n1)
        self.wait_emptied(n2)


if __name__ == "__main__":
    unittest.main()
