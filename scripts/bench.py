"""holdfast benchmarks, side by side with Postfix (run by scripts/bench, which installs the
tools and builds first; this file only measures).

Both systems do the same job: a backup MX that accepts mail for bench.test, holds it until
ETRN and then sends it to one loopback next hop (a sink). Each workload runs against relayd
(A) and Postfix (B) in turns, A B A B ..., and every pair gives a ratio relayd / Postfix;
the table shows the medians. Prints the table and one name=value line per figure, writes
bench.json and (with gnuplot) bench.png in --out.

  --quick   smaller counts (under 3 minutes on 2 cores)
  --smoke   tiny counts, one pair, no 1,000,000 queue: checks that the bench still runs
            (Postfix only when installed and running as root)
  --million also a 1,000,000-message queue in relayd alone (not in the default run: it
            takes about 10 minutes on its own)
  --no-postfix   relayd only
"""
import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_load as L  # noqa: E402
import bench_sys as S  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# name: (accept messages at 1/10/50 clients, latency messages, release messages,
#        idle sessions relayd/postfix, sizes and counts, pairs, per-connection modes)
MODES = {
    "full": dict(accept={1: 300, 10: 1500, 50: 3000}, latency=2000, release=10000,
                 idle=(10000, 1000), sizes=[(1024, 1000), (10240, 1000), (102400, 300),
                                            (1048576, 40)], pairs=3, modes=(False, True)),
    "quick": dict(accept={1: 50, 10: 200, 50: 500}, latency=400, release=1000,
                  idle=(3000, 100), sizes=[(1024, 200), (102400, 40), (1048576, 10)],
                  pairs=3, modes=(False, True)),
    "smoke": dict(accept={1: 10, 10: 40}, latency=40, release=100, idle=(100, 20),
                  sizes=[(1024, 20)], pairs=1, modes=(False,)),
}
SIZE = 10240  # message size of the accept, latency and release workloads


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "%s, %d cores (%s), %.0f GiB, Linux %s" % (platform.node(), os.cpu_count(), cpu,
                                                       mem, platform.release())


def load():
    return " ".join("%.2f" % x for x in os.getloadavg())


def median(xs):
    return statistics.median(xs) if xs else None


