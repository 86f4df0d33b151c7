"""The retry timer: mail for a domain without hold = yes is delivered without anyone asking,
deferred recipients wait for their next attempt, and hold = yes domains wait for ETRN."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import etrnlib as el  # noqa: E402


class RetryTimer(el.ETRNTestCase):
    UP = ("127.0.0.2",)
    CONF = {"retry_interval": "1"}

    def domains(self):
        hop = "[127.0.0.2]:%d" % self.sinks.port
        return {
            "backup.test": {"next_hop": hop},
            "branch.test": {"next_hop": hop, "hold": "yes"},
        }

    def test_backup_domain_is_delivered_by_the_timer_and_hold_waits(self):
        r = self.relayd
        sink = self.sinks["127.0.0.2"]
        mark = r.mark()
        q1 = r.send("a@example.test", ["u@backup.test"], el.make_body("timer", "one\r\n"))
        q2 = r.send("a@example.test", ["u@branch.test"], el.make_body("held", "two\r\n"))
        # No ETRN: the timer's run delivers backup.test.
        summary = r.wait_flush("backup.test", seconds=el.bound(20), after=mark)
        self.assertEqual(summary["sent"], 1, summary["line"])
        self.assertIn("reason=retry", summary["line"])
        sink.wait_for(lambda sk: len(sk.messages) == 1, el.bound(10), "the timer's delivery")
        self.assertEqual(sink.messages[0].rcpts, ["u@backup.test"])
        # More ticks: a second backup.test message is taken by the timer too, while
        # branch.test (hold = yes) stays queued through all of them.
        mark2 = r.mark()
        r.send("a@example.test", ["w@backup.test"], el.make_body("timer2", "three\r\n"))
        r.wait_flush("backup.test", seconds=el.bound(20), after=mark2)
        sink.wait_for(lambda sk: len(sk.messages) == 2, el.bound(10), "the second delivery")
        ids = {m["id"] for m in r.list_json()}
        self.assertNotIn(q1, ids)
        self.assertIn(q2, ids)
        self.assertEqual(r.log_lines(r"flush domain=branch\.test", after=mark), [])
        # ETRN still releases it.
        code, _ = r.etrn("branch.test")
        self.assertEqual(code, 253)
        r.wait_flush("branch.test", seconds=el.bound(20), after=mark)
        sink.wait_for(lambda sk: len(sk.messages) == 3, el.bound(10), "the ETRN delivery")


class RetryWaitsForNextAttempt(el.ETRNTestCase):
    DOWN = ("127.0.0.3",)
    CONF = {"retry_interval": "1"}

    def domains(self):
        hop = "[127.0.0.3]:%d" % self.sinks.port
        return {"backup.test": {"next_hop": hop}, "other.test": {"next_hop": hop}}

    def test_deferred_recipient_is_not_retried_before_its_time(self):
        r = self.relayd
        mark = r.mark()
        r.send("a@example.test", ["u@backup.test"], el.make_body("down", "x\r\n"))
        first = r.wait_flush("backup.test", seconds=el.bound(20), after=mark)
        self.assertEqual(first["deferred"], 1, first["line"])
        rc = r.list_json()[0]["rcpts"][0]
        self.assertEqual(rc["state"], "deferred")
        # 5 minutes, moved by up to 10 % either way (retry jitter).
        self.assertGreaterEqual(rc["next_attempt"] - rc["last_attempt"], 270)
        # The next attempt is minutes away. Proof that ticks happened meanwhile: a second
        # domain's new mail is picked up by the timer, while backup.test gets no second run.
        after = r.mark()
        r.send("a@example.test", ["v@other.test"], el.make_body("tick", "y\r\n"))
        r.wait_flush("other.test", seconds=el.bound(20), after=after)
        self.assertEqual(r.log_lines(r"flush domain=backup\.test reason=retry messages",
                                     after=after), [])


if __name__ == "__main__":
    unittest.main()
