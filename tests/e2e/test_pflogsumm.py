"""Debian's pflogsumm counts relayd's log as it is written (issue 11).

A run with known traffic: three messages accepted (four recipients), two recipients refused at
RCPT (relaying denied), one ETRN run in which the receiving aiosmtpd server answers 250 to two
recipients, 450 to one and 550 to one; then the bounce's DSN, held for ETRN in the sender's
domain, is released by ETRN and delivered. relayd's log file, unmodified, goes through
/usr/sbin/pflogsumm --syslog-name=relayd, whose "Grand Totals" must say: 3 received,
3 delivered (two recipients and the DSN), 1 deferred (1 deferral), 1 bounced, 2 rejected,
the octets received and delivered as relayd stored and sent them, 1 sender and 3 recipients
counted, every delivered message with its size, and the reasons in its detail sections.
"""

import os
import re
import smtplib
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import a, mx  # noqa: E402

MXA = "127.0.0.2"
PFLOGSUMM = "/usr/sbin/pflogsumm"
TEMP_REPLY = "450 4.2.1 mailbox busy, try later"
PERM_REPLY = "550 5.1.1 no such user here"


def totals(report):
    """The "Grand Totals" section of a pflogsumm report: label -> number (bytes as octets)."""
    out = {}
    section = report.split("Grand Totals", 1)[1].split("Per-Hour Traffic Summary", 1)[0]
    for line in section.splitlines():
        m = re.match(r"\s*(\d+)([km]?)\s+(\S.*?)\s*$", line)
        if not m:
            continue
        n = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2)]
        label = re.sub(r"\s*\(.*$", "", m.group(3)).strip()
        out[label] = n
        dm = re.search(r"\((\d+)\s+deferrals?\)", m.group(3))
        if dm:
            out["deferrals"] = int(dm.group(1))
    return out


@unittest.skipUnless(os.path.exists(PFLOGSUMM), "pflogsumm not installed (scripts/deps test)")
class Pflogsumm(etrnlib.ETRNTestCase):
    ZONE = {
        "pf.test": [mx("mx.pf.test", 10)],
        "mx.pf.test": [a(MXA)],
        "home.test": [mx("mx.home.test", 10)],
        "mx.home.test": [a(MXA)],
    }
    UP = (MXA,)
    # The sender's domain is held (ETRN only): the bounce's DSN waits there, so the run's
    # counts do not depend on when a delivery attempt of the DSN would happen.
    DOMAINS = {"pf.test": {}, "home.test": {"hold": "yes"}}

    def test_counts_of_a_known_run(self):
        r = self.relayd
        sink = self.sinks[MXA]
        sink.rcpt_replies = {"temp@pf.test": TEMP_REPLY, "perm@pf.test": PERM_REPLY}
        sizes = []
        ids = []
        for subject, rcpts in (("two ok", ["ok1@pf.test", "ok2@pf.test"]),
                               ("one temp", ["temp@pf.test"]),
                               ("one perm", ["perm@pf.test"])):
            qid = r.send("sender@home.test", rcpts,
                         etrnlib.make_body(subject, "counted by pflogsumm\r\n"))
            ids.append(qid)
            sizes.append(len(r.body(qid)))
        # Two recipients refused: relaying denied (one session, one rejected line each).
        s = r.smtp()
        try:
            s.ehlo(etrnlib.CLIENT_NAME)
            self.assertEqual(s.mail("sender@home.test")[0], 250)
            for rcpt in ("x@elsewhere.example", "y@elsewhere.example"):
                code, _ = s.rcpt(rcpt)
                self.assertIn(code, (550, 554), rcpt)
            s.rset()
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()

        mark = r.mark()
        self.assertETRN(r.etrn("pf.test"), 253)
        f = r.wait_flush("pf.test", after=mark)
        self.assertEqual((f["messages"], f["sent"], f["deferred"], f["bounced"]), (3, 2, 1, 1),
                         f["line"])
        # The message whose recipients all went is logged as removed, the deferred one not.
        r.wait_log(r"relayd/qmgr\[\d+\]: %s: removed$" % ids[0], after=mark)
        r.wait_log(r"relayd/qmgr\[\d+\]: %s: removed$" % ids[2], after=mark)
        self.assertEqual(r.log_lines(r": %s: removed$" % ids[1]), [])
        # The DSN of the bounce is logged as Postfix's bounce, cleanup and qmgr log a new one.
        dsn = r.rcpts()["sender@home.test"]["id"]
        r.wait_log(r"relayd/bounce\[\d+\]: %s: sender non-delivery notification: %s$"
                   % (ids[2], dsn))
        r.wait_log(r"relayd/cleanup\[\d+\]: %s: message-id=<%s\.%s@\S+>$" % (dsn, dsn, ids[2]))
        m = r.wait_log(r"relayd/qmgr\[\d+\]: %s: from=<>, size=(\d+), nrcpt=1 \(queue active\)$"
                       % dsn)[0]
        self.assertEqual(int(m.group(1)), len(r.body(dsn)))
        mark = r.mark()
        self.assertETRN(r.etrn("home.test"), 253)
        f = r.wait_flush("home.test", after=mark)
        self.assertEqual((f["messages"], f["sent"]), (1, 1), f["line"])
        got = sink.snapshot()
        self.assertEqual(sorted(g.rcpts[0] for g in got), ["ok1@pf.test", "sender@home.test"])
        delivered = sum(len(g.data) * len(g.rcpts) for g in got)

        with open(r.log_path, "rb") as fh:
            log = fh.read()
        p = subprocess.run(["/usr/bin/perl", PFLOGSUMM, "--syslog-name=relayd",
                            "--problems-first", "--verbose-msg-detail"],
                           input=log, capture_output=True, timeout=etrnlib.bound(60))
        report = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, p.stderr.decode("utf-8", "replace"))
        t = totals(report)
        with self.subTest("grand totals"):
            self.assertEqual(t.get("received"), 3, report)
            self.assertEqual(t.get("delivered"), 3, report)
            self.assertEqual(t.get("deferred"), 1, report)
            self.assertEqual(t.get("deferrals"), 1, report)
            self.assertEqual(t.get("bounced"), 1, report)
            self.assertEqual(t.get("rejected"), 2, report)
            self.assertEqual(t.get("senders"), 1, report)
            self.assertEqual(t.get("sending hosts/domains"), 1, report)
            # Recipients delivered to: ok1, ok2 and the DSN's (pflogsumm counts deliveries).
            self.assertEqual(t.get("recipients"), 3, report)
        with self.subTest("bytes received and delivered: what relayd stored and sent"):
            self.assertLess(sum(sizes) + delivered, 512 * 1024, "pflogsumm would print k")
            self.assertEqual(t.get("bytes received"), sum(sizes), report)
            self.assertEqual(t.get("bytes delivered"), delivered, report)
            self.assertNotIn("Messages with no size data", report)
        with self.subTest("detail sections"):
            self.assertRegex(report, r"message deferral detail.*\n(?:.*\n)*?.*mailbox busy")
            self.assertRegex(report, r"message bounce detail.*\n(?:.*\n)*?.*no such user here")
            self.assertRegex(report, r"message reject detail.*\n(?:.*\n)*?.*RCPT")
            self.assertRegex(report, r"Senders by message count\n-+\n\s*3\s+sender@home\.test\n")


if __name__ == "__main__":
    unittest.main()
