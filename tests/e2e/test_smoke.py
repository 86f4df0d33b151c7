"""Smoke test: relayd starts on the shipped configuration (conf/relayd.conf) and greets.

The shipped file is copied with its recipients file into a temporary directory; only the
listen port is changed (to a free one) so the test never collides with a running demo."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

BIN = os.environ.get("HF_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
SRC = os.environ.get("HF_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Smoke(unittest.TestCase):
    def test_config_check(self):
        # The shipped file refers to the demo certificate under ../var/tls, made by
        # scripts/run; without it -t names the missing file.
        r = subprocess.run([os.path.join(BIN, "relayd"), "-c",
                            os.path.join(SRC, "conf", "relayd.conf"), "-t"],
                           capture_output=True, text=True, timeout=60)
        if os.path.exists(os.path.join(SRC, "var", "tls", "relayd.crt")):
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("configuration ok", r.stdout)
        else:
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("relayd.crt", r.stderr)

    def test_bad_config_reports_lines(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "bad.conf")
            with open(p, "w") as f:
                f.write("listen = 127.0.0.1:1\nbogus = 1\n\nmax_recipients = none\n")
            r = subprocess.run([os.path.join(BIN, "relayd"), "-c", p, "-t"],
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(p + ":2: unknown key 'bogus'", r.stderr)
            self.assertIn(p + ":4: 'max_recipients = none'", r.stderr)

    def test_help_and_version(self):
        for prog in ("relayd", "relayctl"):
            exe = os.path.join(BIN, prog)
            for flag in ("--help", "--version"):
                r = subprocess.run([exe, flag], capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, prog + flag + r.stderr)
                self.assertTrue(r.stdout.strip(), prog + flag)

    def test_greeting_on_shipped_config(self):
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "conf")
            os.mkdir(conf)
            for name in os.listdir(os.path.join(SRC, "conf")):
                src = os.path.join(SRC, "conf", name)
                if os.path.isfile(src):
                    shutil.copy(src, conf)
            port = free_port()
            path = os.path.join(conf, "relayd.conf")
            with open(path) as f:
                text = f.read()
            text, n = re.subn(r"(?m)^listen = .*$", "listen = 127.0.0.1:%d" % port, text)
            self.assertEqual(n, 1)
            text = re.sub(r"(?m)^metrics_listen = .*$", "metrics_listen = 127.0.0.1:%d" % free_port(),
                          text)
            with open(path, "w") as f:
                f.write(text)
            # The demo certificate scripts/run makes when it is missing.
            os.makedirs(os.path.join(d, "var", "tls"))
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                            "/CN=relay.holdfast.test", "-keyout",
                            os.path.join(d, "var", "tls", "relayd.key"), "-out",
                            os.path.join(d, "var", "tls", "relayd.crt")],
                           check=True, capture_output=True, timeout=60)
            log = open(os.path.join(d, "relayd.log"), "w+")
            p = subprocess.Popen([os.path.join(BIN, "relayd"), "-c", path], stderr=log,
                                 stdout=log)
            try:
                greeting = None
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and greeting is None:
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                            greeting = s.recv(512)
                            s.sendall(b"QUIT\r\n")
                    except OSError:
                        if p.poll() is not None:
                            break
                        time.sleep(0.05)
                log.seek(0)
                self.assertIsNotNone(greeting, log.read())
                self.assertTrue(greeting.startswith(b"220 relay.holdfast.test ESMTP"), greeting)
                self.assertTrue(os.path.isdir(os.path.join(d, "var", "queue")))
            finally:
                p.send_signal(signal.SIGTERM)
                try:
                    rc = p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    rc = p.wait(timeout=30)
                log.close()
            self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main()
