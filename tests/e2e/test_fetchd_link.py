"""fetchd notices the link coming up (netlink) in a network namespace.

Two namespaces made by the test, joined by a veth pair: fetchd's end is in the "inner"
namespace, where relayd also runs on the namespace's own loopback (so ETRN traffic never
leaves namespaces the test made). fetchd runs there in the foreground with debounce 1s.
Taking the link down and up must give one release (seen in fetchd's log and in relayd's
ETRN log line); flapping it five times in quick succession must give at most two releases,
not five. The namespaces are always deleted. Where namespaces cannot be created (not root)
the test says so and skips.

Every wait is bounded. The one deliberate quiet period (checking that no further release
comes after the flapping) is an observation with a deadline, not a synchronisation.
"""

import os
import re
import shutil
import sys
import unittest

import hfharness
from hfharness import HFTestCase
from fetchdlib import Fetchd, Netns, NetnsRelayd, wait_until

RELEASE_RE = r"release reason=(?:link-up|addr-add|default-route)"


class LinkUpTest(HFTestCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("network namespaces need root (CAP_SYS_ADMIN); skipped")
        self.ns = Netns()
        self.addCleanup(self.ns.cleanup)
        self.ns.create()  # raises SkipTest with the reason when this machine cannot
        self.relayd = NetnsRelayd(self.ns.inner, domains={"fetch.test": {"hold": "yes"}})
        self._daemons.append(self.relayd)  # checked (and its log shown) by HFTestCase
        self.addCleanup(self.relayd.stop)  # before the namespaces go (cleanups run LIFO)
        self.relayd.start()
        self.fetchd = Fetchd({"debounce": "1", "interval": "0",
                              "local_mta": "127.0.0.1:%d" % self.relayd.port,
                              "local_mta_wait": "10"},
                             {"hq": {"host": "127.0.0.1", "port": self.relayd.port,
                                     "domains": "fetch.test"}},
                             netns=self.ns.inner)
        self.fetchd.write_config()
        self.addCleanup(self._stop_fetchd)

    def _stop_fetchd(self):
        self.fetchd.stop()
        if self.fetchd.problems:
            sys.stderr.write(self.fetchd.log_text())
            self.fail("; ".join(self.fetchd.problems))
        shutil.rmtree(self.fetchd.dir, ignore_errors=True)

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            f = getattr(self, "fetchd", None)
            if f is not None and len(result.failures) + len(result.errors) > before:
                sys.stderr.write("\n---- fetchd log (%s) ----\n%s---- end ----\n"
                                 % (f.dir, f.log_text()))

    def etrns(self):
        return len(re.findall(r"etrn arg=fetch\.test ", self.relayd.log_text()))

    def releases(self):
        return self.fetchd.count(RELEASE_RE)

    def test_link_up_releases_once_and_flapping_is_debounced(self):
        f = self.fetchd
        f.start("-f")
        try:
            f.wait_log(r"started relays=1 link=netlink debounce=1s")
            # The start itself releases once (a link that was up before fetchd started).
            f.wait_log(r"domain=fetch\.test reply=251 ")
            wait_until(lambda: self.etrns() == 1, 10, "relayd's startup ETRN")

            # Down, then up: one release after the debounce.
            self.ns.link(False)
            self.ns.link(True)
            f.wait_log(RELEASE_RE, seconds=20)
            f.wait_log(r"domain=fetch\.test reply=251 ", count=2, seconds=20)
            wait_until(lambda: self.etrns() == 2, 10, "relayd's ETRN after link-up")
            self.assertEqual(self.releases(), 1, f.log_text())

            # Five quick flaps: the debounce folds them into one release (two at most if
            # the runner's "one more after this run" rule catches a late event).
            for _ in range(5):
                self.ns.link(False)
                self.ns.link(True)
            f.wait_log(RELEASE_RE, count=2, seconds=20)
            f.wait_log(r"domain=fetch\.test reply=251 ", count=3, seconds=20)
            # Quiet period: well past the debounce, no further release may come.
            quiet = re.compile(r"release reason=")
            before = len(quiet.findall(f.log_text()))
            try:
                wait_until(lambda: len(quiet.findall(f.log_text())) > before + 1, 4,
                           "a storm of releases")
                self.fail("more than two releases after five flaps:\n" + f.log_text())
            except AssertionError as e:
                if "timed out" not in str(e):
                    raise
            flap_releases = self.releases() - 1
            self.assertGreaterEqual(flap_releases, 1)
            self.assertLessEqual(flap_releases, 2, f.log_text())
            self.assertLessEqual(self.etrns(), 4)
            self.assertRegex(f.log_text(), r"netlink link-down dev=%s" % self.ns.dev)
            self.assertRegex(f.log_text(), r"netlink link-up dev=%s" % self.ns.dev)
        finally:
            self.assertEqual(f.stop(), 0, f.log_text())


if __name__ == "__main__":
    unittest.main(verbosity=2)
