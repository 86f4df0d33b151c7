"""250 after DATA means the message is on disk: several clients send, relayd is killed with
SIGKILL at a random moment, restarted on the same queue, and every message that got its
250 is there, under its queue id, byte for byte. A message that was cut off may be missing
or present, but never damaged. Several rounds on one queue.

The moment of the kill is random but event-driven: after a random number of 250 replies,
while the other clients are in the middle of their transactions."""

import os
import random
import threading
import time
import unittest

import hfharness as hf

ROUNDS = 4
THREADS = 4
PER_THREAD = 40       # transactions per client and round, at most
SIZES = [300, 3000, 30000, 300000]
SIZE_WEIGHTS = [5, 4, 2, 1]


def make_message(rng, tag):
    size = rng.choices(SIZES, SIZE_WEIGHTS)[0]
    lines = []
    n = 0
    while n < size:
        line = (b"." if rng.random() < 0.1 else b"") + bytes(
            rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(rng.randint(0, 120)))
        lines.append(line)
        n += len(line) + 2
    return hf.make_body("crash " + tag, b"\r\n".join(lines) + b"\r\n",
                        ["X-Crash-Tag: " + tag])


class Round:
    """Shared state of one round's clients."""

    def __init__(self):
        self.cond = threading.Condition()
        self.acked = []        # (qid, body) in the order the 250s arrived
        self.killed = threading.Event()
        self.errors = []       # unexpected failures before the kill
        self.done = 0


def client(relayd_port, rnd, rng, tid, rno, attempted):
    """Sends up to PER_THREAD messages over one session (pipelined envelope), recording
    each acknowledged one. Stops at the first failure; a failure before the kill is an
    error of the test round."""
    c = None
    try:
        c = hf.RawSMTP(relayd_port, bound=30)
        c.ehlo()
        for seq in range(PER_THREAD):
            if rnd.killed.is_set():
                break
            tag = "r%d-t%d-%d" % (rno, tid, seq)
            body = make_message(rng, tag)
            with rnd.cond:
                attempted[tag] = body
            c.send(b"MAIL FROM:<crash@example.test>\r\nRCPT TO:<alice@branch.test>\r\n"
                   b"DATA\r\n")
            rs = c.replies(3, bound=30)
            if [r.code for r in rs] != [250, 250, 354]:
                raise AssertionError("envelope refused: %r" % rs)
            r = c.data_reply(body, bound=60)
            qid = hf.queued_id(r)
            with rnd.cond:
                rnd.acked.append((qid, body))
                rnd.cond.notify_all()
    except Exception as e:  # noqa: BLE001 - any failure is judged below
        if not rnd.killed.is_set():
            with rnd.cond:
                rnd.errors.append("client %d: %r" % (tid, e))
    finally:
        if c is not None:
            c.close()
        with rnd.cond:
            rnd.done += 1
            rnd.cond.notify_all()


class CrashSafety(hf.HFTestCase):

    def stored_messages(self, d):
        return {m["id"]: m for m in d.relayctl_json("list")["messages"]}

    def check_message(self, d, qid, body):
        stored = d.relayctl("show", qid, "--body", check=True).stdout
        _, rest = hf.split_received(stored)
        self.assertEqual(rest, body, "message %s damaged after the crash" % qid)

    def test_sigkill_loses_nothing_acknowledged(self):
        seed = int(os.environ.get("HF_CRASH_SEED", time.time_ns() % 1000000))
        print("\ncrash test seed %d (set HF_CRASH_SEED to repeat)" % seed)
        rng = random.Random(seed)
        d = self.start_relayd(start=False)
        acked = {}       # qid -> body, over all rounds
        attempted = {}   # tag -> body of every message ever sent
        seen = set()     # ids already checked as intact
        seen_tags = set()
        total_acked = 0
        for rno in range(ROUNDS):
            d.start()
            rnd = Round()
            kill_after = rng.randint(1, 30)
            threads = [threading.Thread(target=client, daemon=True,
                                        args=(d.port, rnd, random.Random(rng.random()), t,
                                              rno, attempted))
                       for t in range(THREADS)]
            for t in threads:
                t.start()
            with rnd.cond:
                ok = rnd.cond.wait_for(lambda: len(rnd.acked) >= kill_after or
                                       rnd.done == THREADS or rnd.errors,
                                       timeout=hf.timeout(60))
            rnd.killed.set()
            d.kill()
            for t in threads:
                t.join(hf.timeout(60))
                self.assertFalse(t.is_alive(), "client thread hung after the kill")
            self.assertTrue(ok, "no progress in round %d" % rno)
            self.assertEqual(rnd.errors, [], "failures before the kill in round %d" % rno)
            self.assertGreater(len(rnd.acked), 0)
            for qid, body in rnd.acked:
                self.assertNotIn(qid, acked, "queue id %s given to two messages" % qid)
                acked[qid] = body
            total_acked += len(rnd.acked)

            # Read the queue with relayd down (the lock file is stale after SIGKILL), then
            # restart on the same queue.
            stored = self.stored_messages(d)
            missing = sorted(set(acked) - set(stored))
            self.assertEqual(missing, [], "acknowledged messages lost in round %d" % rno)
            d.start()
            stored = self.stored_messages(d)
            self.assertEqual(sorted(set(acked) - set(stored)), [])
            # Acknowledged this round: byte-exact. Anything else new: one of the messages
            # sent, whole (a transaction cut by the kill is stored entirely or not at all).
            for qid in stored:
                if qid in seen:
                    continue
                body = hf.split_received(
                    d.relayctl("show", qid, "--body", check=True).stdout)[1]
                tag = body.split(b"X-Crash-Tag: ", 1)[-1].split(b"\r\n", 1)[0].decode()
                self.assertIn(tag, attempted, "unknown message %s in the queue" % qid)
                self.assertNotIn(tag, seen_tags, "message %s stored twice" % tag)
                seen_tags.add(tag)
                if qid in acked:
                    self.assertEqual(body, acked[qid], "message %s damaged" % qid)
                else:
                    self.assertEqual(body, attempted[tag], "unacknowledged message %s "
                                     "stored damaged" % qid)
                seen.add(qid)
            d.stop()
        self.assertEqual(d.exit_problems, [])
        # Final pass: everything acknowledged in every round is still intact.
        d.start()
        stored = self.stored_messages(d)
        for qid, body in acked.items():
            self.assertIn(qid, stored)
            self.check_message(d, qid, body)
        print("crash test: %d rounds, %d acknowledged messages, %d in the queue"
              % (ROUNDS, total_acked, len(stored)))


if __name__ == "__main__":
    unittest.main()
