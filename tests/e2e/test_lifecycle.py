"""Every message gets an end: bounces, null MX, NOTIFY, delay warnings, expiry, restarts.

A loopback dnslib server serves the relay domains and the sender's domain (sender.test,
whose MX is an aiosmtpd sink standing in for the sender's mail host), so every DSN relayd
sends travels through DNS like any other mail and is parsed here with Python's email
package. relayd runs with the test-only clock (HF_TEST_TIME_OFFSET, moved with relayctl
test-clock-advance): hours and days pass without sleeping.
"""

import email
import json
import email.policy
import os
import re
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
from etrnlib import a, mx  # noqa: E402

MXB = "127.0.0.2"  # the relay domain's host
MXS = "127.0.0.3"  # the sender's mail host
PERM = "550 5.1.1 no such user here"
TEMP = "450 4.2.1 mailbox busy, try later"
SENDER = "alice@sender.test"
HOUR = 3600
DAY = 86400

# relayd inherits the environment: the test clock is on, starting at the real time.
os.environ["HF_TEST_TIME_OFFSET"] = "0"


ZONE = {
    "bounce.test": [mx("mx.bounce.test", 10)],
    "mx.bounce.test": [a(MXB)],
    "hold.test": [mx("mx.bounce.test", 10)],
    "retry.test": [mx("mx.bounce.test", 10)],
    "sender.test": [mx("mx.sender.test", 10)],
    "mx.sender.test": [a(MXS)],
    "nullmx.test": [mx(".", 0)],
}


class LifecycleCase(etrnlib.ETRNTestCase):
    """The servers above, and helpers to send, release, read DSNs and move the clock."""
    ZONE = ZONE
    UP = (MXB, MXS)
    # The postmaster's expiry warning has its own test class below.
    CONF = {"retry_interval": "1", "expiry_warning_time": "0"}

    def setUp(self):
        super().setUp()
        self.sinks[MXB].rcpt_replies = {"perm1@bounce.test": PERM, "perm2@bounce.test": PERM,
                                        "temp@bounce.test": TEMP, "temp@retry.test": TEMP}

    # -- helpers --
    def send(self, sender, rcpts, body=None, mail_options=(), rcpt_options=None):
        """rcpts: list of addresses; rcpt_options: address -> list of RCPT parameters."""
        body = body or etrnlib.make_body("lifecycle", "the text\r\n")
        s = self.relayd.smtp()
        try:
            s.ehlo(etrnlib.CLIENT_NAME)
            code, msg = s.mail(sender, list(mail_options))
            self.assertEqual(code, 250, msg)
            for rc in rcpts:
                code, msg = s.rcpt(rc, (rcpt_options or {}).get(rc, []))
                self.assertEqual(code, 250, msg)
            code, msg = s.data(body)
            self.assertEqual(code, 250, msg)
            return etrnlib.QUEUED_RE.search(msg.decode()).group(1).upper()
        finally:
            s.quit()

    def release(self, domain):
        mark = self.relayd.mark()
        code, text = self.relayd.etrn(domain)
        self.assertIn(code, (250, 253), text)
        return self.relayd.wait_flush(domain, after=mark)

    def dsns(self, n):
        """Waits for n messages at the sender's host; returns them parsed."""
        sink = self.sinks[MXS]
        sink.wait_for(lambda s: len(s.messages) >= n, 30, "%d DSN(s)" % n)
        out = []
        for m in sink.snapshot():
            self.assertEqual(m.mail_from, "<>", "a DSN goes with the null reverse-path")
            out.append((m, email.message_from_bytes(m.data, policy=email.policy.default)))
        return out

    def report(self, msg):
        """(human text, per-message fields, [per-recipient fields], returned part)."""
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(msg["Auto-Submitted"], "auto-replied")
        parts = msg.get_payload()
        self.assertGreaterEqual(len(parts), 2)
        self.assertEqual(parts[0].get_content_type(), "text/plain")
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        blocks = parts[1].get_payload()
        return (parts[0].get_content(), blocks[0], blocks[1:],
                parts[2] if len(parts) > 2 else None)

    def assertQueueEmpty(self, relayd=None):
        """Once every DSN relayd logged has been delivered (its sent line is logged after its
        commit), nothing may be left."""
        r = relayd or self.relayd
        for dsn in re.findall(r"notification: ([0-9A-F]{16})", r.log_text()):
            sent = r.wait_log(r"%s: to=<[^>]*@([^>]*)>, .*status=sent" % dsn)[0]
            # The run's summary comes after its commits.
            with r.cond:
                at = r.lines.index(sent.string)
            r.wait_log(r"flush domain=%s reason=" % re.escape(sent.group(1)), after=at)
        super().assertQueueEmpty(relayd)

    def advance(self, secs):
        r = self.relayd.relayctl("-s", self.relayd.conf["control_socket"], "test-clock-advance",
                                 str(secs))
        self.assertEqual(r.returncode, 0, r.stderr)


