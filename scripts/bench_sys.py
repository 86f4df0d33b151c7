"""The systems under test for scripts/bench: relayd and a Postfix instance configured as the
same backup MX (holds bench.test until ETRN, then sends it to one loopback next hop), plus
the sink that stands for the branch office's MTA, and /proc readers for memory and CPU.

Every process started here is registered with a Reaper, which ends it (and removes the
temporary directories) on any exit: normal, error, Ctrl-C or SIGTERM. Nothing listens
anywhere but 127.0.0.1, on ports the kernel picked as free."""
import asyncio
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

DOMAIN = "bench.test"
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, step=0.02):
    """Polls pred() until it is true; raises after timeout seconds (every wait is bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


def smtp_greeted(port, host="127.0.0.1", timeout=2):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            ok = s.recv(200).startswith(b"220")
            s.sendall(b"QUIT\r\n")
            return ok
    except OSError:
        return False


def smtp_etrn(port, domain=DOMAIN, timeout=60):
    """Sends EHLO + ETRN domain; returns the ETRN reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if not line:
                    raise OSError("connection closed")
                if line[3:4] != b"-":
                    return line.decode("ascii", "replace").strip()

        reply()
        s.sendall(b"EHLO bench-client.test\r\n")
        reply()
        s.sendall(b"ETRN " + domain.encode() + b"\r\n")
        r = reply()
        s.sendall(b"QUIT\r\n")
        return r


# ---- /proc readers -------------------------------------------------------------------

def proc_children(ppid):
    out = []
    for d in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == ppid:
            out.append(int(d.split("/")[2]))
    return out


def rollup_kib(pid):
    """{'Rss', 'Pss', 'Anonymous': kib} from /proc/PID/smaps_rollup ({} if it is gone)."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, rest = line.partition(":")
                if k in ("Rss", "Pss", "Anonymous"):
                    out[k] = int(rest.split()[0])
    except OSError:
        pass
    return out


def cpu_s(pid, with_children=True):
    """utime+stime of the process (all threads), plus the reaped children's, in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return 0.0
    v = st[st.rindex(")") + 2:].split()
    t = int(v[11]) + int(v[12])
    if with_children:
        t += int(v[13]) + int(v[14])
    return t / CLK


class Sampler:
    """Samples a system's memory every interval seconds in a thread; keeps the peak."""

    def __init__(self, system, interval=0.25):
        self.system, self.interval = system, interval
        self.peak = self.peak_anon = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self):
        self.peak = max(self.peak, self.system.mem_kib())
        self.peak_anon = max(self.peak_anon, self.system.anon_kib())

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.sample()


# ---- process and temp-dir bookkeeping ---------------------------------------------------

class Reaper:
    """Owns every child process and temp dir; close() ends and removes them all."""

    def __init__(self):
        self.procs, self.dirs, self.closers = [], [], []
        self.exits = {}  # program name -> exit statuses of the processes stopped

    def popen(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)  # Ctrl-C reaches us; we end them
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def tmpdir(self, tag):
        import tempfile
        d = tempfile.mkdtemp(prefix="hf-bench-%s-" % tag)
        os.chmod(d, 0o755)  # Postfix daemons run as user postfix and must enter it
        self.dirs.append(d)
        return d

    def stop(self, p, timeout=20):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        prog = os.path.basename(p.args[0] if isinstance(p.args, list) else str(p.args))
        self.exits.setdefault(prog, []).append(p.returncode)
        if p in self.procs:
            self.procs.remove(p)

    def close(self):
        for fn in reversed(self.closers):
            try:
                fn()
            except Exception as e:  # keep cleaning up whatever failed
                print("bench: cleanup: %s" % e)
        self.closers = []
        for p in list(self.procs):
            try:
                self.stop(p, timeout=10)
            except Exception as e:
                print("bench: cleanup: %s" % e)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs = []


# ---- the sink: the branch office's MTA ----------------------------------------------------

