"""bash completion for relayctl (scripts/completion/relayctl): commands, options, and the
domains and queue ids the queue holds, read from relayctl itself. bash runs the completion
function with COMP_WORDS set as readline would, against a real relayd's queue."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfharness  # noqa: E402
from hfharness import send_smtplib  # noqa: E402

SCRIPT = os.path.join(hfharness.SOURCE_DIR, "scripts", "completion", "relayctl")


def complete(words):
    """COMPREPLY for the command line words (the last one is being completed)."""
    script = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _relayctl; ' \
             'printf "%s\\n" "${COMPREPLY[@]}"'
    r = subprocess.run(["bash", "-c", script, "bash", SCRIPT] + words, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return sorted(x for x in r.stdout.split("\n") if x)


class CompletionTest(hfharness.HFTestCase):
    def test_commands_and_options(self):
        rc = hfharness.RELAYCTL
        self.assertEqual(complete([rc, "fl"]), ["flush"])
        self.assertEqual(complete([rc, "re"]), ["release", "requeue"])
        self.assertIn("stats", complete([rc, ""]))
        self.assertEqual(complete([rc, "--js"]), ["--json"])
        self.assertEqual(complete([rc, "-q", "/nonexistent", "s"]), ["show", "stats"])
        self.assertEqual(complete([rc, "stats", "--"]), ["--json"])

    def test_domains_and_ids_from_the_queue(self):
        r = self.start_relayd()
        q1 = send_smtplib(r, "s@example.test", ["alice@branch.test"],
                          hfharness.make_body("c", "one\r\n"))
        q2 = send_smtplib(r, "s@example.test", ["x@open.test"],
                          hfharness.make_body("c", "two\r\n"))
        rc = hfharness.RELAYCTL
        self.assertEqual(complete([rc, "-q", r.queue_dir, "flush", ""]),
                         sorted(["--all", "--wait", "branch.test", "open.test"]))
        self.assertEqual(complete([rc, "-q", r.queue_dir, "flush", "b"]), ["branch.test"])
        self.assertEqual(complete([rc, "-q", r.queue_dir, "list", "@o"]), ["@open.test"])
        self.assertEqual(complete([rc, "-q", r.queue_dir, "show", q1]), [q1])
        self.assertEqual(complete([rc, "-q", r.queue_dir, "show", q1[:4]]),
                         sorted({q for q in (q1, q2) if q.startswith(q1[:4])}))
        self.assertEqual(complete([rc, "-q", r.queue_dir, "requeue", ""]), sorted([q1, q2]))
        self.assertEqual(complete([rc, "-q", r.queue_dir, "delete", "--domain", "o"]),
                         ["open.test"])
        self.assertEqual(complete([rc, "-q", r.queue_dir, "hold", "open"]), ["open.test"])

    def test_no_queue_no_noise(self):
        rc = hfharness.RELAYCTL
        self.assertEqual(complete([rc, "-q", "/nonexistent/queue", "flush", ""]),
                         ["--all", "--wait"])


if __name__ == "__main__":
    unittest.main()