class Bench:
    def __init__(self, args, reaper):
        self.a, self.r = args, reaper
        self.p = MODES[args.mode]
        self.results = {}  # workload -> {"unit", "better", "relayd": [...], "postfix": [...]}
        self.notes = []
        self.have_source = shutil.which("smtp-source") is not None
        self.have_sink = shutil.which("smtp-sink") is not None
        self.sink = S.Sink(reaper, self.have_sink)
        self.systems = [S.Relayd(reaper, args.bin_dir, self.sink.port)]
        self.postfix_why = None
        if args.no_postfix:
            self.postfix_why = "--no-postfix"
        elif not shutil.which("postfix"):
            self.postfix_why = "postfix is not installed (scripts/bench installs it)"
        elif os.geteuid() != 0:
            self.postfix_why = "not root: a Postfix instance needs root to start"
        if self.postfix_why is None:
            procs = max(200, self.p["idle"][1] + 150)
            self.systems.append(S.Postfix(reaper, self.sink.port, procs=procs))
        else:
            print("bench: Postfix skipped: %s" % self.postfix_why)

    # ---- bookkeeping
    def record(self, name, system, value, unit, better, **extra):
        w = self.results.setdefault(name, {"unit": unit, "better": better})
        w.setdefault(system.name if hasattr(system, "name") else system, []).append(value)
        for k, v in extra.items():
            w.setdefault(k, []).append(v)

    def pairs(self, fn, *args):
        for i in range(self.p["pairs"]):
            for s in self.systems:
                fn(s, i, *args)

    def source(self, port, clients, n, size, per_conn):
        if self.have_source:
            return L.smtp_source(port, clients, n, size, per_conn)
        return L.py_source(port, clients, n, size, per_conn)[0]

    def settle(self, system, n=None, timeout=300):
        S.wait_until(system.settled, timeout, "%s's queue to settle" % system.name, step=0.05)
        if n is not None:
            got = system.queued()
            if got != n:
                raise RuntimeError("%s holds %d messages, %d were accepted"
                                   % (system.name, got, n))

    # ---- workloads
    def fsync(self):
        self.fsync_result = {}
        if not shutil.which("strace"):
            self.fsync_result["why"] = "strace is not installed: not checked"
            return
        for s in self.systems:
            s.purge()
            ok, syncs, replies, how = L.fsync_check(s, s.pids())
            self.fsync_result[s.name] = dict(ok=ok, syncs=syncs, replies=replies, how=how)
            s.purge()

    def accept(self, s, i, clients, n, per_conn):
        s.purge()
        name = "accept_c%d_%s" % (clients, "session" if per_conn else "conn")
        c0 = s.cpu()
        with S.Sampler(s) as m:
            dt = self.source(s.port, clients, n, SIZE, per_conn)
            self.settle(s, n)
        cpu = s.cpu() - c0
        self.record(name, s, n / dt, "msg/s", "higher")
        if clients == max(self.p["accept"]) and not per_conn:
            self.record("mem_accept_c%d" % clients, s, m.peak / 1024.0, "MiB", "lower")
            self.record("mem_accept_c%d_anon" % clients, s, m.peak_anon / 1024.0, "MiB",
                        "lower")
            self.record("cpu_per_1000", s, cpu / n * 1000, "CPU s", "lower")

    def baseline(self, i, clients, n):
        """smtp-source -> smtp-sink, no queue at all: what the client and loopback allow."""
        self.sink.reset()
        dt = self.source(self.sink.port, clients, n, SIZE, False)
        S.wait_until(lambda: self.sink.received() >= n, 60, "the sink")
        self.results.setdefault("baseline_c%d" % clients, {"unit": "msg/s", "better": "higher"}
                                ).setdefault("sink", []).append(n / dt)

    def latency(self, s, i, n):
        s.purge()
        _, lat = L.py_source(s.port, 50, n, SIZE, True)
        self.settle(s, n)
        self.record("latency_p50_c50", s, L.percentile(lat, 50) * 1000, "ms", "lower")
        self.record("latency_p99_c50", s, L.percentile(lat, 99) * 1000, "ms", "lower")

    def release(self, s, i, n):
        s.purge()
        with S.Sampler(s):
            self.source(s.port, 20, n, SIZE, True)
        self.settle(s, n)
        time.sleep(1.0)
        self.record("mem_idle_queued", s, s.mem_kib() / 1024.0, "MiB", "lower")
        self.record("mem_idle_queued_anon", s, s.anon_kib() / 1024.0, "MiB", "lower")
        self.sink.reset()
        with S.Sampler(s) as m:
            t0 = time.monotonic()
            reply = S.smtp_etrn(s.port)
            if not reply.startswith("25"):
                raise RuntimeError("%s answered ETRN with %s" % (s.name, reply))
            S.wait_until(lambda: self.sink.received() >= n, max(120, n / 20),
                         "%d released messages at the sink" % n, step=0.01)
            first, last = self.sink.first - t0, self.sink.last - t0
            S.wait_until(lambda: s.queued() == 0, 120, "%s's queue to empty" % s.name)
        self.record("release_first_ms", s, first * 1000, "ms", "lower")
        self.record("release_last_s", s, last, "s", "lower")
        self.record("release_rate", s, n / last, "msg/s", "higher")
        self.record("mem_release_peak", s, m.peak / 1024.0, "MiB", "lower")
        self.record("mem_release_peak_anon", s, m.peak_anon / 1024.0, "MiB", "lower")
        time.sleep(1.0)
        self.record("mem_idle_empty", s, s.mem_kib() / 1024.0, "MiB", "lower")
        self.record("mem_idle_empty_anon", s, s.anon_kib() / 1024.0, "MiB", "lower")

    def sizes(self, s, i, size, n):
        s.purge()
        dt = self.source(s.port, 10, n, size, True)
        self.settle(s, n)
        self.record("size_%dk" % (size // 1024), s, n * size / dt / 2**20, "MiB/s", "higher",
                    **{"%s_msgs" % s.name: n / dt})

    def idle(self, s, i):
        """n idle sessions on a fresh instance (a long-running one reuses the heap its
        earlier messages freed, which would hide what sessions cost)."""
        n = self.p["idle"][0] if s.name == "relayd" else self.p["idle"][1]
        if s.name == "relayd":
            fresh = S.Relayd(self.r, self.a.bin_dir, self.sink.port)
        else:
            fresh = S.Postfix(self.r, self.sink.port, procs=n + 150)
        try:
            S.smtp_greeted(fresh.port)  # one session first: what every session needs once
            time.sleep(0.3)
            before, after, socks = L.idle_sessions(fresh, n)
            for sk in socks:
                sk.close()
        finally:
            fresh.close()
        per = (after - before) * 1024.0 / n
        self.record("idle_bytes_per_session", s, per, "bytes", "lower",
                    **{"%s_sessions" % s.name: n})
        # measured at n sessions; at 10,000 when n is smaller: start + 10,000 x per session
        self.record("idle_10k_sessions", s, (before * 1024.0 + per * 10000) / 2**20, "MiB",
                    "lower", **{"%s_measured_mib" % s.name: after / 1024.0})

    def million(self):
        """relayd alone with a --million-count queue of 1 KiB messages. The figures are kept
        as they come: a step that fails (or times out) is reported, the rest still is."""
        s = self.systems[0]
        n = self.a.million_count
        res = self.million_result = {"messages": n}
        try:
            s.purge()
            print("bench: loading %d messages into relayd (--million) ..." % n, flush=True)
            with S.Sampler(s) as m_load:
                dt = self.source(s.port, 50, n, 1024, True)
            res.update(load_rate=n / dt, load_peak_mib=m_load.peak / 1024.0,
                       load_peak_anon_mib=m_load.peak_anon / 1024.0)
            t = time.monotonic()
            r = s.relayctl("queue")
            res["relayctl_queue_s"] = time.monotonic() - t
            if r.returncode != 0:
                raise RuntimeError("relayctl queue: %s" % r.stderr)
            time.sleep(1.0)
            res["idle_queued_mib"] = s.mem_kib() / 1024.0
            res["idle_queued_anon_mib"] = s.anon_kib() / 1024.0
            self.sink.reset()
            with S.Sampler(s) as m:
                t0 = time.monotonic()
                res["etrn_reply"] = S.smtp_etrn(s.port, timeout=1800)
                res["etrn_reply_s"] = time.monotonic() - t0
                t = time.monotonic()  # does a new client get its greeting during the run?
                S.smtp_greeted(s.port, timeout=1800)
                res["greeting_during_release_ms"] = (time.monotonic() - t) * 1000
                S.wait_until(lambda: self.sink.received() >= n, 3600,
                             "the million at the sink", step=0.05)
            res["release_first_ms"] = (self.sink.first - t0) * 1000
            res["release_rate"] = n / (self.sink.last - t0)
            res["release_peak_mib"] = m.peak / 1024.0
            res["release_peak_anon_mib"] = m.peak_anon / 1024.0
        except Exception as e:
            res["error"] = str(e)
            print("bench: --million: %s" % e, flush=True)

    def run(self):
        self.t_start = time.monotonic()
        self.load_before = load()
        step = lambda what: print("bench: %s (%.0f s, load %s)" % (
            what, time.monotonic() - self.t_start, load()), flush=True)
        step("fsync check")
        self.fsync()
        for clients, n in sorted(self.p["accept"].items()):
            for per_conn in self.p["modes"]:
                step("accept, %d clients, %s" % (clients, "several messages per connection"
                                                 if per_conn else "one message per connection"))
                for i in range(self.p["pairs"]):
                    for s in self.systems:
                        self.accept(s, i, clients, n, per_conn)
                    if clients == max(self.p["accept"]) and not per_conn:
                        self.baseline(i, clients, n)
        step("latency, 50 clients")
        self.pairs(self.latency, self.p["latency"])
        step("release of %d held messages after ETRN" % self.p["release"])
        self.pairs(self.release, self.p["release"])
        for size, n in self.p["sizes"]:
            step("message size %d KiB" % (size // 1024))
            self.pairs(self.sizes, size, n)
        step("idle sessions")
        self.pairs(self.idle)
        self.million_result = None
        if self.a.million:
            step("1,000,000-message queue, relayd alone")
            self.million()
        self.elapsed = time.monotonic() - self.t_start
        self.load_after = load()


# ---- report -------------------------------------------------------------------------------

TARGETS = [  # (workload, figure: median "ratio" relayd/Postfix or "relayd", op, bound, text)
    ("accept_c50_conn", "ratio", ">=", 10, "accept at 50 clients >= 10x Postfix"),
    ("accept_c10_conn", "ratio", ">=", 5, "accept at 10 clients >= 5x Postfix"),
    ("accept_c1_conn", "ratio", ">=", 5, "accept at 1 client >= 5x Postfix"),
    ("accept_c50_conn", "of_baseline", ">=", 0.9,
     "accept at 50 clients >= 90 % of smtp-source -> smtp-sink in the same run"),
    ("release_rate", "ratio", ">=", 5, "release >= 5x Postfix"),
    ("release_first_ms", "relayd", "<=", 100, "first message out <= 100 ms after ETRN"),
    ("mem_accept_c50", "ratio", "<=", 0.1, "RSS at 50-client accept <= 1/10 of Postfix's PSS"),
    ("idle_10k_sessions", "relayd", "<=", 32, "10,000 idle sessions <= 32 MiB"),
    ("latency_p99_c50", "ratio", "<=", 1, "p99 accept latency <= Postfix's"),
]


def summarise(b):
    """Medians and per-pair ratios; returns the JSON document."""
    work = {}
    for name, w in b.results.items():
        out = {"unit": w["unit"], "better": w["better"]}
        for k, v in w.items():
            if isinstance(v, list):
                out[k] = v
                out[k + "_median"] = median(v)
        if "relayd" in w and "postfix" in w:
            out["ratio"] = [a / p if p else None for a, p in zip(w["relayd"], w["postfix"])]
            out["ratio_median"] = median([x for x in out["ratio"] if x is not None])
        work[name] = out
    if "accept_c50_conn" in work and "baseline_c50" in work:
        bl = work["baseline_c50"]["sink"]
        rl = work["accept_c50_conn"]["relayd"]
        work["accept_c50_conn"]["of_baseline"] = [a / x for a, x in zip(rl, bl)]
        work["accept_c50_conn"]["of_baseline_median"] = median([a / x for a, x in zip(rl, bl)])
    targets = []
    for name, key, op, bound, text in TARGETS:
        v = work.get(name, {}).get(key + "_median")
        if v is not None:
            met = v >= bound if op == ">=" else v <= bound
            targets.append({"target": text, "value": v, "met": met})
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "load_before": b.load_before, "load_after": b.load_after,
        "mode": b.a.mode, "pairs": b.p["pairs"], "elapsed_s": round(b.elapsed, 1),
        "message_size": SIZE,
        "client": "smtp-source" if b.have_source else "python asyncio client",
        "sink": b.sink.kind,
        "postfix": None if b.postfix_why else postfix_version(),
        "postfix_skipped": b.postfix_why,
        "fsync": b.fsync_result,
        "workloads": work,
        "million": b.million_result,
        "targets": targets,
    }


def postfix_version():
    r = subprocess.run(["postconf", "-dh", "mail_version"], capture_output=True, text=True)
    return r.stdout.strip()


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "{:,.0f}".format(v)
    if abs(v) >= 10:
        return "%.1f" % v
    if abs(v) >= 0.01 or v == 0:
        return "%.2f" % v
    return "%.1g" % v


def figures(doc):
    """name=value: the median of each figure per system, and the median ratio."""
    out = []
    for name, w in doc["workloads"].items():
        for k in ("relayd", "postfix", "sink"):
            if k + "_median" in w:
                out.append(("%s_%s" % (name, k), w[k + "_median"]))
        if "ratio_median" in w:
            out.append(("%s_ratio" % name, w["ratio_median"]))
        if "of_baseline_median" in w:
            out.append(("%s_of_baseline" % name, w["of_baseline_median"]))
    for k, v in (doc.get("million") or {}).items():
        if isinstance(v, str):
            v = '"%s"' % v
        out.append(("million_%s" % k, v))
    for s, f in doc["fsync"].items():
        if isinstance(f, dict):
            out.append(("fsync_before_250_%s" % s, "yes" if f["ok"] else "NO"))
    return out


def table(doc):
    rows = [("workload", "unit", "relayd", "Postfix", "ratio (per pair)", "median ratio")]
    for name, w in doc["workloads"].items():
        if "relayd" not in w:
            continue
        per = " ".join(fmt(x) for x in w.get("ratio", []))
        rows.append((name, "%s (%s better)" % (w["unit"], w["better"]),
                     fmt(w.get("relayd_median")), fmt(w.get("postfix_median")),
                     per or "-", fmt(w.get("ratio_median"))))
    if "baseline_c50" in doc["workloads"]:
        w = doc["workloads"]["baseline_c50"]
        rows.append(("baseline_c50 (source->sink)", "msg/s", "-", "-", "-",
                     fmt(w["sink_median"])))
    m = doc.get("million") or {}
    for key, text, unit in (("load_rate", "load (50 clients)", "msg/s"),
                            ("relayctl_queue_s", "relayctl queue", "s"),
                            ("etrn_reply_s", "ETRN reply after", "s"),
                            ("greeting_during_release_ms", "a new client's 220 then", "ms"),
                            ("release_first_ms", "first out after ETRN", "ms"),
                            ("release_rate", "release", "msg/s"),
                            ("load_peak_mib", "RSS peak while loading", "MiB"),
                            ("load_peak_anon_mib", "  of which anonymous", "MiB"),
                            ("release_peak_mib", "RSS peak while releasing", "MiB"),
                            ("release_peak_anon_mib", "  of which anonymous", "MiB")):
        if key in m:
            rows.append(("million: " + text, unit, fmt(m[key]), "-", "-", "-"))
    if "error" in m:
        rows.append(("million: FAILED", m["error"][:60], "-", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * x for x in widths))
    return "\n".join(lines)


def plot(doc, out):
    """accept rate by concurrency (one message per connection) and release times, both
    systems, as one PNG with gnuplot. Returns the PNG's path or None without gnuplot."""
    gp = shutil.which("gnuplot")
    if not gp:
        return None
    w = doc["workloads"]
    conc = sorted(int(k[len("accept_c"):-len("_conn")]) for k in w
                  if k.startswith("accept_c") and k.endswith("_conn"))
    acc = os.path.join(out, "accept.dat")
    with open(acc, "w") as f:
        f.write("# clients relayd postfix relayd_session postfix_session sink\n")
        for c in conc:
            a = w["accept_c%d_conn" % c]
            s = w.get("accept_c%d_session" % c, {})
            bl = w.get("baseline_c%d" % c, {}).get("sink_median")
            f.write("%d %s %s %s %s %s\n" % (c, a.get("relayd_median") or "NaN",
                                             a.get("postfix_median") or "NaN",
                                             s.get("relayd_median") or "NaN",
                                             s.get("postfix_median") or "NaN", bl or "NaN"))
    rel = os.path.join(out, "release.dat")
    with open(rel, "w") as f:
        f.write("# system first_s last_s\n")
        for sysname in ("relayd", "postfix"):
            if sysname + "_median" in w.get("release_last_s", {}):
                f.write("%s %s %s\n" % (sysname, w["release_first_ms"][sysname + "_median"] / 1000,
                                        w["release_last_s"][sysname + "_median"]))
    png = os.path.join(out, "bench.png")
    title = "holdfast relayd vs Postfix %s, %s, load %s" % (
        doc["postfix"] or "(skipped)", doc["date"][:10], doc["load_before"])
    script = """
set terminal pngcairo size 1200,520 font "DejaVu Sans,10"
set output '{png}'
set multiplot layout 1,2 title "{title}"
set title "Messages accepted per second ({size} KiB, median of {pairs} pairs)"
set xlabel "concurrent clients"
set ylabel "messages/s (every one fsync'd before 250)"
set logscale x
set xtics ({xt})
set key top left
set grid
set yrange [0:*]
plot '{acc}' u 1:2 w lp lw 2 pt 7 t "relayd, 1 msg/connection", \\
     '{acc}' u 1:4 w lp lw 2 pt 6 dt 2 t "relayd, several/connection", \\
     '{acc}' u 1:3 w lp lw 2 pt 5 t "Postfix, 1 msg/connection", \\
     '{acc}' u 1:5 w lp lw 2 pt 4 dt 2 t "Postfix, several/connection", \\
     '{acc}' u 1:6 w p pt 9 ps 2 t "smtp-source -> smtp-sink (no queue)"
unset logscale x
set xtics auto
set title "Release of {n} held messages after ETRN"
set xlabel ""
set ylabel "seconds after ETRN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top left
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
plot '{rel}' u 2:xtic(1) t "first message at the sink", '' u 3 t "last message at the sink", \
     '' u ($0-1.0/6):2:(sprintf("%.3f s", $2)) w labels offset 0,0.8 notitle, \
     '' u ($0+1.0/6):3:(sprintf("%.2f s", $3)) w labels offset 0,0.8 notitle
unset multiplot
""".format(png=png, title=title, size=SIZE // 1024, pairs=doc["pairs"], acc=acc, rel=rel,
           xt=", ".join(str(c) for c in conc), n=doc_release_n(doc))
    r = subprocess.run([gp], input=script, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not os.path.exists(png):
        raise RuntimeError("gnuplot: %s" % r.stderr.strip())
    return png


def doc_release_n(doc):
    return MODES[doc["mode"]]["release"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick")
    g.add_argument("--smoke", dest="mode", action="store_const", const="smoke")
    ap.set_defaults(mode="full")
    ap.add_argument("--million", action="store_true")
    ap.add_argument("--million-count", type=int, default=1000000)
    ap.add_argument("--no-postfix", action="store_true")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    caught = []

    def on_signal(sig, _frame):
        if not caught:
            print("bench: signal %d: stopping everything it started" % sig, flush=True)
        caught.append(sig)
        raise SystemExit(128 + sig)

    # explicit even for SIGINT: a shell starts background jobs with SIGINT ignored
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    L.raise_nofile(MODES[a.mode]["idle"][0] + 2000)
    reaper = S.Reaper()
    try:
        b = Bench(a, reaper)
        b.run()
    except BaseException:
        if not caught:
            raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C cannot cut cleanup
        reaper.close()
    if caught:
        print("bench: interrupted; every process it started is stopped, its temporary "
              "directories are removed")
        sys.exit(128 + caught[0])
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    doc = summarise(b)
    doc["exits"] = reaper.exits  # relayd exits 0 on SIGTERM (an ASan build: also no leak)
    print()
    print(table(doc))
    print()
    for s, f in doc["fsync"].items():
        if isinstance(f, dict):
            print("fsync before 250, %s: %s (%d sync calls returned before %d replies; %s)"
                  % (s, "yes" if f["ok"] else "NO", f["syncs"], f["replies"], f["how"]))
        else:
            print("fsync before 250: %s" % f)
    for t in doc["targets"]:
        print("target %s: %s" % ("met   " if t["met"] else "MISSED", t["target"]))
    print("elapsed %.0f s, load %s before, %s after; %s" % (
        doc["elapsed_s"], doc["load_before"], doc["load_after"], doc["machine"]))
    print()
    for k, v in figures(doc):
        print("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v))
    path = os.path.join(a.out, "bench.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    print("json=%s" % path)
    png = plot(doc, a.out)
    print("png=%s" % (png or "none (gnuplot is not installed)"))


if __name__ == "__main__":
    main()