class Sink:
    """Counts messages as they arrive and timestamps the first and the last.
    Uses Postfix's smtp-sink (its -c counter on stdout) when installed, else a small
    asyncio server in a thread (smoke runs)."""

    def __init__(self, reaper, use_smtp_sink):
        self.port = free_port()
        self.count, self.first, self.last = 0, None, None
        self._lock = threading.Lock()
        self.kind = "smtp-sink" if use_smtp_sink else "python"
        if use_smtp_sink:
            self.proc = reaper.popen(
                ["smtp-sink", "-u", "nobody", "-c", "127.0.0.1:%d" % self.port, "1024"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
            threading.Thread(target=self._read_counter, daemon=True).start()
        else:
            self.proc = None
            self._loop = asyncio.new_event_loop()
            ready = threading.Event()
            threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
            ready.wait(10)
            reaper.closers.append(self.close)
        wait_until(lambda: smtp_greeted(self.port), 20, "the sink")
        self.reset()

    def reset(self):
        with self._lock:
            self.base, self.first, self.last = self.count, None, None

    def _seen(self, n, t):
        with self._lock:
            if n > self.count:
                self.count = n
                if self.first is None and n > self.base:
                    self.first = t
                self.last = t

    def received(self):
        with self._lock:
            return self.count - self.base

    def _read_counter(self):
        pat = re.compile(rb"mesg=(\d+)")
        buf = b""
        while True:
            chunk = self.proc.stdout.read(4096)
            if not chunk:
                return
            t = time.monotonic()
            buf = (buf + chunk)[-256:]
            m = pat.findall(buf)
            if m:
                self._seen(int(m[-1]), t)

    # asyncio fallback: accepts everything, PIPELINING-safe (replies in order)
    def _serve(self, ready):
        asyncio.set_event_loop(self._loop)

        async def session(r, w):
            w.write(b"220 sink ESMTP\r\n")
            try:
                while True:
                    line = await r.readline()
                    if not line:
                        break
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        w.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE\r\n")
                    elif verb == b"DATA":
                        w.write(b"354 go\r\n")
                        while True:
                            dl = await r.readline()
                            if not dl or dl == b".\r\n":
                                break
                        self._seen(self.count + 1, time.monotonic())
                        w.write(b"250 2.0.0 ok\r\n")
                    elif verb == b"QUIT":
                        w.write(b"221 bye\r\n")
                        await w.drain()
                        break
                    else:
                        w.write(b"250 ok\r\n")
                    await w.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            w.close()

        async def main():
            self._server = await asyncio.start_server(session, "127.0.0.1", self.port,
                                                      limit=1 << 20)
            ready.set()
            await self._server.serve_forever()

        try:
            self._loop.run_until_complete(main())
        except (asyncio.CancelledError, RuntimeError):
            pass

    def close(self):
        if self.proc is None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)


# ---- relayd ----------------------------------------------------------------------------

class Relayd:
    name = "relayd"

    def __init__(self, reaper, bindir, sink_port, extra=""):
        self.reaper, self.bindir = reaper, bindir
        self.dir = reaper.tmpdir("relayd")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "relayd.conf")
        with open(self.conf, "w") as f:
            f.write("hostname = relayd-bench.test\n"
                    "listen = 127.0.0.1:%d\n"
                    "queue_dir = %s/queue\n"
                    "control_socket = %s/ctl.sock\n"
                    "log_level = info\n"
                    "max_connections = 20000\n"
                    "max_connections_per_ip = 20000\n"
                    "etrn_rate_client = 100000\n"
                    "etrn_rate_domain = 100000\n"
                    "retry_interval = 0\n%s\n"
                    "[domain %s]\nhold = yes\ntls = none\nnext_hop = [127.0.0.1]:%d\n"
                    % (self.port, self.dir, self.dir, extra, DOMAIN, sink_port))
        self.log = open(os.path.join(self.dir, "relayd.log"), "wb")
        self.proc = reaper.popen([os.path.join(bindir, "relayd"), "-c", self.conf],
                                 stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        wait_until(lambda: self.proc.poll() is not None or smtp_greeted(self.port), 60,
                   "relayd to listen")
        if self.proc.poll() is not None:
            raise RuntimeError("relayd exited at start: see %s/relayd.log" % self.dir)

    def relayctl(self, *args, timeout=600):
        return subprocess.run([os.path.join(self.bindir, "relayctl"), "-c", self.conf]
                              + list(args), capture_output=True, text=True, timeout=timeout)

    def queued(self):
        import json
        r = self.relayctl("queue", "--json")
        if r.returncode != 0:
            raise RuntimeError("relayctl queue: %s" % r.stderr.strip())
        return json.loads(r.stdout)["totals"]["messages"]

    def settled(self):
        return True  # 250 means committed: nothing moves inside relayd after it

    def purge(self):
        if self.queued():
            r = self.relayctl("delete", "--domain", DOMAIN, "--yes")
            if r.returncode != 0:
                raise RuntimeError("relayctl delete: %s" % (r.stdout + r.stderr).strip())
        wait_until(lambda: self.queued() == 0, 120, "relayd's queue to empty")

    def pids(self):
        return [self.pid]

    def mem_kib(self):
        return rollup_kib(self.pid).get("Rss", 0)  # one process: its RSS

    def anon_kib(self):
        """The anonymous part of the RSS (heap, stacks): the rest is the queue's memory
        map, page cache the kernel can reclaim."""
        return rollup_kib(self.pid).get("Anonymous", 0)

    def cpu(self):
        return cpu_s(self.pid)

    def close(self):
        self.reaper.stop(self.proc, timeout=60)
        self.log.close()


# ---- Postfix ---------------------------------------------------------------------------

POSTFIX_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n     -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
hold      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# The same job as relayd's [domain bench.test] hold = yes + next_hop: relay bench.test,
# keep it (defer_transports) until ETRN (fast_flush_domains), then send it to the sink.
POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.test
mydomain = postfix-bench.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {domain}
transport_maps = inline:{{ {domain}=hold:[127.0.0.1]:{sink} }}
defer_transports = hold
fast_flush_domains = $relay_domains
smtpd_etrn_restrictions = permit_mynetworks, reject
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = {procs}
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
message_size_limit = 20971520
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
biff = no
"""


class Postfix:
    name = "postfix"

    def __init__(self, reaper, sink_port, procs=200):
        self.reaper = reaper
        self.dir = reaper.tmpdir("postfix")
        self.etc = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        os.makedirs(self.etc)
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(self.spool)
        shutil.chown(os.path.join(self.dir, "data"), "postfix", "postfix")
        self.port = free_port()
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN_CF.format(d=self.dir, domain=DOMAIN, sink=sink_port,
                                           procs=procs))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(port=self.port))
        self.cmd("postfix", "start")
        reaper.closers.append(self.close)
        pidfile = os.path.join(self.spool, "pid", "master.pid")
        wait_until(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 30,
                   "the Postfix master pid file")
        self.pid = int(open(pidfile).read().split()[0])
        wait_until(lambda: smtp_greeted(self.port), 60, "Postfix to listen")

    def cmd(self, prog, *args, timeout=600, check=True):
        r = subprocess.run([prog, "-c", self.etc] + list(args), capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise RuntimeError("%s %s: %s" % (prog, " ".join(args),
                                              (r.stdout + r.stderr).strip()))
        return r

    def _count(self, *queues):
        n = 0
        for q in queues:
            for _, _, files in os.walk(os.path.join(self.spool, q)):
                n += len(files)
        return n

    def queued(self):
        return self._count("maildrop", "incoming", "active", "deferred", "hold")

    def settled(self):
        """True when the queue manager has moved every message to deferred (ETRN only
        flushes what the fast flush service has logged as deferred)."""
        return self._count("maildrop", "incoming", "active") == 0

    def purge(self):
        if self.queued():
            self.cmd("postsuper", "-d", "ALL")
        wait_until(lambda: self.queued() == 0, 120, "Postfix's queue to empty")

    def pids(self):
        return [self.pid] + proc_children(self.pid)

    def mem_kib(self):
        return sum(rollup_kib(p).get("Pss", 0) for p in self.pids())

    def anon_kib(self):
        return sum(rollup_kib(p).get("Anonymous", 0) for p in self.pids())

    def cpu(self):
        # live processes' own time + what the master reaped from children that exited
        t = cpu_s(self.pid)
        for p in proc_children(self.pid):
            t += cpu_s(p, with_children=False)
        return t

    def close(self):
        if self.pid is None:
            return
        self.cmd("postfix", "stop", check=False, timeout=60)
        try:
            wait_until(lambda: not os.path.exists("/proc/%d" % self.pid), 30,
                       "the Postfix master to exit")
        except RuntimeError:
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None
