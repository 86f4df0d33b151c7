"""What relayd stores: the Received: header it prepends plus the bytes sent, byte-exact
after dot-unstuffing, read back with `relayctl show --body`; the envelope and recipients
as relayctl list/queue/show report them (JSON); relayctl on a stopped relayd; the queue
across restarts; relayctl's errors; relayd refusing a damaged queue."""

import codecs
import os
import re
import time
import unittest

import hfharness as hf
from hfharness import CLIENT_NAME, HOSTNAME


# Decodes like relayctl's JSON: valid UTF-8 as text, any other octet as U+00XX.
codecs.register_error("hf_octet", lambda e: (e.object[e.start:e.start + 1].decode("latin-1"),
                                             e.start + 1))


def stored_body(relayd, qid):
    return relayd.relayctl("show", qid, "--body", check=True).stdout


class ByteExact(hf.HFClassTestCase):

    def check_roundtrip(self, body, mail_params="", rcpts=("alice@branch.test",)):
        qid = hf.send_raw(self.relayd, "sender@example.test", list(rcpts), body,
                          mail_params=mail_params)
        stored = stored_body(self.relayd, qid)
        received, rest = hf.split_received(stored)
        self.assertEqual(rest, body, "stored bytes differ from sent bytes")
        return qid, received, stored

    def test_plain(self):
        self.check_roundtrip(hf.make_body("plain", b"Hello.\r\nSecond line.\r\n"))

    def test_leading_dots(self):
        body = hf.make_body("dots", b".\r\n..\r\n...three\r\n.x\r\n . not first\r\n.")
        body += b"\r\n"
        self.check_roundtrip(body)

    def test_body_starts_with_dot(self):
        self.check_roundtrip(b".first line is a dot line\r\n\r\nbody\r\n")

    def test_8bit(self):
        text = bytes(range(0x80, 0x100)) + b"\r\n" + "h\u00e9llo w\u00f6rld \u2603\r\n".encode()
        qid, _, _ = self.check_roundtrip(hf.make_body("8bit", text), "BODY=8BITMIME")
        msg = self.relayd.relayctl_json("show", qid)
        self.assertIn("8BITMIME", msg["flags"])

    def test_all_octets(self):
        """Every octet value except CR and LF, which only appear as CRLF; in a header too,
        where relayctl's JSON must escape them: controls as escapes, valid UTF-8 as text,
        every other octet as \\u00XX."""
        octets = bytes(b for b in range(256) if b not in (0x0a, 0x0d))
        utf8 = "caf\u00e9 \u2603 \U0001F600".encode()
        body = hf.make_body("octets", octets + b"\r\n",
                            [b"X-Octets: " + octets, b"X-Utf8: " + utf8,
                             b"X-Bad: \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x98"])
        qid, _, stored = self.check_roundtrip(body, "BODY=8BITMIME")
        msg = self.relayd.relayctl_json("show", qid)
        raw = stored[:stored.index(b"\r\n\r\n") + 2]
        self.assertEqual(msg["headers"], raw.decode("utf-8", "hf_octet"))
        self.assertIn("X-Utf8: " + utf8.decode(), msg["headers"])
        out = self.relayd.relayctl("show", qid, "--json", check=True).stdout
        self.assertNotIn(b"\xc0", out)  # invalid UTF-8 never reaches the JSON text
        self.assertIn(b"\\u00c0\\u00af", out)

    def test_smtputf8(self):
        qid = hf.send_raw(self.relayd, "j\u00f6rg@example.test", ["alice@branch.test"],
                          hf.make_body("utf8", "gr\u00fc\u00dfe\r\n".encode()),
                          mail_params="SMTPUTF8 BODY=8BITMIME")
        msg = self.relayd.relayctl_json("show", qid)
        self.assertEqual(msg["sender"], "j\u00f6rg@example.test")
        self.assertIn("SMTPUTF8", msg["flags"])

    def test_large(self):
        """About 3 MiB, lines of varying length, some with leading dots."""
        lines = []
        n = 0
        i = 0
        while n < 3 * 1024 * 1024:
            line = (b"." if i % 7 == 0 else b"") + (b"%08d " % i) * (1 + i % 11)
            lines.append(line)
            n += len(line) + 2
            i += 1
        body = hf.make_body("large", b"\r\n".join(lines) + b"\r\n")
        qid, received, stored = self.check_roundtrip(body)
        msg = self.relayd.relayctl_json("show", qid)
        self.assertEqual(msg["size"], len(stored))

    def test_empty_message(self):
        """DATA followed at once by the end: a message of zero octets."""
        self.check_roundtrip(b"")

    def test_headers_only(self):
        self.check_roundtrip(b"Subject: no body\r\n\r\n")

    def test_received_header(self):
        qid, received, _ = self.check_roundtrip(hf.make_body("received", b"x\r\n"))
        text = received.decode("ascii")
        unfolded = re.sub(r"\r\n[ \t]+", " ", text)
        self.assertIn(CLIENT_NAME, unfolded)
        self.assertIn("[127.0.0.1]", unfolded)
        self.assertIn(HOSTNAME, unfolded)
        self.assertIn("with ESMTP", unfolded)
        self.assertRegex(unfolded, r"\bid <?%s\b" % qid)
        self.assertIn("for <alice@branch.test>", unfolded)
        # A date (RFC 5322 3.6.7: "; date-time") ends the field.
        self.assertRegex(unfolded, r";\s*(\w{3}, )?\d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}")
        for line in text.split("\r\n")[:-1]:
            self.assertLessEqual(len(line), 998, "Received: line too long")

    def test_received_header_two_recipients(self):
        qid, received, _ = self.check_roundtrip(
            hf.make_body("two", b"x\r\n"), rcpts=("alice@branch.test", "bob@branch.test"))
        unfolded = re.sub(rb"\r\n[ \t]+", b" ", received)
        self.assertRegex(unfolded, rb"\bid <?" + qid.encode() + rb"\b")

    def test_smtplib_roundtrip(self):
        body = hf.make_body("smtplib", b"via smtplib\r\n.dot line\r\n")
        qid = hf.send_smtplib(self.relayd, "s@example.test", ["bob@branch.test"], body)
        self.assertEqual(hf.split_received(stored_body(self.relayd, qid))[1], body)


