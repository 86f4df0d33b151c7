"""relayd speaks systemd's notify protocol (issue 16): a Unix datagram socket made by the test
and named in NOTIFY_SOCKET receives READY=1 once the listener and the queue are up (the
port answers at once, without retrying), RELOADING=1 (with MONOTONIC_USEC) then READY=1
around a SIGHUP, and STOPPING=1 on SIGTERM. Also after a drop to an unprivileged user."""

import os
import signal
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfharness  # noqa: E402
import opslib  # noqa: E402
from hfharness import timeout  # noqa: E402


class NotifyTest(hfharness.HFTestCase):
    def run_cycle(self, conf, mode=0o600):
        n = opslib.NotifyListener(mode=mode)
        self.addCleanup(n.close)
        r = self.start_relayd(conf=conf, start=False)
        os.chmod(r.dir, 0o755)
        opslib.start_with_env(r, {"NOTIFY_SOCKET": n.path}, expect_ready=False)
        ready = n.wait_for("READY=1")
        self.assertIn("STATUS", ready)
        # Ready means listening: the first connect is greeted, no retry needed.
        with socket.create_connection(("127.0.0.1", r.port), timeout=timeout(10)) as s:
            self.assertTrue(s.makefile("rb").readline().startswith(b"220 "))
        self.assertTrue(os.path.exists(os.path.join(r.queue_dir, "data.mdb")))
        r.proc.send_signal(signal.SIGHUP)
        reloading = n.wait_for("RELOADING=1")
        self.assertRegex(reloading.get("MONOTONIC_USEC", ""), r"^\d+$")
        again = n.wait_for("READY=1")
        self.assertIn("reloaded", again.get("STATUS", ""))
        r.proc.send_signal(signal.SIGTERM)
        n.wait_for("STOPPING=1")
        self.assertEqual(r.proc.wait(timeout(15)), 0)
        r.stop()
        kinds = [k for m in n.messages for k in ("READY", "RELOADING", "STOPPING") if k in m]
        self.assertEqual(kinds, ["READY", "RELOADING", "READY", "STOPPING"])
        return r

    def test_ready_reload_stopping(self):
        self.run_cycle({"allow_root": "yes"})

    def test_after_privilege_drop(self):
        opslib.require_root(self)
        user = opslib.TestUser()
        self.addCleanup(user.remove)
        # systemd's socket is writable by everyone; so is this one.
        self.run_cycle({"user": user.name}, mode=0o666)

    def test_refused_reload_still_ready(self):
        n = opslib.NotifyListener()
        self.addCleanup(n.close)
        r = self.start_relayd(start=False)
        opslib.start_with_env(r, {"NOTIFY_SOCKET": n.path}, expect_ready=False)
        n.wait_for("READY=1")
        with open(r.conf_path, "a") as f:
            f.write("no_such_key = 1\n")
        r.proc.send_signal(signal.SIGHUP)
        n.wait_for("RELOADING=1")
        again = n.wait_for("READY=1")
        self.assertIn("refused", again.get("STATUS", ""))

    def test_notify_socket_gone(self):
        # A NOTIFY_SOCKET nobody listens on any more costs nothing: relayd runs and reloads.
        r = self.start_relayd(start=False)
        opslib.start_with_env(r, {"NOTIFY_SOCKET": os.path.join(r.dir, "no-such-socket")})
        mark = opslib.log_size(r)
        r.proc.send_signal(signal.SIGHUP)
        opslib.wait_log(r, r"signal HUP received: reloaded ", after=mark)
        self.assertTrue(r.running())


if __name__ == "__main__":
    unittest.main()