class Lifecycle(LifecycleCase):
    DOMAINS = {
        "bounce.test": {"hold": "yes"},
        "nullmx.test": {"hold": "yes"},
        # A hold domain keeps its mail longer, as hosted backup-MX services offer.
        "hold.test": {"hold": "yes", "max_queue_lifetime": "28d", "delay_warning_time": "0"},
        "retry.test": {},  # retried by the timer
    }

    def test_5xx_bounces_at_once_one_dsn(self):
        qid = self.send(SENDER, ["perm1@bounce.test", "perm2@bounce.test", "ok@bounce.test"],
                        mail_options=["RET=FULL", "ENVID=env+2B1"],
                        rcpt_options={"perm1@bounce.test": ["ORCPT=rfc822;Perm1@bounce.test"]})
        stored = self.relayd.body(qid)
        s = self.release("bounce.test")
        self.assertEqual((s["sent"], s["bounced"]), (1, 2), s["line"])
        (raw, msg), = self.dsns(1)
        self.assertEqual(raw.rcpts, [SENDER])
        self.assertEqual(msg["To"].addresses[0].addr_spec, SENDER)
        self.assertEqual(msg["Subject"], "Undelivered Mail Returned to Sender")
        human, per_msg, per_rcpt, returned = self.report(msg)
        self.assertIn("perm1@bounce.test", human)
        self.assertIn("did not use TLS", human)
        self.assertEqual(per_msg["Original-Envelope-Id"], "env+1")
        self.assertEqual(per_msg["Reporting-MTA"], "dns; %s" % etrnlib.HOSTNAME)
        self.assertTrue(per_msg["Arrival-Date"])
        got = {b["Final-Recipient"]: b for b in per_rcpt}
        self.assertEqual(sorted(got), ["rfc822; perm1@bounce.test", "rfc822; perm2@bounce.test"])
        b1 = got["rfc822; perm1@bounce.test"]
        self.assertEqual(b1["Original-Recipient"], "rfc822;Perm1@bounce.test")
        for b in got.values():
            self.assertEqual(b["Action"], "failed")
            self.assertEqual(b["Status"], "5.1.1")
            self.assertEqual(b["Remote-MTA"], "dns; mx.bounce.test")
            self.assertEqual(b["Diagnostic-Code"], "smtp; " + PERM)
            self.assertTrue(b["Last-Attempt-Date"])
            self.assertEqual(b["X-Holdfast-TLS"], "none")
        self.assertEqual(returned.get_content_type(), "message/rfc822")
        self.assertEqual(returned.get_payload()[0]["Subject"], "lifecycle")
        self.assertIn(stored.split(b"\r\n\r\n", 1)[1], raw.data)
        # Logged as Postfix does, and nothing left behind.
        dsn = self.relayd.wait_log(r"%s: sender non-delivery notification: ([0-9A-F]{16})"
                                   % qid)[0].group(1)
        self.relayd.wait_log(r"%s: to=<%s>, .*status=sent" % (dsn, re.escape(SENDER)))
        self.assertQueueEmpty()

    def test_null_mx_bounces(self):
        self.send(SENDER, ["u@nullmx.test"])
        s = self.release("nullmx.test")
        self.assertEqual(s["bounced"], 1, s["line"])
        (_, msg), = self.dsns(1)
        _, _, per_rcpt, _ = self.report(msg)
        self.assertEqual(per_rcpt[0]["Status"], "5.1.10")
        self.assertIsNone(per_rcpt[0]["Remote-MTA"])
        self.assertRegex(per_rcpt[0]["Diagnostic-Code"], r"(?i)null MX")
        self.assertQueueEmpty()

    def test_null_sender_never_bounced(self):
        qid = self.send("", ["perm1@bounce.test"])
        mark = self.relayd.mark()
        s = self.release("bounce.test")
        self.assertEqual(s["bounced"], 1, s["line"])
        self.relayd.wait_log(r"%s to=<perm1@bounce\.test> double bounce dropped" % qid,
                             after=mark)
        self.assertEqual(self.relayd.log_lines(r"%s: sender .* notification" % qid), [])
        self.assertQueueEmpty()
        self.assertEqual(self.sinks[MXS].snapshot(), [])

    def test_notify_values(self):
        # NEVER: no report; DELAY only: no failure report; SUCCESS to a server without DSN
        # (aiosmtpd offers none): one "relayed" report.
        qid = self.send(SENDER, ["perm1@bounce.test", "perm2@bounce.test", "ok@bounce.test"],
                        rcpt_options={"perm1@bounce.test": ["NOTIFY=NEVER"],
                                      "perm2@bounce.test": ["NOTIFY=DELAY"],
                                      "ok@bounce.test": ["NOTIFY=SUCCESS"]})
        s = self.release("bounce.test")
        self.assertEqual((s["sent"], s["bounced"]), (1, 2), s["line"])
        (_, msg), = self.dsns(1)
        self.assertEqual(msg["Subject"], "Successful Mail Delivery Report")
        _, _, per_rcpt, returned = self.report(msg)
        self.assertEqual(len(per_rcpt), 1)
        self.assertEqual(per_rcpt[0]["Final-Recipient"], "rfc822; ok@bounce.test")
        self.assertEqual(per_rcpt[0]["Action"], "relayed")
        self.assertEqual(per_rcpt[0]["Status"], "2.0.0")
        self.assertEqual(returned.get_content_type(), "text/rfc822-headers")
        self.relayd.wait_log(r"%s: sender delivery status notification: " % qid)
        self.assertEqual(len(self.relayd.log_lines(r"%s to=<perm\d@bounce\.test> no non-delivery"
                                                   % qid)), 2)
        self.assertQueueEmpty()

    def test_delay_warning_once_then_expiry(self):
        qid = self.send(SENDER, ["temp@bounce.test"], mail_options=["RET=HDRS"])
        s = self.release("bounce.test")
        self.assertEqual(s["deferred"], 1, s["line"])
        self.advance(4 * HOUR - 60)
        self.assertEqual(self.relayd.log_lines(r"%s: to=<temp@bounce\.test>, .*status=delayed"
                                               % qid), [])
        self.advance(120)  # past 4 h: the warning
        (_, msg), = self.dsns(1)
        self.assertEqual(msg["Subject"], "Delayed Mail (still being retried)")
        human, _, per_rcpt, returned = self.report(msg)
        self.assertEqual(per_rcpt[0]["Action"], "delayed")
        self.assertEqual(per_rcpt[0]["Status"], "4.2.1")
        self.assertTrue(per_rcpt[0]["Will-Retry-Until"])
        self.assertEqual(returned.get_content_type(), "text/rfc822-headers")
        self.assertIn("retried until", human)
        self.assertEqual(len(self.relayd.log_lines(r"%s: sender delay notification" % qid)), 1)
        # Once per recipient, even across a restart.
        self.relayd.stop()
        self.relayd.start()
        self.advance(HOUR)
        self.assertEqual(len(self.relayd.log_lines(r"%s: to=<temp@bounce\.test>, .*status=delayed"
                                                   % qid)), 1)
        self.assertEqual(self.relayd.rcpts()["temp@bounce.test"]["state"], "deferred")
        # Expiry after max_queue_lifetime (5 days): a failure report, the recipient gone.
        self.advance(5 * DAY)
        msgs = self.dsns(2)
        failed = [m for _, m in msgs if m["Subject"] == "Undelivered Mail Returned to Sender"]
        self.assertEqual(len(failed), 1)
        _, _, per_rcpt, _ = self.report(failed[0])
        self.assertEqual(per_rcpt[0]["Status"], "5.4.7")
        self.assertRegex(per_rcpt[0]["Diagnostic-Code"], r"delivery time expired.*450 4\.2\.1")
        self.relayd.wait_log(r"%s: to=<temp@bounce\.test>, .*status=expired" % qid)
        self.assertQueueEmpty()

    def test_restart_keeps_the_schedule(self):
        # The timer delivers retry.test: the first attempt gets 450, the next one is due
        # 5 minutes (+-10 % jitter) later, and a restart does not move it to "now".
        r = self.relayd
        sink = self.sinks[MXB]
        mark = r.mark()
        self.send(SENDER, ["temp@retry.test"])
        r.wait_log(r"to=<temp@retry\.test>, .*status=deferred", after=mark)
        r.wait_flush("retry.test", after=mark)
        rec = r.rcpts()["temp@retry.test"]
        self.assertEqual(rec["attempts"], 1, rec)
        delay = rec["next_attempt"] - rec["last_attempt"]
        self.assertTrue(270 <= delay <= 330, rec)
        r.stop()
        r.start()
        # The clock restarts at the real time: move it to just before the next attempt.
        # test-clock-advance decides what came due before it answers, so the absence of a
        # retry run is known when it returns.
        mark = r.mark()
        self.advance(delay - 20)
        self.assertEqual(r.log_lines(r"flush domain=retry\.test reason=retry", after=mark), [])
        self.assertEqual(r.rcpts()["temp@retry.test"]["attempts"], 1)
        self.advance(30)
        r.wait_log(r"flush domain=retry\.test reason=retry messages=1 started", after=mark)
        s = r.wait_flush("retry.test", after=mark)
        self.assertEqual(s["deferred"], 1, s["line"])
        self.assertEqual(r.rcpts()["temp@retry.test"]["attempts"], 2)
        self.assertEqual(sink.rcpt_log.count("temp@retry.test"), 2)

    def test_hold_domain_keeps_28_days(self):
        qid = self.send(SENDER, ["x@hold.test"])
        self.advance(6 * DAY)  # past the global 5 days, and no warnings for hold.test
        self.assertIn("x@hold.test", self.relayd.rcpts())
        self.assertEqual(self.relayd.log_lines(r"%s: to=<x@hold\.test>, .*status=" % qid), [])
        self.advance(22 * DAY)
        (_, msg), = self.dsns(1)
        _, _, per_rcpt, _ = self.report(msg)
        self.assertEqual(per_rcpt[0]["Status"], "5.4.7")
        self.assertRegex(per_rcpt[0]["Diagnostic-Code"], r"never released")
        self.assertQueueEmpty()

    def test_reload_moves_lifetimes(self):
        # A reload that shortens hold.test's lifetime applies to mail already queued: its due
        # index entry (keyed by the old 28 days) is moved, so the next tick expires it. A
        # reload that changes no lifetime moves nothing.
        r = self.relayd
        qid = self.send(SENDER, ["x@hold.test"])
        self.advance(6 * DAY)
        self.assertIn("x@hold.test", r.rcpts())
        first = r.mark()
        r.proc.send_signal(signal.SIGHUP)
        r.wait_log(r"signal HUP received: reloaded ", after=first)
        doms = {k: dict(v) for k, v in r.domains.items()}
        doms["hold.test"]["max_queue_lifetime"] = "5d"
        r.domains = doms
        r.write_config()
        mark = r.mark()
        r.proc.send_signal(signal.SIGHUP)
        m = r.wait_log(r"reload: lifetimes or retries changed: (\d+) queued recipients? read, "
                       r"(\d+) due times? moved", after=mark)[0]
        self.assertGreaterEqual(int(m.group(1)), 1)
        self.assertEqual(int(m.group(2)), 1, m.string)
        # The unchanged reload before it logged no move (its lines come before these).
        self.assertEqual(len(r.log_lines(r"reload: lifetimes", after=first)), 1)
        self.advance(1)
        (_, msg), = self.dsns(1)
        _, _, per_rcpt, _ = self.report(msg)
        self.assertEqual(per_rcpt[0]["Final-Recipient"], "rfc822; x@hold.test")
        self.assertEqual(per_rcpt[0]["Status"], "5.4.7")
        self.assertNotIn("x@hold.test", r.rcpts())
        self.assertEqual(r.log_lines(r"%s: to=<x@hold\.test>, .*status=sent" % qid), [])
        self.assertQueueEmpty()

    def test_relayctl_bounce(self):
        q1 = self.send(SENDER, ["a@hold.test", "b@hold.test"])
        q2 = self.send(SENDER, ["c@hold.test"])
        q3 = self.send(SENDER, ["d@bounce.test"])
        sock = self.relayd.conf["control_socket"]
        r = self.relayd.relayctl("-s", sock, "bounce", q1, "--reason", "customer gone")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"bounced 2 recipients", r.stdout)
        (_, msg), = self.dsns(1)
        _, _, per_rcpt, _ = self.report(msg)
        self.assertEqual(sorted(b["Final-Recipient"] for b in per_rcpt),
                         ["rfc822; a@hold.test", "rfc822; b@hold.test"])
        self.assertRegex(per_rcpt[0]["Diagnostic-Code"], r"administrator: customer gone")
        r = self.relayd.relayctl("-s", sock, "bounce", "--domain", "hold.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.dsns(2)
        self.assertEqual(sorted(a for a in self.relayd.rcpts() if a != SENDER), ["d@bounce.test"])
        self.relayd.wait_log(r"%s: sender non-delivery notification" % q2)
        # Nothing there: exit 1 with a message; bad usage: exit 2.
        r = self.relayd.relayctl("-s", sock, "bounce", q1)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"nothing queued", r.stderr)
        r = self.relayd.relayctl("-s", sock, "bounce", q3, "--domain", "bounce.test")
        self.assertEqual(r.returncode, 2)


