"""AUTH PLAIN and LOGIN over TLS (issue 5, RFC 4954), with Python's smtplib.

relayd's auth_file is made with `relayd --hash-password USER DOMAINS` (password on stdin).
After STARTTLS: the right password gets 235 2.7.0 with PLAIN and LOGIN, with and without an
initial response; a wrong password and an unknown user both get 535 5.7.8 with the very same
text; before TLS, AUTH gets 538 5.7.11 and the credentials are never checked; after
auth_fail_limit failures from one address, the next attempt (even a right one) gets 454 4.7.0
while other addresses still authenticate. With submission = yes an authenticated client may
relay to any domain and the Received: header says ESMTPSA and the TLS version and cipher;
with submission = no the same RCPT gets 550 5.7.1. With etrn_require_auth = yes, ETRN needs
AUTH.
"""

import base64
import os
import re
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnlib  # noqa: E402
import tlslib  # noqa: E402
from tlslib import CLIENT_NAME, USERS  # noqa: E402

ALICE_PW = USERS["alice"][0]
BAD_RE = r"^5\.7\.8 "
FOREIGN = "someone@elsewhere.example"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


received_of = tlslib.received_of


class AuthCase(tlslib.TLSRelaydCase):
    AUTH = True
    DOMAINS = {"branch.test": {}}
    # Relaying is a right given per user (submission_users); alice has it here.
    CONF = {"auth_fail_limit": "3", "submission_users": "alice"}

    def auth(self, s, mech, user, password, initial=True):
        """smtplib's AUTH with one mechanism; returns (code, text) whatever the outcome."""
        s.user, s.password = user, password
        obj = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mech]
        try:
            code, msg = s.auth(mech, obj, initial_response_ok=initial)
        except smtplib.SMTPAuthenticationError as e:
            code, msg = e.smtp_code, e.smtp_error
        return code, msg.decode("utf-8", "replace")

    def assertAuth(self, got, code, text_re):
        self.assertEqual(got[0], code, got)
        self.assertRegex(got[1], text_re)


