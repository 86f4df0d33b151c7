"""Helpers for the operations tests (test_ops_*.py): reading relayd's log file as it grows,
a throwaway system user, a NOTIFY_SOCKET receiver, and the ids of a running process.

Every wait is bounded (hfharness.timeout scales it for sanitizer builds); waits poll the
log file or the socket with short timeouts, never sleep for a fixed time."""

import os
import pwd
import re
import socket
import subprocess
import tempfile
import time
import unittest

import hfharness
from hfharness import timeout


def log_size(relayd):
    """Offset for wait_log(after=...): only what is logged from now on."""
    try:
        return os.path.getsize(relayd.log_path)
    except OSError:
        return 0


def wait_log(relayd, pattern, after=0, bound=20.0):
    """Waits until relayd's log (from offset after) has a line matching pattern; returns
    the match. Fails when relayd exits first or the bound passes."""
    rx = re.compile(pattern, re.M)
    deadline = time.monotonic() + timeout(bound)
    while True:
        with open(relayd.log_path, "rb") as f:
            f.seek(after)
            text = f.read().decode("utf-8", "replace")
        m = rx.search(text)
        if m:
            return m
        if relayd.proc is not None and relayd.proc.poll() is not None:
            raise AssertionError("relayd exited (status %s) before logging %r\n%s"
                                 % (relayd.proc.returncode, pattern, text))
        if time.monotonic() > deadline:
            raise AssertionError("no log line matching %r within %.0f s\n%s"
                                 % (pattern, timeout(bound), text))
        try:
            relayd.proc.wait(0.05)  # returns early only if relayd exits
        except subprocess.TimeoutExpired:
            pass


def proc_ids(pid):
    """(real, effective, saved uid), (real, effective, saved gid), [groups] of pid."""
    uids = gids = groups = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                uids = [int(x) for x in line.split()[1:4]]
            elif line.startswith("Gid:"):
                gids = [int(x) for x in line.split()[1:4]]
            elif line.startswith("Groups:"):
                groups = [int(x) for x in line.split()[1:]]
    return uids, gids, groups


def require_root(case):
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root (starts relayd as root and switches users)")


class TestUser:
    """A system user made for one test (useradd --system) and removed afterwards."""

    def __init__(self):
        self.name = "hfops%d" % os.getpid()
        if subprocess.run(["id", self.name], capture_output=True).returncode == 0:
            subprocess.run(["userdel", self.name], capture_output=True)
        r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                            self.name], capture_output=True, text=True)
        if r.returncode != 0:
            raise unittest.SkipTest("useradd failed: %s" % r.stderr.strip())
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

    def remove(self):
        subprocess.run(["userdel", self.name], capture_output=True)


class NotifyListener:
    """A Unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, mode=0o600):
        self.dir = tempfile.mkdtemp(prefix="hf-notify-")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, mode)
        self.messages = []

    def wait_for(self, key, bound=20.0):
        """Reads datagrams until one has the line key (e.g. "READY=1"); returns that
        datagram's fields as a dict. Every datagram read is kept in self.messages."""
        deadline = time.monotonic() + timeout(bound)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %.0f s; got %r"
                                     % (key, timeout(bound), self.messages))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(l.split("=", 1) for l in data.decode().split("\n") if "=" in l)
            self.messages.append(fields)
            k, v = key.split("=", 1)
            if fields.get(k) == v:
                return fields

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.rmdir(self.dir)


def start_with_env(relayd, env, expect_ready=True):
    """Starts relayd (an hfharness.Relayd) with extra environment variables."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return relayd.start(expect_ready=expect_ready)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
