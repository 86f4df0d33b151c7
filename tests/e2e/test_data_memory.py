"""max_data_memory: the memory every session together may hold for messages being received.
Past it new mail gets 452 4.3.1 (never a crash, never a partial message), sessions go on, and
the budget returns once messages are committed: a flood of large messages over many
connections cannot exhaust the relay's memory."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import hfharness as hf  # noqa: E402


def body(tag, size):
    line = tag.encode() + b" " + b"m" * 90 + b"\r\n"
    return b"Subject: " + tag.encode() + b"\r\n\r\n" + line * (size // len(line))


def stat(r, name):
    out = hf.relayctl("stats", conf=r.conf_path, check=True).stdout.decode()
    for ln in out.splitlines():
        k, _, v = ln.partition(" ")
        if k == name:
            return int(v.strip())
    raise AssertionError("no %s in stats: %r" % (name, out))


class DataMemory(unittest.TestCase):
    def test_budget_refuses_then_recovers(self):
        conf = {"max_data_memory": "1M", "max_message_size": "900K"}
        with hf.Relayd(conf=conf) as r:
            a = r.raw()
            b = r.raw()
            try:
                for c in (a, b):
                    c.ehlo()
                    self.assertEqual(c.cmd("MAIL FROM:<m@example.test>").code, 250)
                    self.assertEqual(c.cmd("RCPT TO:<alice@branch.test>").code, 250)
                # a declares 600K: its buffer is reserved at DATA.
                self.assertEqual(a.cmd("DATA").code, 354)
                a.send(hf.dot_stuff(body("first-part", 300 * 1024)))
                # b fits at DATA (a small first buffer) but cannot grow past the budget
                # while a holds its share: refused at the end with 452 4.3.1.
                self.assertEqual(b.cmd("DATA").code, 354)
                rb = b.data_reply(body("second", 800 * 1024))
                self.assertEqual((rb.code, rb.enhanced()), (452, "4.3.1"), rb)
                self.assertEqual(b.cmd("NOOP").code, 250)  # the session goes on
                # a finishes and is stored whole.
                ra = a.data_reply(b"")  # only the end of data (".") after what was sent
                self.assertEqual(ra.code, 250, ra)
                qid = hf.queued_id(ra)
                stored = r.relayctl("show", qid, "--body", check=True).stdout
                self.assertTrue(stored.endswith(body("first-part", 300 * 1024)))
            finally:
                a.close()
                b.close()
            # Everything is released again: the budget is back to zero, and a large
            # message is accepted now.
            self.assertEqual(stat(r, "data_memory"), 0)
            qid2 = hf.send_raw(r, "m@example.test", ["alice@branch.test"],
                               body("later", 700 * 1024))
            self.assertTrue(r.relayctl("show", qid2, "--body", check=True).stdout
                            .endswith(body("later", 700 * 1024)))
            self.assertEqual(stat(r, "data_memory"), 0)


if __name__ == "__main__":
    unittest.main()