class PostmasterWarning(LifecycleCase):
    """Two days before held mail of hold.test expires (after 28 days), one summary to its
    contact; once per period, across a restart; then the mail expires and bounces."""
    DOMAINS = {"hold.test": {"hold": "yes", "max_queue_lifetime": "28d",
                             "delay_warning_time": "0", "expiry_warning_time": "2d",
                             "expiry_warning_to": "pm@sender.test"}}
    CONF = {"retry_interval": "1"}

    def test_warned_once_per_period(self):
        r = self.relayd
        self.send(SENDER, ["x@hold.test", "y@hold.test"])
        self.send(SENDER, ["z@hold.test"])
        self.advance(26 * DAY - 60)
        self.assertEqual(r.log_lines(r"domain=hold\.test expiry warning"), [])
        self.advance(120)
        sink = self.sinks[MXS]
        sink.wait_for(lambda k: k.messages, 30, "the expiry warning")
        (got,) = sink.snapshot()
        self.assertEqual(got.rcpts, ["pm@sender.test"])
        self.assertEqual(got.mail_from, "<>")
        msg = email.message_from_bytes(got.data, policy=email.policy.default)
        self.assertRegex(msg["Subject"], r"^Mail for hold\.test held at \S+ expires soon$")
        self.assertEqual(msg["Auto-Submitted"], "auto-generated")
        text = msg.get_content()
        self.assertRegex(text, r"messages: +2 \(3 recipients, \d+ octets\)")
        self.assertIn("ETRN hold.test", text)
        self.assertIn("relayctl flush hold.test", text)
        self.assertRegex(text, r"oldest: +arrived ")
        self.assertRegex(text, r"expires: +\w{3}, ")
        # Once per period, also across a restart.
        self.advance(HOUR)
        r.stop()
        mark = len(r.lines)
        r.start()
        self.advance(27 * DAY + 2 * HOUR)  # the restarted clock starts at the real time
        self.assertEqual(len(r.log_lines(r"domain=hold\.test expiry warning")), 1)
        self.assertEqual(len(sink.snapshot()), 1)
        # Expiry: the senders get their bounces; no second warning about mail now gone.
        self.advance(DAY)
        sink.wait_for(lambda k: len(k.messages) >= 3, 30, "two bounces")
        self.assertEqual(len(r.log_lines(r"domain=hold\.test expiry warning", after=mark)), 0)
        self.assertQueueEmpty()


