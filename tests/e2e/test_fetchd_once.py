"""fetchd --once against a real relayd on loopback.

relayd holds mail for fetch.test (hold = yes, so only a release sends it) with a static
next hop [127.0.0.2]:P where a python3-aiosmtpd sink stands in for the branch office's MX;
fetchd's local_mta check points at that sink. `fetchd --once` must make the held mail
arrive there and exit 0; a 459 (a domain the relay does not serve) is reported, not retried,
and the other domains still get their ETRN; a relay that is down is retried with backoff
and then either answers (exit 0) or is given up after retry_limit (exit 1); the local MTA
is waited for; configuration errors exit 2 (and -t prints them with file:line).

Every wait is bounded; only 127.0.0.0/8.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import unittest

import hfharness
from hfharness import HFTestCase, free_port, make_body, send_smtplib, timeout
from fetchdlib import FETCHD, Fetchd, Sink, ZoneDNS, wait_until
from dnslib import A, MX

REPLY_RE = r"relay=hq\[127\.0\.0\.1\]:%d domain=%s reply=%s "


class FetchdCase(HFTestCase):
    def setUp(self):
        super().setUp()
        self.sink = Sink("127.0.0.2").start()
        self.addCleanup(self.sink.stop)
        self.fetchds = []
        self._failed = False
        self.addCleanup(self._stop_fetchds)

    def _stop_fetchds(self):
        problems = []
        for f in self.fetchds:
            f.stop()
            problems += f.problems
        if problems:
            self._print_fetchd_logs()
            self.fail("; ".join(problems))
        for f in self.fetchds:
            if not self._failed:
                shutil.rmtree(f.dir, ignore_errors=True)

    def _print_fetchd_logs(self):
        self._failed = True
        for f in getattr(self, "fetchds", []):
            sys.stderr.write("\n---- fetchd log (%s) ----\n%s---- end ----\n"
                             % (f.dir, f.log_text()))

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            if len(result.failures) + len(result.errors) > before:
                self._print_fetchd_logs()

    def relayd_for(self, conf=None, **kw):
        domains = {
            "fetch.test": {"hold": "yes", "next_hop": "[127.0.0.2]:%d" % self.sink.port},
            "other.test": {"hold": "yes", "next_hop": "[127.0.0.2]:%d" % self.sink.port},
        }
        return self.start_relayd(conf=conf, domains=domains, **kw)

    def fetchd(self, relays, **globals_):
        g = {"local_mta": "127.0.0.2:%d" % self.sink.port, "local_mta_wait": "10"}
        g.update(globals_)
        f = Fetchd(g, relays)
        f.write_config()
        self.fetchds.append(f)
        return f

    def hold_one(self, relayd, rcpt="bob@fetch.test", subject="held"):
        return send_smtplib(relayd, "sender@example.org", [rcpt],
                            make_body(subject, "held until the branch asks\r\n"))


class OnceTest(FetchdCase):
    def test_once_releases_held_mail(self):
        r = self.relayd_for()
        self.hold_one(r)
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": r.port, "domains": "fetch.test"}})
        rc, text = f.run("--once")
        self.assertEqual(rc, 0, text)
        self.assertRegex(text, REPLY_RE % (r.port, "fetch\\.test", "253") +
                         r'text="2.0.0 OK, 1 pending message for node fetch\.test started" verdict=done')
        msgs = self.sink.wait_messages(1)
        self.assertEqual(msgs[0][1], ["bob@fetch.test"])
        self.assertIn(b"Subject: held", msgs[0][2])
        wait_until(lambda: re.search(r"etrn arg=fetch\.test .*reply=253", r.log_text()), 10,
                   "relayd's ETRN log line")
        self.assertNotIn("retry=", text)

    def test_every_domain_asked_459_reported_not_retried(self):
        r = self.relayd_for()
        self.hold_one(r)
        # unknown.test: not served (459); other.test: nothing held (251); fetch.test: 253.
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": r.port,
                                "domains": "unknown.test other.test fetch.test"}},
                        retry_limit="3")
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)
        self.assertRegex(text, REPLY_RE % (r.port, "unknown\\.test", "459") + r".*verdict=fatal")
        self.assertRegex(text, REPLY_RE % (r.port, "other\\.test", "251") + r".*verdict=done")
        self.assertRegex(text, REPLY_RE % (r.port, "fetch\\.test", "253") + r".*verdict=done")
        self.assertNotIn("retry=", text)  # 459 is not retried
        self.assertEqual(len(re.findall(r"domain=unknown\.test reply=", text)), 1)
        self.assertRegex(text, r"relay=hq release incomplete domains=3 done=2 fatal=1")
        self.sink.wait_messages(1)
        # One connection carried all three ETRNs.
        self.assertEqual(len(re.findall(r"etrn arg=", r.log_text())), 3)

    def test_relay_down_gives_up_after_retry_limit(self):
        port = free_port()
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": port, "domains": "fetch.test"}},
                        retry_limit="2", retry_delay="1", retry_delay_max="2")
        rc, text = f.run("--once", seconds=30)
        self.assertEqual(rc, 1, text)
        self.assertEqual(len(re.findall(r"connect failed err=ECONNREFUSED", text)), 3, text)
        self.assertRegex(text, r"relay=hq retry=1/2 in=")
        self.assertRegex(text, r"relay=hq retry=2/2 in=")
        self.assertRegex(text, r"relay=hq giving up after 2 retries domains=fetch\.test")
        self.assertRegex(text, REPLY_RE % (port, "fetch\\.test", "none") +
                         r'text="connect failed: connection refused" verdict=retry')

    def test_relay_down_then_up_is_retried_until_it_answers(self):
        port = free_port()
        r = self.relayd_for(conf={"listen": "127.0.0.1:%d" % port})
        self.hold_one(r)
        r.stop()  # the mail stays in its queue; the relay is now down
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": port, "domains": "fetch.test"}},
                        retry_limit="20", retry_delay="1", retry_delay_max="1")
        f.start("--once")
        f.wait_log(r"relay=hq retry=1/20 ", seconds=20)
        r.start()
        self.assertEqual(f.wait_exit(60), 0, f.log_text())
        self.assertRegex(f.log_text(), REPLY_RE % (port, "fetch\\.test", "253"))
        self.sink.wait_messages(1)

    def test_waits_for_the_local_mta(self):
        r = self.relayd_for()
        self.hold_one(r)
        late = Sink("127.0.0.3")  # not started yet: connections are refused
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": r.port, "domains": "fetch.test"}},
                        local_mta="127.0.0.3:%d" % late.port, local_mta_wait="60")
        f.start("--once")
        f.wait_log(r"local_mta=127\.0\.0\.3:%d not accepting connections yet" % late.port)
        self.assertNotIn("etrn arg=", r.log_text())  # nothing released into a closed port
        late.start()
        self.addCleanup(late.stop)
        self.assertEqual(f.wait_exit(60), 0, f.log_text())
        self.sink.wait_messages(1)

    def test_local_mta_never_up(self):
        r = self.relayd_for()
        port = free_port("127.0.0.3")
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": r.port, "domains": "fetch.test"}},
                        local_mta="127.0.0.3:%d" % port, local_mta_wait="1")
        rc, text = f.run("--once")
        self.assertEqual(rc, 1, text)
        self.assertRegex(text, r"relay=hq not released: local_mta=127\.0\.0\.3:%d" % port)
        self.assertNotIn("etrn arg=", r.log_text())

    def test_relay_without_host_asks_every_mx(self):
        r = self.relayd_for()
        self.hold_one(r)
        dns = ZoneDNS({
            "fetch.test": [("MX", MX("mx1.fetch.test", 10))],
            "mx1.fetch.test": [("A", A("127.0.0.1"))],
            "gone.test": [],  # exists, no MX, no address: nothing to ask
        }).start()
        self.addCleanup(dns.stop)
        f = self.fetchd({"hq": {"host": "", "port": r.port, "domains": "fetch.test"}},
                        dns_servers="127.0.0.1:%d" % dns.port, dns_timeout="2")
        rc, text = f.run("--once")
        self.assertEqual(rc, 0, text)
        self.assertRegex(text, r"relay=hq\[127\.0\.0\.1\]:%d mx=mx1\.fetch\.test domain=fetch\.test "
                         r"reply=253 " % r.port)
        self.sink.wait_messages(1)


class CommandLineTest(FetchdCase):
    def test_check_config(self):
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": "2525", "domains": "fetch.test"}})
        rc, text = f.run("-t")
        self.assertEqual(rc, 0, text)
        self.assertIn("configuration ok", text)
        f.write_config(extra="bogus_key = 1\n[relay bad]\nhost = h\nport = 99999\n"
                             "domains = x.test\ntls = require\n")
        rc, text = f.run("-t")
        self.assertEqual(rc, 1, text)
        n = len(open(f.conf_path).read().splitlines())
        self.assertRegex(text, re.escape(f.conf_path) + r":%d: unknown key 'bogus_key'" % (n - 5))
        self.assertRegex(text, re.escape(f.conf_path) + r":%d: .*between 1 and 65535" % (n - 2))
        rc, text = f.run("--once")
        self.assertEqual(rc, 2, text)

    def test_shipped_config_is_valid(self):
        conf = os.path.join(hfharness.SOURCE_DIR, "conf", "fetchd.conf")
        f = self.fetchd({})
        f.conf_path = conf
        rc, text = f.run("-t")
        self.assertEqual(rc, 0, text)
        self.assertIn("configuration ok (1 relay)", text)

    def test_auth_without_tls_refused_clearly(self):
        # tls = require itself works now (tests/e2e/test_fetchd_tls.py); credentials over a
        # relay with tls = no are a configuration error.
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": "2525", "domains": "fetch.test",
                                "tls": "no", "auth_user": "alice",
                                "auth_password_file": "/nonexistent"}})
        rc, text = f.run("-t")
        self.assertEqual(rc, 1, text)
        self.assertRegex(text, r":\d+: relay hq: auth_user needs TLS")
        rc, text = f.run("--once")
        self.assertEqual(rc, 2, text)  # no relay can run
        self.assertIn("relay=hq not started: auth_user needs TLS", text)

    def test_no_relay_is_a_config_error(self):
        f = self.fetchd({})
        self.assertEqual(f.run("--once")[0], 2)
        rc, text = f.run("-t")
        self.assertEqual(rc, 1)
        self.assertIn("no [relay NAME] section", text)

    def test_help_version_usage(self):
        f = self.fetchd({})
        rc, text = f.run("--version")
        self.assertEqual(rc, 0)
        self.assertEqual(text.strip(), "fetchd (holdfast) %s" % hfharness.project_version())
        rc, text = f.run("--help")
        self.assertEqual(rc, 0)
        self.assertIn("--once", text)
        rc, text = f.run("--no-such-option")
        self.assertEqual(rc, 2)


class DaemonTest(FetchdCase):
    def test_foreground_startup_sigusr1_and_interval(self):
        r = self.relayd_for()
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": r.port, "domains": "fetch.test"}},
                        interval="2")
        f.start("-f")
        f.wait_log(r"release reason=startup")
        f.wait_log(r"domain=fetch\.test reply=251 ")
        self.hold_one(r)
        f.signal(signal.SIGUSR1)
        f.wait_log(r"release reason=signal")
        f.wait_log(r"domain=fetch\.test reply=253 ")
        self.sink.wait_messages(1)
        f.wait_log(r"release reason=timer", seconds=20)
        self.assertEqual(f.stop(), 0)

    def test_daemon_pid_file(self):
        r = self.relayd_for()
        f = self.fetchd({"hq": {"host": "127.0.0.1", "port": r.port, "domains": "fetch.test"}})
        pid_file = os.path.join(f.dir, "fetchd.pid")
        f.globals["pid_file"] = pid_file
        f.write_config()
        f.start("-d")  # no -f: daemonizes, and the parent exits 0 at once
        self.assertEqual(f.wait_exit(20), 0, f.log_text())
        wait_until(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(), 20,
                   "the pid file")
        pid = int(open(pid_file).read())
        try:
            wait_until(lambda: "etrn arg=fetch.test" in r.log_text(), 20, "the startup ETRN")
            # A second daemon refuses to run on the same pid file.
            g = Fetchd(dict(f.globals), f.relays, workdir=f.dir)
            g.log_path = os.path.join(f.dir, "second.log")
            g.conf_path = os.path.join(f.dir, "second.conf")
            g.write_config()
            g.start("-d")
            self.assertEqual(g.wait_exit(20), 0, g.log_text())
            g.stop()
            wait_until(lambda: "already running" in g.log_text(), 20,
                       "the second daemon's refusal")
            os.kill(pid, signal.SIGUSR1)
            wait_until(lambda: len(re.findall("etrn arg=fetch.test", r.log_text())) >= 2, 20,
                       "the ETRN after SIGUSR1")
        finally:
            os.kill(pid, signal.SIGTERM)

        def gone():
            try:
                os.kill(pid, 0)
                return False
            except ProcessLookupError:
                return True
        wait_until(gone, 20, "the daemon to exit")
        self.assertFalse(os.path.exists(pid_file))


if __name__ == "__main__":
    unittest.main(verbosity=2)
