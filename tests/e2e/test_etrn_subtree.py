"""ETRN @domain (the domain and every subdomain), plain ETRN domain (that name only) and
ETRN #group (the domains of a [group] section), RFC 1985 section 4.

badbackup.test ends in "backup.test" but is not below it: @backup.test must leave its mail
where it is.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import a, mx  # noqa: E402

BACKUP_MX = "127.0.0.2"
BAD_MX = "127.0.0.3"
OTHER_MX = "127.0.0.4"

TREE = ["backup.test", "sub.backup.test", "deep.sub.backup.test"]


class Subtree(etrnlib.ETRNTestCase):
    ZONE = {
        "backup.test": [mx("mx.backup.test", 10)],
        "sub.backup.test": [mx("mx.backup.test", 10)],
        "deep.sub.backup.test": [mx("mx.backup.test", 10)],
        "mx.backup.test": [a(BACKUP_MX)],
        "badbackup.test": [mx("mx.badbackup.test", 10)],
        "mx.badbackup.test": [a(BAD_MX)],
        "other.test": [mx("mx.other.test", 10)],
        "mx.other.test": [a(OTHER_MX)],
    }
    UP = (BACKUP_MX, BAD_MX, OTHER_MX)
    DOMAINS = {"backup.test": {"subdomains": "yes"}, "badbackup.test": {}, "other.test": {}}
    GROUPS = {"branches": "badbackup.test other.test"}

    def setUp(self):
        super().setUp()
        r = self.relayd
        self.ids = {}  # domain -> {qid: stored bytes}
        for dom, n in (("backup.test", 1), ("sub.backup.test", 2), ("deep.sub.backup.test", 1),
                       ("badbackup.test", 2), ("other.test", 1)):
            self.ids[dom] = {}
            for i in range(n):
                qid = r.send("s@example.org", ["u%d@%s" % (i, dom)],
                             etrnlib.make_body("%s %d" % (dom, i), "for %s\r\n" % dom))
                self.ids[dom][qid] = r.body(qid)

    def queued_domains(self):
        return sorted({rec["domain"] for rec in self.relayd.rcpts().values()})

    def expect_delivered(self, host, domains):
        want = sorted(b for d in domains for b in self.ids[d].values())
        self.assertEqual(sorted(m.data for m in self.sinks[host].snapshot()), want)

    def test_at_domain_releases_the_subtree_not_baddomain(self):
        r = self.relayd
        mark = r.mark()
        self.assertETRN(r.etrn("@backup.test"), 253,
                        r"^2\.0\.0 OK, 4 pending messages for node @backup\.test started$")
        for d in TREE:
            s = r.wait_flush(d, after=mark)
            self.assertEqual((s["sent"], s["deferred"], s["bounced"]),
                             (len(self.ids[d]), 0, 0), s["line"])
        self.expect_delivered(BACKUP_MX, TREE)
        self.assertEqual(self.sinks[BAD_MX].connections, 0)
        self.assertEqual(self.sinks[OTHER_MX].connections, 0)
        self.assertEqual(r.log_lines(r"flush domain=(badbackup|other)\.test", after=mark), [])
        self.assertEqual(self.queued_domains(), ["badbackup.test", "other.test"])
        self.assertEqual(len(r.list_json("badbackup.test")), 2)
        # Case does not matter in the node name.
        self.assertETRN(r.etrn("@BACKUP.Test"), 251)

    def test_plain_domain_releases_that_name_only(self):
        r = self.relayd
        mark = r.mark()
        self.assertETRN(r.etrn("backup.test"), 253,
                        r"^2\.0\.0 OK, 1 pending message for node backup\.test started$")
        r.wait_flush("backup.test", after=mark)
        self.expect_delivered(BACKUP_MX, ["backup.test"])
        self.assertEqual(self.queued_domains(),
                         ["badbackup.test", "deep.sub.backup.test", "other.test",
                          "sub.backup.test"])
        # A subdomain of a subdomains = yes section is served on its own, too.
        mark = r.mark()
        self.assertETRN(r.etrn("sub.backup.test"), 253,
                        r"OK, 2 pending messages for node sub\.backup\.test started")
        r.wait_flush("sub.backup.test", after=mark)
        self.expect_delivered(BACKUP_MX, ["backup.test", "sub.backup.test"])
        self.assertEqual(self.queued_domains(),
                         ["badbackup.test", "deep.sub.backup.test", "other.test"])
        self.assertEqual(r.log_lines(r"flush domain=deep\.sub\.backup\.test", after=mark), [])

    def test_group_releases_its_domains(self):
        r = self.relayd
        mark = r.mark()
        self.assertETRN(r.etrn("#branches"), 253,
                        r"^2\.0\.0 OK, 3 pending messages for node #branches started$")
        for d, host in (("badbackup.test", BAD_MX), ("other.test", OTHER_MX)):
            s = r.wait_flush(d, after=mark)
            self.assertEqual((s["sent"], s["deferred"], s["bounced"]),
                             (len(self.ids[d]), 0, 0), s["line"])
            self.expect_delivered(host, [d])
        self.assertEqual(self.sinks[BACKUP_MX].connections, 0)
        self.assertEqual(self.queued_domains(), sorted(TREE))
        self.assertETRN(r.etrn("#branches"), 251)
        self.assertETRN(r.etrn("#nosuchgroup"), 459)


if __name__ == "__main__":
    unittest.main()
