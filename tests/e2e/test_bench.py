"""The benchmark cannot rot: scripts/bench.py --smoke runs every workload once with tiny
counts against relayd (and against a Postfix instance of its own when Postfix is installed
and we are root), and must produce a well-formed bench.json whose figures are real
measurements (positive rates, ratios that are relayd / Postfix of the same pair, the fsync
check passed), leave no process or temporary directory behind, and stop relayd cleanly.

This test installs nothing: without postfix (smtp-source, smtp-sink) the bench uses its own
asyncio client and sink; without gnuplot there is no PNG; without strace no fsync check.
Each missing part is reported as skipped with the reason, and the rest is still checked."""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HF_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("HF_BIN_DIR") or os.path.join(SRC, "build", "bin")
BENCH = os.path.join(SRC, "scripts", "bench.py")


def bench_procs(tmp):
    """Processes whose command line or working directory is in a bench directory (relayd's
    config is there; Postfix's daemons work in their queue directory)."""
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                cmd = f.read()
            cwd = os.readlink(d + "/cwd")
        except OSError:
            continue
        if tmp.encode() in cmd or cwd.startswith(tmp):
            out.append((d, cmd, cwd))
    return out


class BenchSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="hf-e2e-bench-")
        tmp = os.path.join(cls.out, "tmp")  # the bench's temporary directories go here
        os.mkdir(tmp)
        os.chmod(cls.out, 0o755)  # Postfix's daemons (user postfix) enter their queue in it
        os.chmod(tmp, 0o755)
        env = dict(os.environ, TMPDIR=tmp)
        cls.run_ = subprocess.run(
            [sys.executable, BENCH, "--smoke", "--bin-dir", BIN, "--out", cls.out],
            capture_output=True, text=True, timeout=110, stdin=subprocess.DEVNULL, env=env)
        cls.left = os.listdir(tmp)
        cls.procs = bench_procs(tmp)
        path = os.path.join(cls.out, "bench.json")
        cls.doc = None
        if os.path.exists(path):
            with open(path) as f:
                cls.doc = json.load(f)  # well formed, or the test errors here

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.run_.returncode, 0, self.run_.stdout[-3000:] + self.run_.stderr)
        self.assertIsNotNone(self.doc, "no bench.json")

    def with_postfix(self):
        return self.doc["postfix_skipped"] is None

    def test_figures_are_measurements(self):
        w = self.doc["workloads"]
        for name in ("accept_c1_conn", "accept_c10_conn", "release_rate", "release_last_s",
                     "latency_p50_c50", "latency_p99_c50", "mem_accept_c10", "cpu_per_1000",
                     "size_1k", "idle_bytes_per_session", "mem_idle_empty"):
            self.assertIn(name, w)
            self.assertEqual(len(w[name]["relayd"]), self.doc["pairs"], name)
        for name in ("accept_c1_conn", "accept_c10_conn", "release_rate", "size_1k",
                     "latency_p50_c50", "mem_accept_c10", "mem_idle_empty"):
            self.assertTrue(all(v > 0 for v in w[name]["relayd"]), (name, w[name]))
        self.assertLessEqual(w["latency_p50_c50"]["relayd_median"],
                             w["latency_p99_c50"]["relayd_median"])
        self.assertLessEqual(w["release_first_ms"]["relayd_median"] / 1000,
                             w["release_last_s"]["relayd_median"])
        # the name=value lines carry the same medians as the JSON
        line = "accept_c10_conn_relayd=%.4g" % w["accept_c10_conn"]["relayd_median"]
        self.assertIn(line, self.run_.stdout.splitlines())

    def test_postfix_side_by_side(self):
        if not self.with_postfix():
            print("test_bench: Postfix part skipped: %s" % self.doc["postfix_skipped"])
            self.skipTest(self.doc["postfix_skipped"])
        w = self.doc["workloads"]["accept_c10_conn"]
        self.assertEqual(len(w["postfix"]), self.doc["pairs"])
        for a, p, r in zip(w["relayd"], w["postfix"], w["ratio"]):
            self.assertGreater(p, 0)
            self.assertAlmostEqual(r, a / p)
        self.assertTrue(self.doc["postfix"])

    def test_fsync_before_250(self):
        f = self.doc["fsync"]
        if "why" in f:
            print("test_bench: fsync check skipped: %s" % f["why"])
            self.skipTest(f["why"])
        self.assertTrue(f["relayd"]["ok"], f)
        self.assertGreaterEqual(f["relayd"]["syncs"], f["relayd"]["replies"])
        if self.with_postfix():
            self.assertTrue(f["postfix"]["ok"], f)

    def test_plot(self):
        png = os.path.join(self.out, "bench.png")
        if not shutil.which("gnuplot"):
            print("test_bench: plot skipped: gnuplot is not installed")
            self.assertFalse(os.path.exists(png))
            self.skipTest("gnuplot is not installed")
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_cleans_up(self):
        self.assertEqual(self.left, [])
        self.assertEqual(self.procs, [])
        self.assertEqual(self.doc["exits"].get("relayd"), [0] * len(self.doc["exits"]["relayd"]))
        self.assertTrue(self.doc["exits"]["relayd"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