class Auth(AuthCase):

    def test_plain_and_login_success(self):
        r = self.relayd
        for mech in ("PLAIN", "LOGIN"):
            for initial in (True, False):
                with self.subTest(mech=mech, initial_response=initial):
                    mark = r.mark()
                    s = self.smtp_tls()
                    try:
                        self.assertTrue(s.has_extn("auth"))
                        self.assertAuth(self.auth(s, mech, "alice", ALICE_PW, initial),
                                        235, r"^2\.7\.0 ")
                        # AUTH is not offered again, nor accepted twice.
                        s.ehlo(CLIENT_NAME)
                        self.assertFalse(s.has_extn("auth"), s.esmtp_features)
                        code, msg = s.docmd("AUTH", "PLAIN " + b64("\0alice\0" + ALICE_PW))
                        self.assertEqual(code, 503, msg)
                    finally:
                        self.quit(s)
                    r.wait_log(r"c=\d+ auth ok user=alice client=\[127\.0\.0\.1\]", after=mark)

    def test_wrong_password_and_unknown_user_same_reply(self):
        r = self.relayd
        replies = {}
        # Two failures per source address: under auth_fail_limit (3).
        for mech, source in (("PLAIN", "127.0.0.2"), ("LOGIN", "127.0.0.3")):
            for user, pw in (("alice", "not the password"), ("mallory", ALICE_PW)):
                mark = r.mark()
                s = self.smtp_tls(source)
                try:
                    got = self.auth(s, mech, user, pw)
                    replies[(mech, user)] = got
                    self.assertAuth(got, 535, BAD_RE)
                    # The session goes on: the right credentials still work in it.
                    self.assertAuth(self.auth(s, mech, "alice", ALICE_PW), 235, r"^2\.7\.0 ")
                finally:
                    self.quit(s)
                # One line for the refusal, by the 535 reply itself, naming the user.
                r.wait_log(r"NOQUEUE: reject: AUTH from unknown\[%s\]: 535 5\.7\.8 .* "
                           r"reason=auth_failed sasl_username=%s " % (re.escape(source), user),
                           after=mark)
        self.assertEqual(len(set(replies.values())), 1,
                         "a wrong password and an unknown user must get the same reply: %r"
                         % replies)

    def test_unknown_user_costs_a_hash_too(self):
        """No timing tells a valid user from an invalid one: an unknown user's password is
        hashed too (scrypt, ~0.1 s), so both failures take about as long. The bound is loose
        (a third): without the dummy hash the unknown user would answer ~100 times faster."""
        times = {"alice": [], "mallory": []}
        n = 0
        for _ in range(3):
            for user in ("alice", "mallory"):
                n += 1
                s = self.smtp_tls("127.0.0.%d" % (10 + n))  # one failure per address
                try:
                    t0 = time.monotonic()
                    code, msg = s.docmd("AUTH", "PLAIN " + b64("\0%s\0wrong password" % user))
                    times[user].append(time.monotonic() - t0)
                    self.assertEqual(code, 535, msg)
                finally:
                    self.quit(s)
        # Fastest of three each: load on a busy machine only ever adds time, so the minimum
        # of the known user is close to one scrypt run, which an unknown user cannot beat
        # by a factor of four unless it skipped the hash.
        known, unknown = min(times["alice"]), min(times["mallory"])
        self.assertGreater(unknown, known / 4, times)

    def test_authzid_other_than_user_refused(self):
        s = self.smtp_tls()
        try:
            code, msg = s.docmd("AUTH", "PLAIN " + b64("bob\0alice\0" + ALICE_PW))
            self.assertEqual(code, 535, msg)
        finally:
            self.quit(s)

    def test_auth_before_tls_538(self):
        r = self.relayd
        mark = r.mark()
        s = r.smtp()
        try:
            s.ehlo(CLIENT_NAME)
            self.assertFalse(s.has_extn("auth"), s.esmtp_features)
            for arg in ("PLAIN " + b64("\0alice\0" + ALICE_PW), "PLAIN", "LOGIN",
                        "LOGIN " + b64("alice")):
                code, msg = s.docmd("AUTH", arg)
                self.assertEqual(code, 538, (arg, msg))
                self.assertRegex(msg.decode(), r"^5\.7\.11 ")
            # The session goes on and can still upgrade, then authenticate.
            code, msg = tlslib.starttls(s, self.pki.client_context(check_hostname=True))
            self.assertEqual(code, 220, msg)
            s.ehlo(CLIENT_NAME)
            self.assertAuth(self.auth(s, "PLAIN", "alice", ALICE_PW), 235, r"^2\.7\.0 ")
        finally:
            self.quit(s)
        # The plaintext attempts never reached the credential check: the only check logged
        # is the one over TLS.
        r.wait_log(r"c=\d+ auth ok user=alice", after=mark)
        checks = r"c=\d+ auth ok|reason=(auth_failed|too_many_failures)"
        self.assertEqual(len(r.log_lines(checks, after=mark)), 1, r.log_lines(checks, after=mark))
        # Each 538 left its one line.
        self.assertEqual(len(r.log_lines(r"NOQUEUE: reject: AUTH from unknown\[127\.0\.0\.1\]: "
                                         r"538 5\.7\.11 ", after=mark)), 4)

    def test_bad_exchanges(self):
        s = self.smtp_tls()
        try:
            code, msg = s.docmd("AUTH", "CRAM-MD5")
            self.assertEqual(code, 504, msg)
            code, msg = s.docmd("AUTH", "LOGIN")
            self.assertEqual(code, 334, msg)
            code, msg = s.docmd("*")  # RFC 4954 4: the client cancels
            self.assertEqual(code, 501, msg)
            code, msg = s.docmd("AUTH", "PLAIN !!!notbase64")
            self.assertEqual(code, 501, msg)
            code, msg = s.noop()
            self.assertEqual(code, 250, msg)
            # Inside a mail transaction AUTH is refused (RFC 4954 4).
            s.mail("sender@example.org")
            code, msg = s.docmd("AUTH", "PLAIN " + b64("\0alice\0" + ALICE_PW))
            self.assertEqual(code, 503, msg)
        finally:
            self.quit(s)

    def limited_attempts(self, src):
        """auth_fail_limit (3) failures from src, then the right password with PLAIN and
        LOGIN. Returns (replies to the last two, the log mark before them, whether a new
        minute began meanwhile: the limit counts per client per clock minute)."""
        minute = int(time.time()) // 60
        for i in range(3):
            s = self.smtp_tls(src)
            try:
                self.assertAuth(self.auth(s, "PLAIN" if i % 2 else "LOGIN", "alice",
                                          "wrong %d" % i), 535, BAD_RE)
            finally:
                self.quit(s)
        mark = self.relayd.mark()
        got = []
        for mech in ("PLAIN", "LOGIN"):
            s = self.smtp_tls(src)
            try:
                got.append(self.auth(s, mech, "alice", ALICE_PW))
            finally:
                self.quit(s)
        return got, mark, int(time.time()) // 60 != minute

    def test_rate_limit_454(self):
        r = self.relayd
        got, mark, new_minute = self.limited_attempts("127.0.0.4")
        if new_minute and any(g[0] != 454 for g in got):
            # The window turned over in the middle: once more, well inside one minute.
            src = "127.0.0.6"
            got, mark, _ = self.limited_attempts(src)
        else:
            src = "127.0.0.4"
        # Even the right password is refused now, temporarily.
        for g in got:
            self.assertAuth(g, 454, r"^4\.7\.0 ")
        r.wait_log(r"NOQUEUE: reject: AUTH from unknown\[%s\]: 454 4\.7\.0 .* "
                   r"reason=too_many_failures" % re.escape(src), after=mark, count=2)
        self.assertEqual(r.log_lines(r"auth ok", after=mark), [])
        # Another client is not affected.
        s = self.smtp_tls("127.0.0.5")
        try:
            self.assertAuth(self.auth(s, "PLAIN", "alice", ALICE_PW), 235, r"^2\.7\.0 ")
        finally:
            self.quit(s)

    def test_submission_yes_relays_with_esmtpsa(self):
        r = self.relayd
        # Without AUTH, even over TLS, a foreign recipient is refused.
        s = self.smtp_tls()
        try:
            s.mail("sender@example.org")
            code, msg = s.rcpt(FOREIGN)
            self.assertEqual(code, 550, msg)
            self.assertRegex(msg.decode(), r"^5\.7\.1 ")
        finally:
            self.quit(s)
        s = self.smtp_tls()
        try:
            version, cipher = s.sock.version(), s.sock.cipher()[0]
            self.assertAuth(self.auth(s, "LOGIN", "alice", ALICE_PW), 235, r"^2\.7\.0 ")
            code, msg = s.mail("alice@branch.test")
            self.assertEqual(code, 250, msg)
            code, msg = s.rcpt(FOREIGN)
            self.assertEqual(code, 250, msg)
            code, msg = s.data(etrnlib.make_body("submission", "relayed after AUTH\r\n"))
            self.assertEqual(code, 250, msg)
            qid = etrnlib.QUEUED_RE.search(msg.decode()).group(1).upper()
        finally:
            self.quit(s)
        rcv = received_of(r.body(qid))
        self.assertRegex(rcv, r"\bwith ESMTPSA id %s\b" % qid, rcv)
        # The user is logged, but named in the header only with received_auth_user = yes.
        self.assertNotIn("alice", rcv.split("by ")[0] + rcv.split(" id ")[0])
        self.assertNotIn("authenticated as", rcv)
        self.assertIn("(using %s with cipher %s)" % (version, cipher), rcv)
        self.assertRegex(rcv, r"\(using TLSv1\.[23] with cipher ", rcv)
        queued = [m for m in r.list_json() if m["id"] == qid]
        self.assertEqual(len(queued), 1, r.list_json())
        self.assertEqual([x["addr"] for x in queued[0]["rcpts"]], [FOREIGN])


