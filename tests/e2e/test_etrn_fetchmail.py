"""fetchmail's ETRN mode as the client (fetchmail --protocol ETRN --fetchdomains ...).

fetchmail only asks; the mail goes to the domains' MX (aiosmtpd sinks found through the
loopback DNS server), never back over fetchmail's connection.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import a, bound, mx  # noqa: E402

BRANCH_MX = "127.0.0.2"
SECOND_MX = "127.0.0.3"
OTHER_MX = "127.0.0.4"


class FetchmailETRN(etrnlib.ETRNTestCase):
    ZONE = {
        "branch.test": [mx("mx.branch.test", 10)],
        "mx.branch.test": [a(BRANCH_MX)],
        "second.test": [mx("mx.second.test", 10)],
        "mx.second.test": [a(SECOND_MX)],
        "other.test": [mx("mx.other.test", 10)],
        "mx.other.test": [a(OTHER_MX)],
    }
    UP = (BRANCH_MX, SECOND_MX, OTHER_MX)
    DOMAINS = {"branch.test": {}, "second.test": {}, "other.test": {}}

    def setUp(self):
        if not shutil.which("fetchmail"):
            self.skipTest("fetchmail is not installed")
        super().setUp()
        self.home = tempfile.mkdtemp(prefix="hf-fetchmail-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.rc = os.path.join(self.home, ".fetchmailrc")
        with open(self.rc, "w"):
            pass
        os.chmod(self.rc, 0o600)  # fetchmail refuses a run control file others can read

    def fetchmail(self, domains):
        env = dict(os.environ, HOME=self.home, LC_ALL="C")
        cmd = ["fetchmail", "--nosyslog", "-v", "--nodetach", "-f", self.rc,
               "--pidfile", os.path.join(self.home, "fetchmail.pid"),
               "--protocol", "ETRN", "--port", str(self.relayd.port),
               "--fetchdomains", domains, "127.0.0.1"]
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=bound(60))
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        return p.returncode, out

    def test_fetchmail_releases_its_domains(self):
        r = self.relayd
        ids = {}
        for dom, n in (("branch.test", 2), ("second.test", 1), ("other.test", 1)):
            ids[dom] = {}
            for i in range(n):
                qid = r.send("s@example.org", ["u%d@%s" % (i, dom)],
                             etrnlib.make_body("%s %d" % (dom, i), "held for %s\r\n" % dom))
                ids[dom][qid] = r.body(qid)
        mark = r.mark()
        rc, out = self.fetchmail("branch.test,second.test")
        self.assertEqual(rc, 0, out)
        self.assertIn("ETRN branch.test", out)
        self.assertIn("ETRN second.test", out)
        self.assertIn("253 2.0.0 OK, 2 pending messages for node branch.test started", out)
        self.assertIn("253 2.0.0 OK, 1 pending message for node second.test started", out)
        for dom, host in (("branch.test", BRANCH_MX), ("second.test", SECOND_MX)):
            s = r.wait_flush(dom, after=mark)
            self.assertEqual((s["sent"], s["deferred"], s["bounced"]), (len(ids[dom]), 0, 0),
                             s["line"])
            self.assertEqual(sorted(m.data for m in self.sinks[host].snapshot()),
                             sorted(ids[dom].values()))
        # Not asked for: stays queued.
        self.assertEqual(self.sinks[OTHER_MX].connections, 0)
        self.assertEqual(sorted({x["domain"] for x in r.rcpts().values()}), ["other.test"])

        # Asked again: nothing waits (251).
        rc, out = self.fetchmail("branch.test")
        self.assertIn("251 2.0.0 OK, no messages waiting for node branch.test", out)
        self.assertNotEqual(rc, 3, out)

    def test_fetchmail_foreign_domain_refused(self):
        rc, out = self.fetchmail("notours.test")
        self.assertIn("459 4.7.1 Node notours.test not allowed", out)
        self.assertEqual(rc, 3, out)  # fetchmail's PS_AUTHFAIL for 459
        self.assertEqual(self.sinks.connections(), {h: 0 for h in self.UP})


if __name__ == "__main__":
    unittest.main()
