"""A python3-aiosmtpd receiving server for tests that run it inside a network namespace
(`ip netns exec NS /usr/bin/python3 nssink.py HOST PORT DIR`): every message becomes one JSON
file in DIR (mail_from, rcpt_tos, the content in base64), written whole and then renamed, so
a reader never sees half a file. Prints "ready" once listening; stops on SIGTERM."""

import base64
import json
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Store:
    def __init__(self, outdir):
        self.outdir = outdir
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with self.lock:
            self.n += 1
            n = self.n
        rec = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
               "data": base64.b64encode(data).decode()}
        tmp = os.path.join(self.outdir, ".msg-%06d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(self.outdir, "msg-%06d.json" % n))
        return "250 2.0.0 stored as %d" % n


def main():
    host, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c = Controller(Store(outdir), hostname=host, port=port, decode_data=False,
                   ready_timeout=30)
    c.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    print("ready", flush=True)
    done.wait(3600)  # bounded: the test stops it long before
    c.stop()


if __name__ == "__main__":
    main()