class SubmissionUsers(AuthCase):
    CONF = {"submission_users": "carol dave"}

    def test_only_listed_users_may_relay(self):
        s = self.smtp_tls()
        try:
            self.assertAuth(self.auth(s, "PLAIN", "alice", ALICE_PW), 235, r"^2\.7\.0 ")
            s.mail("alice@branch.test")
            code, msg = s.rcpt(FOREIGN)  # alice is not in submission_users
            self.assertEqual(code, 550, msg)
            self.assertRegex(msg.decode(), r"^5\.7\.1 ")
            code, msg = s.rcpt("bob@branch.test")  # relay domains stay open to her
            self.assertEqual(code, 250, msg)
        finally:
            self.quit(s)


class SubmissionDefault(AuthCase):
    """Nobody may relay unless submission_users names them: with auth_file set and the
    default submission = yes, an authenticated user (a fetchd account, say) gets 550 5.7.1
    for a foreign domain, and relayd -t says nothing about submission."""
    CONF = {}

    def test_authenticated_user_may_not_relay_by_default(self):
        r = self.relayd
        mark = r.mark()
        s = self.smtp_tls()
        try:
            self.assertAuth(self.auth(s, "PLAIN", "alice", ALICE_PW), 235, r"^2\.7\.0 ")
            s.mail("alice@branch.test")
            code, msg = s.rcpt(FOREIGN)
            self.assertEqual(code, 550, msg)
            self.assertRegex(msg.decode(), r"^5\.7\.1 ")
            code, msg = s.rcpt("bob@branch.test")  # the relay domains stay open
            self.assertEqual(code, 250, msg)
        finally:
            self.quit(s)
        r.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 550 5\.7\.1 <%s>: "
                   r"Relaying denied; from=<alice@branch\.test> to=<%s> .* user=alice "
                   r"reason=relay_denied why=user_not_in_submission_users"
                   % (re.escape(FOREIGN), re.escape(FOREIGN)), after=mark)
        t = subprocess.run([etrnlib.RELAYD, "-c", r.conf_path, "-t"],
                                  capture_output=True, text=True, timeout=60)
        self.assertEqual(t.returncode, 0, t.stderr)
        self.assertNotIn("submission", t.stderr)


