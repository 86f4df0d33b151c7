"""holdfast benchmarks: accepted messages per second (every 250 after an fsync'd group
commit) and resident memory per idle SMTP session. Prints one line per figure."""
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.join(os.path.dirname(__file__), "..", "build", "bin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start(d, extra=""):
    port = free_port()
    conf = os.path.join(d, "relayd.conf")
    with open(conf, "w") as f:
        f.write("hostname = bench.test\nlisten = 127.0.0.1:%d\nqueue_dir = %s/q\n"
                "control_socket = %s/s\nlog_level = warn\nmax_connections = 20000\n"
                "max_connections_per_ip = 20000\n%s\n[domain bench.test]\n" % (port, d, d, extra))
    p = subprocess.Popen([os.path.join(BIN, "relayd"), "-c", conf], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.recv(100)
                s.sendall(b"QUIT\r\n")
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("relayd did not start")


def sender(port, n, body, out):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise OSError("closed")
            if line[3:4] != b"-":
                return line

    reply()
    s.sendall(b"EHLO bench\r\n")
    reply()
    ok = 0
    for _ in range(n):
        # Pipelined envelope (RFC 2920), then the body.
        s.sendall(b"MAIL FROM:<b@bench.test>\r\nRCPT TO:<r@bench.test>\r\nDATA\r\n")
        reply(); reply(); reply()
        s.sendall(body + b".\r\n")
        if reply().startswith(b"250"):
            ok += 1
    s.sendall(b"QUIT\r\n")
    s.close()
    out.append(ok)


def bench_throughput(total, clients):
    body = (b"Subject: bench\r\n\r\n" + b"x" * 76 + b"\r\n") * 128  # ~10 KiB
    with tempfile.TemporaryDirectory() as d:
        p, port = start(d)
        try:
            out = []
            per = max(1, total // clients)
            threads = [threading.Thread(target=sender, args=(port, per, body, out))
                       for _ in range(clients)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            dt = time.monotonic() - t0
            n = sum(out)
            stats = subprocess.run([os.path.join(BIN, "relayctl"), "-q", d + "/q", "-s",
                                    d + "/s", "stats"], capture_output=True, text=True).stdout
            commits = [l.split()[1] for l in stats.splitlines() if l.startswith("commits ")]
            print("throughput: %d messages of 10 KiB from %d clients in %.2f s = %.0f msg/s "
                  "(fsync'd group commits: %s)" % (n, clients, dt, n / dt,
                                                   commits[0] if commits else "?"))
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)


def bench_idle(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    with tempfile.TemporaryDirectory() as d:
        p, port = start(d)
        socks = []
        try:
            base = rss_kib(p.pid)
            for i in range(n):
                s = socket.socket()
                s.bind(("127.0.%d.%d" % (1 + i // 250 % 250, 2 + i % 250), 0))
                s.connect(("127.0.0.1", port))
                socks.append(s)
            for s in socks:  # each got its greeting: the session exists
                s.recv(100)
            after = rss_kib(p.pid)
            print("idle sessions: %d sessions, RSS %.1f MiB -> %.1f MiB, %.0f bytes per session "
                  "(target: 10,000 in 64 MiB)" % (n, base / 1024, after / 1024,
                                                   (after - base) * 1024 / n))
        finally:
            for s in socks:
                s.close()
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)


if __name__ == "__main__":
    total, clients, idle = (int(a) for a in sys.argv[1:4])
    bench_throughput(total, clients)
    bench_idle(idle)
