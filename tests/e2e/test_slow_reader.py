"""A client that pipelines commands and never reads the replies is dropped once 4 MiB of
replies wait for it; relayd's memory does not grow without bound and other clients are
served meanwhile."""
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import hfharness as hf  # noqa: E402


class SlowReader(unittest.TestCase):
    def test_client_not_reading_is_dropped(self):
        with hf.Relayd() as r:
            s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
            # A small receive buffer so the replies pile up on relayd's side quickly.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            chunk = b"NOOP\r\n" * 10000  # 60 KB of commands, 140 KB of replies
            dropped = False
            deadline = time.monotonic() + (120 if os.environ.get("HF_SANITIZE") == "1" else 60)
            sent = 0
            while time.monotonic() < deadline and sent < 200 * len(chunk):
                try:
                    s.sendall(chunk)
                    sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    dropped = True
                    break
            s.close()
            # relayd said why, and still serves everyone else.
            log_deadline = time.monotonic() + 30
            while time.monotonic() < log_deadline and "reason=replies_not_read" not in r.log_text():
                time.sleep(0.05)
            self.assertIn("reason=replies_not_read", r.log_text(),
                          "sent %d octets without reading, dropped=%s" % (sent, dropped))
            with r.raw() as c:
                c.ehlo()
                self.assertEqual(c.cmd("NOOP").code, 250)


if __name__ == "__main__":
    unittest.main()
