"""Every refusal leaves exactly one log line (issue 11), in Postfix's grammar:

    NOQUEUE: reject: VERB from unknown[ADDR]: CODE X.Y.Z text; from=<..> to=<..>
    proto=ESMTP helo=<..> c=N nrcpt=N [user=..] [reason=..]

Each kind of refusal is driven over a raw socket (or smtplib) from its own 127.0.0.X
address, so the lines of one case are told apart by the client address whatever order
the cases' lines come in. For each case the test counts the 4xx/5xx replies the client
got and checks that the log has exactly that many reject lines for its address (no
refusal without a line, none logged twice: relay_denied, AUTH failures and ETRN refusals
were logged by their own code before), and that the expected line is among them.
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfharness as hf  # noqa: E402
import tlslib  # noqa: E402
from tlslib import CLIENT_NAME  # noqa: E402

LINE_RE = (r"NOQUEUE: reject: %s from unknown\[%s\]: %d %s ")


class Refusals(tlslib.TLSRelaydCase):
    AUTH = True
    CONF = {"max_recipients": "2", "max_message_size": "100000", "max_bad_commands": "4",
            "max_connections_per_ip": "2", "submission_users": "alice"}

    def domains(self):
        path = os.path.join(self.tmp, "branch.recipients")
        with open(path, "w") as f:
            f.write("alice\nbob\ncarol\n")
        return {"branch.test": {"recipients": path}}

    def setUp(self):
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix="hf-refusals-")
        self.addCleanup(__import__("shutil").rmtree, self.tmp, True)
        self.n = 0
        super().setUp()

    def source(self):
        self.n += 1
        return "127.0.0.%d" % (20 + self.n)

    def raw(self, src):
        return hf.RawSMTP(self.relayd.port, source=src)

    def settle(self):
        """All lines logged so far have been read: a marker refusal from its own address
        is logged after them (one process writes its stderr in order)."""
        src = "127.0.0.250"
        mark = self.relayd.mark()
        with self.raw(src) as c:
            c.cmd("MARKER%d" % mark)
        self.relayd.wait_log(LINE_RE % ("UNKNOWN", re.escape(src), 500, r"5\.5\.1")
                             + r".* c=\d+ ", after=mark)

    def check(self, src, replies, expect, mark):
        """replies: every reply the client got; expect: regexes the lines must include."""
        refused = [r for r in replies if r.code >= 400]
        self.settle()
        lines = self.relayd.log_lines(r"reject: \S+ from unknown\[%s\]: " % re.escape(src),
                                      after=mark)
        self.assertEqual(len(lines), len(refused),
                         "one line per refusal:\nreplies %r\nlines %s" % (refused, lines))
        for rx in expect:
            self.assertTrue(any(re.search(rx, x) for x in lines), (rx, lines))
        # The reply text is in the line as sent.
        for r in refused:
            first = r.raw.split(b"\r\n")[0].decode("utf-8", "replace")
            self.assertTrue(any(first in x for x in lines), (first, lines))

    def session(self, commands, ehlo=True):
        """Runs commands (str or bytes lines) from a fresh address; returns (src, replies,
        mark). A command given as (bytes, n) sends raw bytes and reads n replies."""
        src = self.source()
        mark = self.relayd.mark()
        replies = []
        with self.raw(src) as c:
            if ehlo:
                replies.append(c.ehlo())
            for cmd in commands:
                if isinstance(cmd, tuple):
                    c.send(cmd[0])
                    replies += c.replies(cmd[1])
                else:
                    replies.append(c.cmd(cmd))
            if not c.eof:
                try:
                    replies.append(c.cmd("QUIT"))
                except (hf.ConnectionClosed, OSError):
                    pass  # closed by a 421
            replies += c.wait_closed()
        return src, replies, mark

    def test_each_refusal_has_its_line(self):
        long_line = "NOOP " + "x" * 600
        cases = [
            ("553 5.6.7 non-ASCII sender without SMTPUTF8",
             ["MAIL FROM:<d\u00f6rte@example.org>"],
             [LINE_RE % ("MAIL", "%s", 553, r"5\.6\.7") + r"Non-ASCII sender"]),
            ("501 5.5.4 HELO without a name", ["HELO"],
             [LINE_RE % ("HELO", "%s", 501, r"5\.5\.4")]),
            ("452 4.5.3 too many recipients",
             ["MAIL FROM:<s@example.org>", "RCPT TO:<alice@branch.test>",
              "RCPT TO:<bob@branch.test>", "RCPT TO:<carol@branch.test>"],
             [LINE_RE % ("RCPT", "%s", 452, r"4\.5\.3")
              + r"Too many recipients; from=<s@example\.org> to=<carol@branch\.test> "
                r"proto=ESMTP helo=<%s> c=\d+ nrcpt=2" % re.escape(CLIENT_NAME)]),
            ("538 5.7.11 AUTH before TLS", ["AUTH PLAIN AGFsaWNlAHNlY3JldA=="],
             [LINE_RE % ("AUTH", "%s", 538, r"5\.7\.11")]),
            ("502 ATRN and TURN", ["ATRN branch.test", "TURN"],
             [LINE_RE % ("ATRN", "%s", 502, r"5\.5\.1"), LINE_RE % ("TURN", "%s", 502, r"5\.5\.1")]),
            ("500 5.5.2 line too long", [long_line],
             [LINE_RE % ("UNKNOWN", "%s", 500, r"5\.5\.2") + "Line too long"]),
            ("500 5.5.2 bare LF in a command line", [(b"NOOP\nRSET\r\n", 1)],
             [LINE_RE % ("UNKNOWN", "%s", 500, r"5\.5\.2")]),
            ("503 5.5.1 bad sequence", ["RCPT TO:<alice@branch.test>", "DATA"],
             [LINE_RE % ("RCPT", "%s", 503, r"5\.5\.1"), LINE_RE % ("DATA", "%s", 503, r"5\.5\.1")]),
            ("550 5.7.1 relaying denied, once",
             ["MAIL FROM:<s@example.org>", "RCPT TO:<x@elsewhere.example>"],
             [LINE_RE % ("RCPT", "%s", 550, r"5\.7\.1") + r"<x@elsewhere\.example>: Relaying "
              r"denied; from=<s@example\.org> to=<x@elsewhere\.example> proto=ESMTP "
              r"helo=<\S+> c=\d+ nrcpt=0 reason=relay_denied$"]),
            ("550 5.7.1 %-hack", ["MAIL FROM:<s@example.org>", "RCPT TO:<a%b@branch.test>"],
             [LINE_RE % ("RCPT", "%s", 550, r"5\.7\.1") + r".* reason=relay_trick$"]),
            ("550 5.1.1 unknown user",
             ["MAIL FROM:<s@example.org>", "RCPT TO:<eve@branch.test>"],
             [LINE_RE % ("RCPT", "%s", 550, r"5\.1\.1") + r".* to=<eve@branch\.test> .*"
              r"reason=unknown_user$"]),
            ("552 5.3.4 SIZE over the limit", ["MAIL FROM:<s@example.org> SIZE=200000"],
             [LINE_RE % ("MAIL", "%s", 552, r"5\.3\.4") + r".*; from=<s@example\.org> "]),
            ("555 5.5.4 unknown MAIL parameter", ["MAIL FROM:<s@example.org> FOO=bar"],
             [LINE_RE % ("MAIL", "%s", 555, r"5\.5\.4")]),
            ("500 5.5.1 unknown command", ["XYZZY"],
             [LINE_RE % ("UNKNOWN", "%s", 500, r"5\.5\.1")]),
            ("502 EXPN, 501 VRFY", ["EXPN staff", "VRFY"],
             [LINE_RE % ("EXPN", "%s", 502, r"5\.5\.1"), LINE_RE % ("VRFY", "%s", 501, r"5\.5\.4")]),
            ("459 ETRN for a domain not served, once", ["ETRN elsewhere.example"],
             [r"NOQUEUE: reject: ETRN from unknown\[%s\]: 459 .* etrn arg=elsewhere\.example "
              r"trusted=\w+ reply=459 "]),
            ("501 ETRN syntax", ["ETRN @"],
             [LINE_RE % ("ETRN", "%s", 501, r"5\.5\.4")]),
            ("503 BDAT before MAIL", [(b"BDAT 3 LAST\r\nabc", 1)],
             [LINE_RE % ("BDAT", "%s", 503, r"5\.5\.1") + r".* reason=no_mail"]),
            ("554 5.6.0 bare LF in DATA",
             ["MAIL FROM:<s@example.org>", "RCPT TO:<alice@branch.test>", "DATA",
              (b"Subject: x\r\n\r\nbare\nLF\r\n.\r\n", 1)],
             [LINE_RE % ("END-OF-MESSAGE", "%s", 554, r"5\.6\.0")
              + r".*; from=<s@example\.org> to=<alice@branch\.test> .* reason=bare_lf$"]),
            ("421 4.7.0 too many errors", ["XYZZY", "XYZZY", "XYZZY", "XYZZY"],
             [LINE_RE % ("UNKNOWN", "%s", 421, r"4\.7\.0") + r".* reason=too_many_errors"]),
        ]
        for name, cmds, expect in cases:
            with self.subTest(case=name):
                src, replies, mark = self.session(cmds)
                self.assertTrue(any(r.code >= 400 for r in replies), (name, replies))
                self.check(src, replies, [rx.replace("%s", re.escape(src), 1)
                                          if "%s" in rx else rx for rx in expect], mark)

    def test_ehlo_refusal_without_ehlo(self):
        # Before any HELO: proto=SMTP and no helo= field.
        src, replies, mark = self.session(["MAIL FROM:<s@example.org>"], ehlo=False)
        self.check(src, replies, [LINE_RE % ("MAIL", re.escape(src), 503, r"5\.5\.1")
                                  + r"Send HELO or EHLO first; from=<s@example\.org> "
                                    r"proto=SMTP c=\d+ nrcpt=0$"], mark)

    def test_connection_limit(self):
        src = self.source()
        mark = self.relayd.mark()
        held = [self.raw(src), self.raw(src)]
        try:
            # RawSMTP read each 220 greeting: both sessions exist now.
            with hf.RawSMTP(self.relayd.port, greet=False, source=src) as third:
                got = third.wait_closed()
            self.assertEqual([r.code for r in got], [421], got)
        finally:
            for c in held:
                c.close()
        self.check(src, got, [LINE_RE % ("CONNECT", re.escape(src), 421, r"4\.7\.0")
                              + r".* reason=max_connections_per_ip limit=2$"], mark)

    def test_authenticated_refusal_names_user(self):
        src = self.source()
        mark = self.relayd.mark()
        s = self.smtp_tls(src)
        replies = []
        try:
            s.user, s.password = "alice", tlslib.USERS["alice"][0]
            code, msg = s.auth("PLAIN", s.auth_plain)
            self.assertEqual(code, 235, msg)
            s.mail("alice@branch.test")
            code, msg = s.rcpt("eve@branch.test")
            replies.append(hf.Reply(code, [msg.decode()], b"%d %s\r\n" % (code, msg)))
        finally:
            self.quit(s)
        self.check(src, replies, [LINE_RE % ("RCPT", re.escape(src), 550, r"5\.1\.1")
                                  + r".* user=alice reason=unknown_user$"], mark)


if __name__ == "__main__":
    unittest.main()