class RelayctlView(hf.HFTestCase):
    """relayctl list/queue/show against what was sent, while relayd runs and after it
    stopped, and the queue across a restart."""

    def setUp(self):
        super().setUp()
        self.relayd = self.start_relayd()
        self.t0 = int(time.time())
        self.sent = {}
        # m1: two branch.test recipients, DSN parameters, 8BITMIME.
        with self.relayd.raw() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<one@example.test> BODY=8BITMIME RET=HDRS "
                                   "ENVID=env+2Bone"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@branch.test> NOTIFY=SUCCESS,FAILURE "
                                   "ORCPT=rfc822;alice@branch.test"), 250)
            self.assertReply(c.cmd("RCPT TO:<bob@branch.test> NOTIFY=NEVER"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            # relayd flags 8BITMIME from the octets seen, so the text holds one.
            body1 = hf.make_body("first", b"one \xe9\r\n")
            self.m1 = hf.queued_id(c.data_reply(body1))
        # m2: backup.test and a subdomain of it, and open.test.
        body2 = hf.make_body("second", b"two\r\n")
        self.m2 = hf.send_raw(self.relayd, "", ["x@backup.test", "y@mx.backup.test",
                                                "z@open.test"], body2)
        # m3: backup.test only.
        body3 = hf.make_body("third", b"three\r\n")
        self.m3 = hf.send_raw(self.relayd, "three@example.test", ["w@backup.test"], body3)
        self.t1 = int(time.time()) + 1
        self.bodies = {self.m1: body1, self.m2: body2, self.m3: body3}

    def check_list(self):
        data = self.relayd.relayctl_json("list")
        msgs = data["messages"]
        self.assertEqual([m["id"] for m in msgs], [self.m1, self.m2, self.m3])
        m1, m2, m3 = msgs
        self.assertEqual(m1["sender"], "one@example.test")
        self.assertEqual(m2["sender"], "")
        self.assertEqual(m1["flags"], ["8BITMIME"])
        self.assertEqual(m2["flags"], [])
        self.assertEqual(m1["ret"], "HDRS")
        self.assertEqual(m1["envid"], "env+2Bone")
        self.assertEqual(m1["client_name"], CLIENT_NAME)
        self.assertEqual(m1["client_addr"], "127.0.0.1")
        for m in msgs:
            self.assertTrue(self.t0 - 1 <= m["arrival"] <= self.t1, m)
            self.assertEqual(m["size"], len(stored_body(self.relayd, m["id"])), m)
            for r in m["rcpts"]:
                self.assertEqual((r["state"], r["attempts"], r["last_attempt"],
                                  r["last_error"]), ("pending", 0, 0, ""), r)
        self.assertEqual([(r["addr"], r["domain"]) for r in m1["rcpts"]],
                         [("alice@branch.test", "branch.test"), ("bob@branch.test",
                                                                 "branch.test")])
        self.assertEqual(sorted(m1["rcpts"][0]["notify"]), ["FAILURE", "SUCCESS"])
        self.assertEqual(m1["rcpts"][0]["orcpt"], "rfc822;alice@branch.test")
        self.assertEqual(m1["rcpts"][1]["notify"], ["NEVER"])
        self.assertEqual([(r["addr"], r["domain"]) for r in m2["rcpts"]],
                         [("x@backup.test", "backup.test"), ("y@mx.backup.test",
                                                             "mx.backup.test"),
                          ("z@open.test", "open.test")])
        self.assertEqual([r["addr"] for r in m3["rcpts"]], ["w@backup.test"])

        # Domain filters: exact, and with subdomains.
        ex = self.relayd.relayctl_json("list", "backup.test")["messages"]
        self.assertEqual([(m["id"], [r["addr"] for r in m["rcpts"]]) for m in ex],
                         [(self.m2, ["x@backup.test"]), (self.m3, ["w@backup.test"])])
        sub = self.relayd.relayctl_json("list", "@backup.test")["messages"]
        self.assertEqual([(m["id"], [r["addr"] for r in m["rcpts"]]) for m in sub],
                         [(self.m2, ["x@backup.test", "y@mx.backup.test"]),
                          (self.m3, ["w@backup.test"])])
        self.assertEqual(self.relayd.relayctl_json("list", "nothing.test"), {"messages": []})

    def check_queue(self):
        data = self.relayd.relayctl_json("queue")
        doms = {d["domain"]: d for d in data["domains"]}
        size = {qid: len(stored_body(self.relayd, qid)) for qid in self.bodies}
        want = {
            "branch.test": (1, 2, size[self.m1]),
            "backup.test": (2, 2, size[self.m2] + size[self.m3]),
            "mx.backup.test": (1, 1, size[self.m2]),
            "open.test": (1, 1, size[self.m2]),
        }
        self.assertEqual(sorted(doms), sorted(want), data)
        for name, (msgs, rcpts, nbytes) in want.items():
            d = doms[name]
            self.assertEqual((d["messages"], d["rcpts"], d["bytes"], d["held"]),
                             (msgs, rcpts, nbytes, False), d)
            self.assertTrue(self.t0 - 1 <= d["oldest"] <= self.t1, d)
        t = data["totals"]
        self.assertEqual((t["messages"], t["rcpts"], t["bytes"]),
                         (3, 6, sum(size.values())), t)

        text = self.relayd.relayctl("queue", check=True).stdout.decode()
        for name in want:
            self.assertRegex(text, r"(?m)^%s\s+%d\s+%d\s" % (re.escape(name), *want[name][:2]))

    def check_show(self):
        for qid, body in self.bodies.items():
            stored = stored_body(self.relayd, qid)
            self.assertEqual(hf.split_received(stored)[1], body)
            msg = self.relayd.relayctl_json("show", qid)
            listed = [m for m in self.relayd.relayctl_json("list")["messages"]
                      if m["id"] == qid][0]
            headers = msg.pop("headers")
            self.assertEqual(msg, listed)
            want = stored[:stored.index(b"\r\n\r\n") + 2].decode("utf-8")
            self.assertEqual(headers, want)
            # Lower-case ids are accepted.
            self.assertEqual(self.relayd.relayctl_json("show", qid.lower())["id"], qid)
            text = self.relayd.relayctl("show", qid, check=True).stdout.decode()
            self.assertIn(qid, text)
            self.assertIn("Subject:", text)

    def test_while_running(self):
        self.check_list()
        self.check_queue()
        self.check_show()

    def test_while_stopped_and_after_restart(self):
        self.relayd.stop()
        self.assertEqual(self.relayd.exit_problems, [])
        self.check_list()
        self.check_queue()
        self.check_show()
        self.relayd.start()
        self.check_list()
        # New ids after a restart sort after the old ones.
        m4 = hf.send_raw(self.relayd, "four@example.test", ["alice@branch.test"],
                         hf.make_body("fourth", b"4\r\n"))
        self.assertGreater(m4, self.m3)
        ids = [m["id"] for m in self.relayd.relayctl_json("list")["messages"]]
        self.assertEqual(ids, [self.m1, self.m2, self.m3, m4])

    def test_config_option(self):
        """relayctl -c CONF finds the queue through queue_dir (relative to the config)."""
        r = hf.relayctl("list", "--json", conf=self.relayd.conf_path, check=True)
        self.assertIn(self.m1, r.stdout.decode())
        # From another working directory, too.
        here = os.getcwd()
        try:
            os.chdir("/")
            r = hf.relayctl("queue", conf=os.path.relpath(self.relayd.conf_path, "/"),
                            check=True)
        finally:
            os.chdir(here)
        self.assertIn(b"branch.test", r.stdout)

    def test_text_list(self):
        text = self.relayd.relayctl("list", check=True).stdout.decode()
        for qid in (self.m1, self.m2, self.m3):
            self.assertRegex(text, r"(?m)^%s\s" % qid)
        self.assertIn("<one@example.test>", text)
        self.assertIn("<alice@branch.test>", text)
        self.assertIn("pending", text)


class RelayctlErrors(hf.HFTestCase):

    def setUp(self):
        super().setUp()
        self.relayd = self.start_relayd()
        self.qid = hf.send_raw(self.relayd, "a@b.test", ["alice@branch.test"],
                               b"Subject: x\r\n\r\ny\r\n")

    def run_ctl(self, *args, **kw):
        r = self.relayd.relayctl(*args, **kw)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8",
                                                                                  "replace")

    def test_unknown_id(self):
        rc, out, err = self.run_ctl("show", "0123456789ABCDEF")
        self.assertEqual(rc, 1)
        self.assertEqual(err, "relayctl: no message 0123456789ABCDEF in the queue\n")
        self.assertEqual(out, "")
        rc, out, err = self.run_ctl("show", "0123456789ABCDEF", "--body")
        self.assertEqual((rc, out), (1, ""))

    def test_bad_id(self):
        for bad in ("xyz", "0123456789ABCDEG", "0123456789ABCDE", "0123456789ABCDEF0", "",
                    "-1"):
            rc, out, err = self.run_ctl("show", "--", bad) if bad.startswith("-") else \
                self.run_ctl("show", bad)
            self.assertEqual(rc, 2, (bad, err))
            self.assertIn("relayctl: ", err)
            self.assertEqual(out, "")

    def test_bad_usage(self):
        for args in (("frobnicate",), ("show",), ("queue", "extra"), ("list", "a", "b"),
                     ("queue", "--body"), ("--no-such-option", "queue"), ()):
            rc, out, err = self.run_ctl(*args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertTrue(err.strip(), args)

    def test_bad_domain(self):
        for bad in ("a b", "..", "@", "x@y"):
            rc, _, err = self.run_ctl("list", bad)
            self.assertEqual(rc, 2, (bad, err))

    def test_missing_queue(self):
        missing = os.path.join(self.relayd.dir, "no-such-queue")
        r = hf.relayctl("queue", queue=missing)
        self.assertEqual(r.returncode, 3)
        self.assertTrue(r.stderr.decode().startswith("relayctl: no queue at %s: " % missing),
                        r.stderr)
        os.mkdir(missing)  # a directory without a queue in it
        r = hf.relayctl("list", queue=missing)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertTrue(r.stderr.decode().startswith("relayctl: no queue at %s: " % missing),
                        r.stderr)
        self.assertFalse(os.path.exists(os.path.join(missing, "data.mdb")),
                         "relayctl must not create a queue")

    def test_missing_config(self):
        r = hf.relayctl("queue", conf=os.path.join(self.relayd.dir, "nope.conf"))
        self.assertEqual(r.returncode, 3)
        self.assertIn("nope.conf", r.stderr.decode())

    def test_permission(self):
        if os.geteuid() == 0:
            self.skipTest("root ignores file permissions")
        self.relayd.stop()
        os.chmod(self.relayd.queue_dir, 0)
        try:
            r = hf.relayctl("queue", queue=self.relayd.queue_dir)
        finally:
            os.chmod(self.relayd.queue_dir, 0o700)
        self.assertEqual(r.returncode, 3)
        self.assertIn("ermission", r.stderr.decode())

    def test_help_and_version(self):
        rc, out, err = self.run_ctl("--help")
        self.assertEqual(rc, 0)
        for cmd in ("queue", "list", "show", "--json", "--body"):
            self.assertIn(cmd, out)
        r = hf.relayctl("--version")
        self.assertEqual(r.returncode, 0)
        version = hf.project_version()
        self.assertIn(version, r.stdout.decode())

    def test_body_is_raw(self):
        r = self.relayd.relayctl("show", self.qid, "--body", check=True)
        self.assertTrue(r.stdout.startswith(b"Received: "))
        self.assertTrue(r.stdout.endswith(b"\r\n\r\ny\r\n"), r.stdout)
        self.assertEqual(r.stderr, b"")


class DamagedQueue(hf.HFTestCase):

    def test_garbage_data_mdb(self):
        d = self.start_relayd(start=False)
        os.makedirs(d.queue_dir, mode=0o700)
        with open(os.path.join(d.queue_dir, "data.mdb"), "wb") as f:
            f.write(os.urandom(256 * 1024))
        status, log = d.run_to_exit()
        self.assertGreater(status, 0, "relayd should exit with an error status:\n" + log)
        self.assertIsNone(hf.SANITIZER_RE.search(log), log)
        self.assertRegex(log.lower(), r"queue", log)
        self.assertIn(d.queue_dir.split("/")[-1], log)
        # relayctl reports it too, without a crash.
        r = hf.relayctl("queue", queue=d.queue_dir)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("damaged", r.stderr.decode())

    def test_truncated_data_mdb(self):
        """A queue cut short (a few bytes of a real header) is refused, not trusted."""
        d = self.start_relayd()
        hf.send_raw(d, "a@b.test", ["alice@branch.test"], b"Subject: x\r\n\r\ny\r\n")
        d.stop()
        path = os.path.join(d.queue_dir, "data.mdb")
        with open(path, "r+b") as f:
            f.truncate(100)
        status, log = d.run_to_exit()
        self.assertGreater(status, 0, log)
        self.assertIsNone(hf.SANITIZER_RE.search(log), log)


if __name__ == "__main__":
    unittest.main()
