"""SIGHUP reloads the credentials file (issue 16): a user added to auth_file can
authenticate after the reload, a removed one cannot; a session that was open before the
reload still checks against the credentials it started with; a credentials file with a bad
line is refused (file:line logged) and the running credentials stay."""

import os
import signal
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlslib  # noqa: E402
from tlslib import CLIENT_NAME, USERS  # noqa: E402

ALICE_PW = USERS["alice"][0]
DORA_PW = "dora's new password"


class ReloadAuth(tlslib.TLSRelaydCase):
    AUTH = True
    DOMAINS = {"branch.test": {}}
    CONF = {"allow_root": "yes"}

    def auth(self, s, user, password):
        s.user, s.password = user, password
        try:
            code, msg = s.auth("PLAIN", s.auth_plain)
        except smtplib.SMTPAuthenticationError as e:
            code, msg = e.smtp_code, e.smtp_error
        return code

    def try_auth(self, user, password):
        s = self.smtp_tls()
        try:
            return self.auth(s, user, password)
        finally:
            self.quit(s)

    def write_users(self, users, extra=""):
        path = self.relayd.conf["auth_file"]
        with open(path, "w") as f:
            for u, (pw, doms) in users.items():
                f.write(tlslib.credentials_line(u, pw, doms) + "\n")
            f.write(extra)

    def hup(self, expect=r"signal HUP received: reloaded "):
        mark = self.relayd.mark()
        self.relayd.proc.send_signal(signal.SIGHUP)
        return self.relayd.wait_log(expect, after=mark), mark

    def test_added_and_removed_users(self):
        self.assertEqual(self.try_auth("dora", DORA_PW), 535)
        users = dict(USERS)
        users["dora"] = (DORA_PW, "branch.test")
        del users["alice"]
        self.write_users(users)
        self.hup()
        self.assertEqual(self.try_auth("dora", DORA_PW), 235)
        self.assertEqual(self.try_auth("alice", ALICE_PW), 535)

    def test_open_session_keeps_its_credentials(self):
        old = self.smtp_tls()
        try:
            users = dict(USERS)
            del users["alice"]
            self.write_users(users)
            self.hup()
            # Opened before the reload: alice is still known there.
            self.assertEqual(self.auth(old, "alice", ALICE_PW), 235)
        finally:
            self.quit(old)
        self.assertEqual(self.try_auth("alice", ALICE_PW), 535)

    def test_bad_credentials_file_refused(self):
        users = dict(USERS)
        users["dora"] = (DORA_PW, "branch.test")
        self.write_users(users, extra="not a credentials line\n")
        path = self.relayd.conf["auth_file"]
        _, mark = self.hup(r"reload refused, the running configuration stays")
        self.relayd.wait_log(r"error: reload: %s:%d: " % (path, len(users) + 1), after=mark)
        self.assertEqual(self.try_auth("alice", ALICE_PW), 235)
        self.assertEqual(self.try_auth("dora", DORA_PW), 535)


if __name__ == "__main__":
    unittest.main()
