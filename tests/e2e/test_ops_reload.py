"""SIGHUP reloads relayd's configuration (issue 16): a new domain is accepted, a removed one
refused while its held mail stays queued, a new recipients file line counts, a broken
configuration is refused with its errors logged (file:line) and the running one kept,
sessions opened before a reload keep the configuration they started with, and keys read at
start only (listen) keep their running value with a log line saying so."""

import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfharness  # noqa: E402
import opslib  # noqa: E402
from hfharness import send_smtplib  # noqa: E402


def domains():
    return {
        "branch.test": {"recipients": ["alice", "bob"]},
        "gone.test": {},
    }


class ReloadTest(hfharness.HFTestCase):
    def start(self):
        r = self.start_relayd(conf={"allow_root": "yes"}, domains=domains())
        return r

    def hup(self, r, expect=r"signal HUP received: reloaded "):
        mark = opslib.log_size(r)
        r.proc.send_signal(signal.SIGHUP)
        return opslib.wait_log(r, expect, after=mark), mark

    def rcpt(self, r, addr):
        c = r.raw()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<s@example.test>"), 250)
        rep = c.cmd("RCPT TO:<%s>" % addr)
        c.cmd("QUIT")
        c.close()
        return rep

    def test_new_domain_accepted(self):
        r = self.start()
        self.assertReply(self.rcpt(r, "x@new.test"), 550, "5.7.1")
        r.domains["new.test"] = {}
        r.write_config()
        self.hup(r, r"signal HUP received: reloaded \S+ domains=3 ")
        self.assertReply(self.rcpt(r, "x@new.test"), 250, "2.1.5")
        self.assertReply(self.rcpt(r, "alice@branch.test"), 250)

    def test_removed_domain_refused_mail_kept(self):
        r = self.start()
        qid = send_smtplib(r, "s@example.test", ["x@gone.test"],
                           hfharness.make_body("held", "held before the reload\r\n"))
        del r.domains["gone.test"]
        r.write_config()
        self.hup(r)
        self.assertReply(self.rcpt(r, "y@gone.test"), 550, "5.7.1")
        held = {m["id"] for m in r.relayctl_json("list")["messages"]}
        self.assertIn(qid, held)
        doms = {d["domain"] for d in r.relayctl_json("queue")["domains"]}
        self.assertIn("gone.test", doms)

    def test_recipients_file_reloaded(self):
        r = self.start()
        self.assertReply(self.rcpt(r, "carol@branch.test"), 550, "5.1.1")
        r.domains["branch.test"]["recipients"].append("carol")
        r.write_config()
        self.hup(r)
        self.assertReply(self.rcpt(r, "carol@branch.test"), 250)

    def test_broken_config_refused(self):
        r = self.start()
        r.domains["new.test"] = {}
        r.write_config()
        with open(r.conf_path, "a") as f:
            f.write("[domain new2.test]\ntls = sometimes\n[nonsense x]\n")
        nlines = sum(1 for _ in open(r.conf_path))
        m, mark = self.hup(r, r"signal HUP received: .* has 2 errors; reload refused, the "
                              r"running configuration stays")
        opslib.wait_log(r, r"error: reload: %s:%d: 'tls = sometimes': must be one of "
                           % (r.conf_path, nlines - 1), after=mark)
        opslib.wait_log(r, r"error: reload: %s:%d: unknown section type 'nonsense'"
                           % (r.conf_path, nlines), after=mark)
        self.assertTrue(r.running())
        # The old configuration runs on: new.test (only in the broken file) is refused.
        self.assertReply(self.rcpt(r, "x@new.test"), 550)
        self.assertReply(self.rcpt(r, "alice@branch.test"), 250)
        # A fixed file is taken by the next SIGHUP.
        r.write_config()
        self.hup(r)
        self.assertReply(self.rcpt(r, "x@new.test"), 250)

    def test_missing_recipients_file_refused(self):
        r = self.start()
        r.write_config()
        os.unlink(os.path.join(r.dir, "branch.test.recipients"))
        self.hup(r, r"reload refused")
        self.assertReply(self.rcpt(r, "alice@branch.test"), 250)
        self.assertReply(self.rcpt(r, "zed@branch.test"), 550, "5.1.1")

    def test_session_keeps_its_configuration(self):
        r = self.start()
        old = r.raw()
        old.ehlo()
        self.assertReply(old.cmd("MAIL FROM:<s@example.test>"), 250)
        r.domains["new.test"] = {}
        del r.domains["gone.test"]
        r.write_config()
        m, _ = self.hup(r)
        # The session opened before the reload goes on with the old domains...
        self.assertReply(old.cmd("RCPT TO:<x@gone.test>"), 250)
        self.assertReply(old.cmd("RCPT TO:<x@new.test>"), 550)
        code = old.cmd("DATA")
        self.assertReply(code, 354)
        self.assertReply(old.data_reply(b"Subject: old\r\n\r\nacross the reload\r\n"), 250)
        old.cmd("QUIT")
        old.close()
        # ... and new sessions get the new ones.
        self.assertReply(self.rcpt(r, "x@new.test"), 250)
        self.assertReply(self.rcpt(r, "x@gone.test"), 550)

    def test_restart_only_key_kept(self):
        r = self.start()
        port = r.port
        other = hfharness.free_port()
        r.conf["listen"] = "127.0.0.1:%d" % other
        r.conf["max_recipients"] = "1"
        r.write_config()
        mark = opslib.log_size(r)
        r.proc.send_signal(signal.SIGHUP)
        opslib.wait_log(r, r"reload: listen changed from '127\.0\.0\.1:%d' to '127\.0\.0\.1:%d'; "
                           r"it is read at start only" % (port, other), after=mark)
        opslib.wait_log(r, r"signal HUP received: reloaded ", after=mark)
        # Still on the old port; the limit (reloadable) took effect.
        c = r.raw()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<s@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@branch.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<bob@branch.test>"), 452, "4.5.3")
        c.cmd("QUIT")
        c.close()


if __name__ == "__main__":
    unittest.main()
