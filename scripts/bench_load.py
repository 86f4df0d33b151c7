"""Load generators for scripts/bench: Postfix's smtp-source (the client for throughput, when
installed), an asyncio SMTP client (latency from end of DATA to the 250, and throughput in
smoke runs without smtp-source), idle sessions, and the strace check that a 250 after DATA
comes only after an fsync. Everything connects to 127.0.0.1 only."""
import asyncio
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import time

FROM, TO, HELO = "bench@client.test", "r@bench.test", "client.test"


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def smtp_source(port, clients, messages, size, per_conn, timeout=900):
    """Runs smtp-source; returns elapsed seconds. per_conn: all messages of a client over
    one connection (-d) instead of one connection per message."""
    argv = ["smtp-source", "-s", str(clients), "-m", str(messages), "-l", str(size),
            "-f", FROM, "-t", TO, "-M", HELO, "-C", "5"]
    if per_conn:
        argv.append("-d")
    argv.append("127.0.0.1:%d" % port)
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError("smtp-source: %s" % (r.stdout + r.stderr).strip()[-400:])
    return dt


def body_of(size):
    line = b"x" * 76 + b"\r\n"
    n = max(1, size // len(line))
    return b"Subject: bench\r\n\r\n" + line * n


async def _reply(r):
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def _client(port, n, body, per_conn, lat, counter):
    async def connect():
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
        await _reply(r)
        w.write(b"EHLO " + HELO.encode() + b"\r\n")
        await _reply(r)
        return r, w

    r = w = None
    for _ in range(n):
        if r is None:
            r, w = await connect()
        # envelope pipelined (RFC 2920: both servers offer PIPELINING)
        w.write(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (FROM.encode(), TO.encode()))
        for want in (b"250", b"250", b"354"):
            line = await _reply(r)
            if not line.startswith(want):
                raise RuntimeError("server said %r" % line)
        w.write(body)
        w.write(b".\r\n")
        await w.drain()
        t0 = time.perf_counter()
        line = await _reply(r)
        t1 = time.perf_counter()
        if not line.startswith(b"250"):
            raise RuntimeError("server said %r after DATA" % line)
        lat.append(t1 - t0)
        counter[0] += 1
        if not per_conn:
            w.write(b"QUIT\r\n")
            await _reply(r)
            w.close()
            r = w = None
    if w is not None:
        w.write(b"QUIT\r\n")
        await _reply(r)
        w.close()


def py_source(port, clients, messages, size, per_conn, timeout=900):
    """The asyncio client: returns (elapsed seconds, [latency per message in seconds])."""
    body = body_of(size)
    lat, counter = [], [0]
    per = [messages // clients + (1 if i < messages % clients else 0) for i in range(clients)]

    async def main():
        await asyncio.wait_for(asyncio.gather(
            *[_client(port, k, body, per_conn, lat, counter) for k in per if k]), timeout)

    t0 = time.monotonic()
    asyncio.run(main())
    return time.monotonic() - t0, lat


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return 0.0
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def idle_sessions(system, n, timeout=120):
    """Opens n SMTP sessions from 127.0.x.y source addresses, waits for every greeting, and
    returns (memory before, memory after, sockets). The caller closes the sockets."""
    raise_nofile(n + 1000)
    before = system.mem_kib()
    sel = selectors.DefaultSelector()
    socks, pending = [], 0
    deadline = time.monotonic() + timeout
    try:
        for i in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.bind(("127.0.%d.%d" % (1 + i // 250 % 250, 2 + i % 250), 0))
            try:
                s.connect(("127.0.0.1", system.port))
            except BlockingIOError:
                pass
            socks.append(s)
            sel.register(s, selectors.EVENT_READ)
            pending += 1
            # keep the listen backlog from overflowing: drain greetings as we go
            while pending > 256 or (i == n - 1 and pending):
                for key, _ in sel.select(timeout=1):
                    data = key.fileobj.recv(512)
                    if not data.startswith(b"220"):
                        raise RuntimeError("session %d: %r instead of a greeting" % (i, data))
                    sel.unregister(key.fileobj)
                    pending -= 1
                if time.monotonic() > deadline:
                    raise RuntimeError("%d of %d greetings missing after %d s"
                                       % (pending, n, timeout))
        time.sleep(0.5)
        after = system.mem_kib()
    except BaseException:
        for s in socks:
            s.close()
        raise
    finally:
        sel.close()
    return before, after, socks


def fsync_check(system, strace_pids, messages=5):
    """Traces fsync/fdatasync/msync and the reply writes of the system's processes while one
    client sends messages one after another; True when before every '250 ... queued' reply a
    sync call returned after the previous such reply. Returns (ok, syncs, replies, how)."""
    out = os.path.join(system.dir, "fsync.strace")
    argv = ["strace", "-f", "-ttt", "-s", "80", "-o", out,
            "-e", "trace=fsync,fdatasync,msync,write,writev,sendto,sendmsg"]
    for p in strace_pids:
        argv += ["-p", str(p)]
    tr = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, start_new_session=True)
    try:
        time.sleep(1.0)  # strace attaches (it has no ready signal; a late attach only
        # makes the check fail, never pass wrongly: the reply writes would be missing)
        py_source(system.port, 1, messages, 1024, True)
        time.sleep(0.5)
    finally:
        tr.send_signal(signal.SIGINT)
        try:
            tr.wait(timeout=30)
        except subprocess.TimeoutExpired:
            tr.kill()
            tr.wait()
    events = []  # (time, kind): kind 'sync' at return, 'reply' at call
    pending = {}
    call = re.compile(r"^(\d+)\s+([\d.]+)\s+(\w+)\((.*)$")
    resumed = re.compile(r"^(\d+)\s+([\d.]+)\s+<\.\.\. (\w+) resumed>(.*)$")
    with open(out) as f:
        for line in f:
            m = resumed.match(line)
            if m:
                pid, t, name, rest = m.groups()
                if name in ("fsync", "fdatasync", "msync") and "= 0" in rest:
                    events.append((float(t), "sync"))
                pending.pop(pid, None)
                continue
            m = call.match(line)
            if not m:
                continue
            pid, t, name, rest = m.groups()
            if name in ("fsync", "fdatasync", "msync"):
                if "<unfinished" in rest:
                    pending[pid] = name
                elif re.search(r"=\s*0\s*$", rest):
                    events.append((float(t), "sync"))
            elif re.search(r'"250 2\.0\.0 [^"]*queued', rest):
                events.append((float(t), "reply"))
    events.sort()
    syncs = sum(1 for _, k in events if k == "sync")
    replies = sum(1 for _, k in events if k == "reply")
    ok, synced = replies == messages, False
    for _, kind in events:
        if kind == "sync":
            synced = True
        else:
            ok = ok and synced
            synced = False
    return ok, syncs, replies, "strace -f -e trace=fsync,fdatasync,msync"
