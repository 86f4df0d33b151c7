"""A full queue (LMDB map at max_map_size): new mail gets 452 4.3.1, nothing already queued
is harmed, relayd keeps serving, and acceptance resumes once space returns."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import hfharness as hf  # noqa: E402


def body_of(i, size):
    line = (b"%06d " % i) + b"q" * 90 + b"\r\n"
    return b"Subject: fill %d\r\n\r\n" % i + line * (size // len(line))


class QueueFull(unittest.TestCase):
    def test_full_map_gives_452_and_recovers(self):
        conf = {"map_size": "1M", "max_map_size": "2M", "max_message_size": "600K"}
        with hf.Relayd(conf=conf) as r:
            stored = {}
            refused = None
            for i in range(40):  # 40 x 300 KiB is far beyond a 2 MiB map: bounded
                with r.raw() as c:
                    c.ehlo()
                    self.assertEqual(c.cmd("MAIL FROM:<fill@example.test>").code, 250)
                    self.assertEqual(c.cmd("RCPT TO:<alice@branch.test>").code, 250)
                    self.assertEqual(c.cmd("DATA").code, 354)
                    body = body_of(i, 300 * 1024)
                    rep = c.data_reply(body)
                    if rep.code == 250:
                        stored[hf.queued_id(rep)] = body
                        continue
                    refused = rep
                    # The session goes on after the refusal.
                    self.assertEqual(c.cmd("NOOP").code, 250)
                    break
            self.assertIsNotNone(refused, "the map never filled up")
            self.assertEqual((refused.code, refused.enhanced()), (452, "4.3.1"), refused)
            self.assertGreater(len(stored), 0)
            # Everything acknowledged before is intact.
            for qid, body in stored.items():
                out = r.relayctl("show", qid, "--body", check=True).stdout
                self.assertTrue(out.endswith(body), qid)
            # Space returns: delete half of them through the control socket, then mail is
            # accepted again without a restart.
            victims = sorted(stored)[: max(1, len(stored) // 2)]
            d = hf.relayctl("delete", "--yes", *victims, conf=r.conf_path)
            self.assertEqual(d.returncode, 0, d.stderr)
            qid = hf.send_raw(r, "again@example.test", ["alice@branch.test"],
                              body_of(999, 100 * 1024))
            self.assertTrue(r.relayctl("show", qid, "--body", check=True).stdout
                            .endswith(body_of(999, 100 * 1024)))
            for q in sorted(stored)[len(victims):]:
                out = r.relayctl("show", q, "--body", check=True).stdout
                self.assertTrue(out.endswith(stored[q]), q)


if __name__ == "__main__":
    unittest.main()