PRIMARY = "127.0.0.4"


class PrimaryDownOnly(etrnlib.ETRNTestCase):
    """accept_only_if_primary_down: probe.test's primary MX (preference 10) is an aiosmtpd
    server; this relay is its MX 20. While the primary answers the probe, RCPT gets 451
    4.7.1; when it stops, mail is accepted again. Other domains are not affected."""
    ZONE = {
        "probe.test": [mx("mx1.probe.test", 10), mx(etrnlib.HOSTNAME, 20)],
        "mx1.probe.test": [a(PRIMARY)],
        "other.test": [mx("mx1.probe.test", 10)],
    }
    UP = (PRIMARY,)
    DOMAINS = {"probe.test": {"accept_only_if_primary_down": "yes", "hold": "yes"},
               "other.test": {"hold": "yes"}}
    CONF = {"probe_interval": "1", "probe_timeout": "3", "retry_interval": "1"}

    def start_relayd(self, conf=None, domains=None, groups=None):
        self.metrics_port = etrnlib.free_port()
        c = {"metrics_listen": "127.0.0.1:%d" % self.metrics_port}
        c.update(conf or {})
        return super().start_relayd(c, domains, groups)

    def metric(self, name):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                    timeout=etrnlib.bound(10)) as resp:
            text = resp.read().decode()
        m = re.search(r"^%s (-?\d+)$" % re.escape(name), text, re.M)
        return int(m.group(1)) if m else None

    def rcpt(self, addr):
        s = self.relayd.smtp()
        try:
            s.ehlo(etrnlib.CLIENT_NAME)
            s.mail(SENDER)
            return s.rcpt(addr)
        finally:
            s.quit()

    def test_probe_turns_rcpt_to_451_and_back(self):
        r = self.relayd
        r.wait_log(r"probe domain=probe\.test primary=up host=mx1\.probe\.test\[127\.0\.0\.4\]")
        code, text = self.rcpt("u@probe.test")
        self.assertEqual((code, text.decode()), (451, "4.7.1 primary MX is up, deliver there"))
        r.wait_log(r"NOQUEUE: reject: RCPT from unknown\[[^]]+\]: 451 4\.7\.1 .*; .*to=<u@probe\.test> .* reason=primary_up")
        self.assertEqual(self.rcpt("u@other.test")[0], 250)
        # relayctl queue and the metrics show the state.
        q = r.relayctl("-s", r.conf["control_socket"], "queue", "--json")
        self.assertEqual(q.returncode, 0, q.stderr)
        probes = json.loads(q.stdout)["probes"]
        self.assertEqual([(p["domain"], p["primary"]) for p in probes], [("probe.test", "up")])
        self.assertEqual(self.metric('holdfast_primary_up{domain="probe.test"}'), 1)
        # The primary goes down: the next probe finds nobody, and mail is accepted.
        mark = r.mark()
        self.sinks[PRIMARY].stop()
        r.wait_log(r"probe domain=probe\.test primary=down .*was=up", after=mark)
        self.assertEqual(self.rcpt("u@probe.test")[0], 250)
        q = r.relayctl("-s", r.conf["control_socket"], "queue")
        self.assertIn(b"primary MX of probe.test: down", q.stdout)
        self.assertEqual(self.metric('holdfast_primary_up{domain="probe.test"}'), 0)


class DoubleBounce(LifecycleCase):
    """With double_bounce_to, an undeliverable null-sender message is reported there."""
    DOMAINS = {"bounce.test": {"hold": "yes"}}
    CONF = {"retry_interval": "1", "double_bounce_to": "postmaster@sender.test"}

    def test_double_bounce_to_postmaster(self):
        s = self.relayd.smtp()
        s.ehlo(etrnlib.CLIENT_NAME)
        s.mail("")
        s.rcpt("perm1@bounce.test")
        code, _ = s.data(etrnlib.make_body("a bounce", "undeliverable\r\n"))
        s.quit()
        self.assertEqual(code, 250)
        mark = self.relayd.mark()
        self.relayd.etrn("bounce.test")
        self.relayd.wait_flush("bounce.test", after=mark)
        sink = self.sinks[MXS]
        sink.wait_for(lambda k: k.messages, 30, "the double bounce")
        got = sink.snapshot()
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].rcpts, ["postmaster@sender.test"])
        self.assertEqual(got[0].mail_from, "<>")
        self.assertQueueEmpty()


if __name__ == "__main__":
    unittest.main()
