"""DATA or BDAT towards a next hop? A measurement, not a test.

A client sends the same messages one after another over one connection to a real relayd, as
relayd's delivery does towards a next hop, once with DATA (MAIL, RCPT and DATA pipelined, the
body dot-stuffed after the 354, then the 250) and once with BDAT (MAIL, RCPT and
"BDAT n LAST" with the body in one write, then the three replies). It runs directly over
loopback and through a loopback proxy that holds every segment for a delay each way, standing
in for a slow link to a branch office. Prints messages per second for each.

Usage: /usr/bin/python3 scripts/bench_chunking.py [messages] [size] [one-way-delay-ms]
"""

import asyncio
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import hfharness as hf  # noqa: E402


def make_body(size, i):
    line = (b"%07d " % i) + b"x" * 70 + b"\r\n"
    body = b"Subject: bench %d\r\n\r\n" % i
    body += b"." + line  # one line that needs stuffing
    while len(body) < size:
        body += line
    return body[:size - 2] + b"\r\n"


class Proxy:
    """Loopback TCP proxy delaying every segment by `delay` seconds, in order, both ways."""

    def __init__(self, target_port, delay):
        self.target_port = target_port
        self.delay = delay
        self.port = hf.free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("proxy did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        self.loop.run_forever()

    async def _serve(self):
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", self.port)
        self.ready.set()

    async def _pipe(self, reader, writer):
        q = asyncio.Queue()

        async def sender():
            while True:
                due, data = await q.get()
                if data is None:
                    writer.close()
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(sender())
        while True:
            data = await reader.read(65536)
            await q.put((time.monotonic() + self.delay, data or None))
            if not data:
                break
        await task

    async def _conn(self, creader, cwriter):
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(creader, swriter), self._pipe(sreader, cwriter))


def run(port, bodies, use_bdat):
    c = hf.RawSMTP(port, bound=60)
    c.ehlo()
    start = time.monotonic()
    for body in bodies:
        env = b"MAIL FROM:<bench@example.test>\r\nRCPT TO:<r@open.test>\r\n"
        if use_bdat:
            c.send(env + b"BDAT %d LAST\r\n" % len(body) + body)
            r = c.replies(3, bound=60)
        else:
            c.send(env + b"DATA\r\n")
            r = c.replies(3, bound=60)
            assert r[2].code == 354, r
            c.send(hf.dot_stuff(body) + b".\r\n")
            r = [c.reply(bound=60)]
        assert r[-1].code == 250, r
    took = time.monotonic() - start
    c.cmd("QUIT")
    c.close()
    return took


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 10240
    delay_ms = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    bodies = [make_body(size, i) for i in range(n)]
    with hf.Relayd(conf={"max_message_size": str(max(size * 2, 1 << 20))}) as r:

        proxy = Proxy(r.port, delay_ms / 1000.0)
        for name, port in (("loopback", r.port), ("RTT %g ms" % (2 * delay_ms), proxy.port)):
            for verb in ("DATA", "BDAT"):
                took = min(run(port, bodies, verb == "BDAT") for _ in range(3))
                print("%-12s %-4s %4d x %7d octets: %7.1f messages/s (%.3f s)"
                      % (name, verb, n, size, n / took, took))


if __name__ == "__main__":
    main()
