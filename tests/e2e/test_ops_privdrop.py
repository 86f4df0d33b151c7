"""relayd started as root drops to `user` once its ports, queue and control socket are open
(issue 16): the process runs with the user's ids, the queue and the socket belong to the
user, mail is taken and relayctl works; and every refusal has its clear message: root
without `user` (a warning, the chosen behaviour), `user` naming root, an unknown user, a
queue owned by a third user, a control socket directory others may write."""

import os
import shutil
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfharness  # noqa: E402
import opslib  # noqa: E402
from hfharness import send_smtplib  # noqa: E402


class PrivDropTest(hfharness.HFTestCase):
    def setUp(self):
        super().setUp()
        opslib.require_root(self)
        self.user = opslib.TestUser()
        self.addCleanup(self.user.remove)

    def relayd(self, **conf):
        r = self.start_relayd(conf=conf, start=False)
        os.chmod(r.dir, 0o755)  # the config must stay readable for a reload as the user
        return r

    def test_runs_as_user_and_owns_queue(self):
        r = self.relayd(user=self.user.name)
        r.start()
        uids, gids, groups = opslib.proc_ids(r.proc.pid)
        self.assertEqual(uids, [self.user.uid] * 3)
        self.assertEqual(gids, [self.user.gid] * 3)
        self.assertNotIn(0, groups)
        self.assertRegex(r.log_text(), r"running as user=%s uid=%d group=%s gid=%d"
                         % (self.user.name, self.user.uid, self.user.name, self.user.gid))
        qid = send_smtplib(r, "a@example.test", ["alice@branch.test"],
                           hfharness.make_body("drop", "taken as the user\r\n"))
        for name in [r.queue_dir] + [os.path.join(r.queue_dir, f)
                                     for f in os.listdir(r.queue_dir)]:
            st = os.stat(name)
            self.assertEqual((st.st_uid, st.st_gid), (self.user.uid, self.user.gid), name)
        sock = os.path.join(r.dir, "relayd.sock")
        st = os.stat(sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(st.st_uid, self.user.uid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        # relayctl reads the queue and acts through the control socket (root may use it).
        ids = [m["id"] for m in r.relayctl_json("list")["messages"]]
        self.assertIn(qid, ids)
        out = hfharness.relayctl("hold", "branch.test", conf=r.conf_path)
        self.assertEqual(out.returncode, 0, out.stderr)
        # A reload runs as the user and still works.
        mark = opslib.log_size(r)
        r.proc.send_signal(1)
        opslib.wait_log(r, r"signal HUP received: reloaded ", after=mark)
        qid2 = send_smtplib(r, "a@example.test", ["bob@branch.test"],
                            hfharness.make_body("drop", "after the reload\r\n"))
        self.assertNotEqual(qid, qid2)
        self.assertEqual(r.stop(), 0)

    def test_root_without_user_warns(self):
        r = self.relayd()
        r.start()
        uids, _, _ = opslib.proc_ids(r.proc.pid)
        self.assertEqual(uids[1], 0)
        self.assertRegex(r.log_text(), r"warning: running as root: set user = holdfast")
        r.stop()
        r2 = self.relayd(allow_root="yes")
        r2.start()
        self.assertNotIn("running as root", r2.log_text())

    def test_user_root_refused(self):
        status, text = self.relayd(user="root").run_to_exit()
        self.assertNotEqual(status, 0)
        self.assertIn("user = root is root: relayd refuses to keep running as root", text)
        r = self.relayd(user="root", allow_root="yes")
        r.start()
        self.assertIn("running as root (user = root, allow_root = yes)", r.log_text())

    def test_unknown_user(self):
        status, text = self.relayd(user="hf-no-such-user").run_to_exit()
        self.assertNotEqual(status, 0)
        self.assertIn("user 'hf-no-such-user' does not exist", text)

    def test_queue_of_another_user_refused(self):
        r = self.relayd(user=self.user.name)
        os.mkdir(r.queue_dir, 0o700)
        os.chown(r.queue_dir, 65534, 65534)  # nobody's, not ours
        status, text = r.run_to_exit()
        self.assertNotEqual(status, 0)
        self.assertRegex(text, r"queue_dir .*queue is owned by uid 65534 \(nobody\), not by "
                               r"root or user %s" % self.user.name)
        self.assertEqual(os.stat(r.queue_dir).st_uid, 65534, "taken over anyway")

    def test_control_socket_dir_writable_by_others_refused(self):
        r = self.relayd(user=self.user.name, control_socket="./open/relayd.sock")
        os.mkdir(os.path.join(r.dir, "open"))
        os.chmod(os.path.join(r.dir, "open"), 0o777)
        status, text = r.run_to_exit()
        self.assertNotEqual(status, 0)
        self.assertRegex(text, r"control_socket .*: the directory .*open of the control socket "
                               r"is writable by group or others \(mode 777\)")


def free_low_port(host="127.0.0.1"):
    """A port below 1024 that is free on host now (root binds it to find out)."""
    import socket
    for port in range(700, 1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise unittest.SkipTest("no free port below 1024")


class AmbientCapTest(hfharness.HFTestCase):
    """As the systemd unit runs it: started as the user with only CAP_NET_BIND_SERVICE
    (setpriv stands in for systemd's User= and AmbientCapabilities=), relayd binds a port
    below 1024 and then holds no capability at all."""

    def test_unprivileged_with_bind_capability(self):
        opslib.require_root(self)
        user = opslib.TestUser()
        self.addCleanup(user.remove)
        port = free_low_port()
        r = self.start_relayd(conf={"user": user.name, "listen": "127.0.0.1:%d" % port},
                              start=False)
        os.chmod(r.dir, 0o755)
        os.mkdir(r.queue_dir, 0o700)
        os.chown(r.queue_dir, user.uid, user.gid)
        os.chown(r.dir, user.uid, user.gid)  # the control socket is made there
        saved = hfharness.RELAYD
        wrapper = os.path.join(r.dir, "relayd-as-user")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec setpriv --reuid=%d --regid=%d --init-groups "
                    "--inh-caps=+net_bind_service --ambient-caps=+net_bind_service %s \"$@\"\n"
                    % (user.uid, user.gid, saved))
        os.chmod(wrapper, 0o755)
        hfharness.RELAYD = wrapper
        try:
            r.start()
        finally:
            hfharness.RELAYD = saved
        pid = r.proc.pid  # setpriv execs relayd: the same process
        uids, gids, _ = opslib.proc_ids(pid)
        self.assertEqual(uids, [user.uid] * 3)
        with open("/proc/%d/status" % pid) as f:
            caps = dict(l.split(":", 1) for l in f if l.startswith("Cap"))
        for k in ("CapEff", "CapPrm", "CapAmb", "CapInh"):
            self.assertEqual(int(caps[k], 16), 0, "%s=%s" % (k, caps[k].strip()))
        send_smtplib(r, "a@example.test", ["alice@branch.test"],
                     hfharness.make_body("cap", "on a port below 1024\r\n"))
        self.assertEqual(os.stat(os.path.join(r.queue_dir, "data.mdb")).st_uid, user.uid)
        self.assertIn("running as user=%s uid=%d already" % (user.name, user.uid), r.log_text())


class FetchdPrivDropTest(unittest.TestCase):
    """fetchd started as root with user set: runs as that user, says READY=1 after."""

    def test_fetchd_runs_as_user(self):
        opslib.require_root(self)
        import fetchdlib  # aiosmtpd/dnslib only needed here
        user = opslib.TestUser()
        self.addCleanup(user.remove)
        n = opslib.NotifyListener(mode=0o666)
        self.addCleanup(n.close)
        relay_port = hfharness.free_port()  # nobody listens: the release just fails
        f = fetchdlib.Fetchd(globals_={"user": user.name, "retry_limit": "0"},
                             relays={"r1": {"host": "127.0.0.1", "port": str(relay_port),
                                            "domains": "branch.test"}})
        f.write_config()
        self.addCleanup(shutil.rmtree, f.dir, ignore_errors=True)
        self.addCleanup(f.stop)
        saved = os.environ.get("NOTIFY_SOCKET")
        os.environ["NOTIFY_SOCKET"] = n.path
        try:
            f.start("-f")
        finally:
            if saved is None:
                os.environ.pop("NOTIFY_SOCKET")
            else:
                os.environ["NOTIFY_SOCKET"] = saved
        n.wait_for("READY=1")
        uids, gids, _ = opslib.proc_ids(f.proc.pid)
        self.assertEqual(uids, [user.uid] * 3)
        self.assertEqual(gids, [user.gid] * 3)
        f.wait_log(r"running as user=%s uid=%d" % (user.name, user.uid))
        f.signal(15)
        n.wait_for("STOPPING=1")
        self.assertEqual(f.wait_exit(15), 0)
        f.stop()
        self.assertEqual(f.problems, [])


if __name__ == "__main__":
    unittest.main()
