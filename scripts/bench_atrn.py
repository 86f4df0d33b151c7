"""ATRN release over a slow link: how long fetchd takes to pull held mail. A measurement, not a
test.

A real relayd holds N messages for branch.test (hold = yes) and serves ODMR on loopback; fetchd
(mode = atrn, CRAM-MD5, tls = no) connects through a loopback proxy that holds every segment
for a delay each way, standing in for a branch office's link, turns the connection round and
hands each message to a local aiosmtpd MTA. fetchd offers CHUNKING, so relayd sends each
message by BDAT (MAIL, RCPT and the chunks in one write); a fetchd given with --compare (for
example one built from an older commit, which offered no CHUNKING and got DATA) is measured
the same way. Prints messages per second, the best of the rounds, and how the messages came
(fetchd's via= field).

Usage: /usr/bin/python3 scripts/bench_atrn.py [--messages N] [--size OCTETS] [--delay MS]
           [--rounds K] [--fetchd PATH] [--compare PATH]
"""

import argparse
import os
import re
import smtplib
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fetchdlib  # noqa: E402
import hfharness as hf  # noqa: E402
import odmrlib  # noqa: E402
from bench_chunking import Proxy, make_body  # noqa: E402
from odmr_standin import LocalMTA  # noqa: E402


def hold(relayd, bodies):
    s = smtplib.SMTP("127.0.0.1", relayd.port, timeout=60)
    s.ehlo("bench.example.test")
    for i, body in enumerate(bodies):
        s.sendmail("bench@example.org", ["user%d@branch.test" % i], body)
    s.quit()


def release(relayd, proxy_port, mta_port, fetchd_bin, n):
    fetchdlib.FETCHD = fetchd_bin
    f = fetchdlib.Fetchd({"log_level": "info", "retry_limit": "0",
                          "local_mta": "127.0.0.1:%d" % mta_port},
                         {"isp": {"host": "127.0.0.1", "port": proxy_port, "mode": "atrn",
                                  "tls": "no", "auth_user": "branch", "domains": "branch.test"}})
    path = os.path.join(f.dir, "isp.password")
    with open(path, "w") as fh:
        fh.write(odmrlib.ODMR_USERS["branch"][1] + "\n")
    os.chmod(path, 0o600)
    f.relays["isp"]["auth_password_file"] = path
    f.write_config()
    start = time.monotonic()
    rc, text = f.run("--once")
    took = time.monotonic() - start
    if rc != 0:
        raise RuntimeError("fetchd exit %d:\n%s" % (rc, text[-3000:]))
    via = sorted(set(re.findall(r" local=250 .*via=(\w+) ", text)))
    got = len(re.findall(r" local=250 ", text))
    if got != n:
        raise RuntimeError("fetchd handed over %d of %d messages" % (got, n))
    return took, "/".join(via) or "DATA"  # fetchd before via= offered no CHUNKING


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--delay", type=float, default=10.0, help="one-way delay, ms")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fetchd", default=os.path.join(ROOT, "build", "bin", "fetchd"))
    ap.add_argument("--compare", help="a second fetchd binary measured the same way")
    a = ap.parse_args()
    bodies = [make_body(a.size, i) for i in range(a.messages)]
    d = tempfile.mkdtemp(prefix="hf-bench-atrn-")
    auth, cram = odmrlib.write_odmr_files(d)
    odmr_port = hf.free_port()
    conf = {"listen_odmr": "127.0.0.1:%d" % odmr_port, "auth_file": auth, "cram_file": cram,
            "max_message_size": str(max(a.size * 2, 1 << 20))}
    bins = [("this", a.fetchd)] + ([("compare", a.compare)] if a.compare else [])
    with hf.Relayd(conf=conf, domains={"branch.test": {"hold": "yes"}}) as r:
        mta = LocalMTA().start()
        proxy = Proxy(odmr_port, a.delay / 1000.0)
        try:
            for name, path in bins:
                best, via = None, "?"
                for _ in range(a.rounds):
                    hold(r, bodies)
                    took, via = release(r, proxy.port, mta.port, path, a.messages)
                    best = took if best is None else min(best, took)
                print("fetchd %-8s RTT %4g ms, %4d x %6d octets by %-4s: %6.1f messages/s "
                      "(%.2f s)" % (name, 2 * a.delay, a.messages, a.size, via,
                                    a.messages / best, best))
        finally:
            mta.stop()


if __name__ == "__main__":
    main()