class SubmissionEveryone(AuthCase):
    """submission_users = * gives the right to every user of auth_file: allowed, but relayd
    -t and the start-up log warn about it, by name."""
    CONF = {"submission_users": "*"}

    def test_star_relays_and_warns(self):
        r = self.relayd
        s = self.smtp_tls()
        try:
            self.assertAuth(self.auth(s, "PLAIN", "alice", ALICE_PW), 235, r"^2\.7\.0 ")
            s.mail("alice@branch.test")
            code, msg = s.rcpt(FOREIGN)
            self.assertEqual(code, 250, msg)
        finally:
            self.quit(s)
        self.assertRegex(r.log_text(), r"warning: submission_users = \*: every user in auth_file ")
        t = subprocess.run([etrnlib.RELAYD, "-c", r.conf_path, "-t"],
                                  capture_output=True, text=True, timeout=60)
        self.assertEqual(t.returncode, 0, t.stderr)
        self.assertRegex(t.stderr, r"warning: submission_users = \*: every user in auth_file "
                                   r"\S+ may relay to any domain")


class SubmissionUnknownUser(AuthCase):
    CONF = {"submission_users": "alice nosuchuser"}

    def test_t_warns_about_a_user_not_in_auth_file(self):
        r = self.relayd
        t = subprocess.run([etrnlib.RELAYD, "-c", r.conf_path, "-t"],
                                  capture_output=True, text=True, timeout=60)
        self.assertEqual(t.returncode, 0, t.stderr)
        self.assertRegex(t.stderr, r"warning: submission_users names nosuchuser, who is not in ")
        self.assertNotIn("names alice", t.stderr)


class SubmissionOff(AuthCase):
    CONF = {"submission": "no"}

    def test_submission_no_refuses_foreign_rcpt(self):
        s = self.smtp_tls()
        try:
            self.assertAuth(self.auth(s, "PLAIN", "alice", ALICE_PW), 235, r"^2\.7\.0 ")
            s.mail("alice@branch.test")
            code, msg = s.rcpt(FOREIGN)
            self.assertEqual(code, 550, msg)
            self.assertRegex(msg.decode(), r"^5\.7\.1 ")
            code, msg = s.rcpt("bob@branch.test")
            self.assertEqual(code, 250, msg)
            code, msg = s.data(etrnlib.make_body("local", "to a relay domain\r\n"))
            self.assertEqual(code, 250, msg)
            qid = etrnlib.QUEUED_RE.search(msg.decode()).group(1).upper()
        finally:
            self.quit(s)
        rcv = received_of(self.relayd.body(qid))
        self.assertRegex(rcv, r"\bwith ESMTPSA id %s\b" % qid, rcv)


class ReceivedNamesUser(AuthCase):
    CONF = {"received_auth_user": "yes"}

    def test_received_names_the_authenticated_user(self):
        s = self.smtp_tls()
        try:
            self.assertAuth(self.auth(s, "PLAIN", "alice", ALICE_PW), 235, r"^2\.7\.0 ")
            s.mail("alice@branch.test")
            code, msg = s.rcpt("bob@branch.test")
            self.assertEqual(code, 250, msg)
            code, msg = s.data(etrnlib.make_body("named", "who sent it\r\n"))
            self.assertEqual(code, 250, msg)
            qid = etrnlib.QUEUED_RE.search(msg.decode()).group(1).upper()
        finally:
            self.quit(s)
        rcv = received_of(self.relayd.body(qid))
        self.assertIn("(authenticated as alice)", rcv)


class EtrnNeedsAuth(AuthCase):
    CONF = {"etrn_require_auth": "yes"}

    def test_etrn_require_auth(self):
        r = self.relayd
        code, text = r.etrn("branch.test")
        self.assertEqual(code, 459, text)
        self.assertIn("AUTH", text)
        s = self.smtp_tls()
        try:
            code, msg = s.docmd("ETRN", "branch.test")
            self.assertEqual(code, 459, msg)  # TLS alone is not enough
            self.assertAuth(self.auth(s, "PLAIN", "alice", ALICE_PW), 235, r"^2\.7\.0 ")
            code, msg = s.docmd("ETRN", "branch.test")
            self.assertIn(code, (250, 251, 252, 253), msg)
        finally:
            self.quit(s)


if __name__ == "__main__":
    unittest.main(verbosity=2)
