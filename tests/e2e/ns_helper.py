"""Small servers and a client for tests that run inside network namespaces (started with
`ip netns exec NS /usr/bin/python3 ns_helper.py ...` by test_fetchd_atrn_netns.py), since a
server in the test's own process would be in the host's namespace.

  ns_helper.py dns PORT ZONE_JSON    python3-dnslib on 127.0.0.1:PORT (UDP and TCP);
                                     ZONE_JSON: {"name": [["MX", 10, "host"], ["A", "ip"]]}
  ns_helper.py sink PORT OUTDIR      python3-aiosmtpd on 127.0.0.1:PORT; each message is
                                     written to OUTDIR/NNNN.eml (content as received) and
                                     OUTDIR/NNNN.json (envelope), the .json last
  ns_helper.py send HOST PORT FROM TO[,TO...]   smtplib; the message on stdin; prints the
                                     reply to the end of data

The servers print "ready" once listening and run until their stdin is closed, or at most
MAX_SECONDS. Only the namespace's own loopback is used.
"""

import json
import os
import smtplib
import sys
import threading

MAX_SECONDS = 600


def _wait_for_stdin_eof():
    done = threading.Event()

    def reader():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            done.set()
    threading.Thread(target=reader, daemon=True).start()
    done.wait(MAX_SECONDS)


def dns(port, zone_json):
    from dnslib import A, MX, QTYPE, RR, DNSLabel
    from dnslib.server import BaseResolver, DNSLogger, DNSServer
    zone = json.loads(zone_json)

    class Zone(BaseResolver):
        def resolve(self, request, handler):
            reply = request.reply()
            name = str(request.q.qname).rstrip(".").lower()
            qtype = QTYPE[request.q.qtype]
            if name not in zone:
                reply.header.rcode = 3
                return reply
            for rec in zone[name]:
                if rec[0] != qtype:
                    continue
                rdata = MX(rec[2], rec[1]) if rec[0] == "MX" else A(rec[1])
                reply.add_answer(RR(DNSLabel(name), getattr(QTYPE, rec[0]), rdata=rdata,
                                    ttl=60))
            return reply
    logger = DNSLogger(log="-request,-reply,-truncated,-recv,-send,-data,-error")
    servers = [DNSServer(Zone(), address="127.0.0.1", port=port, tcp=t, logger=logger)
               for t in (False, True)]
    for s in servers:
        s.start_thread()
    print("ready", flush=True)
    _wait_for_stdin_eof()
    for s in servers:
        s.stop()


def sink(port, outdir):
    from aiosmtpd.controller import Controller
    lock = threading.Lock()
    count = [0]

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with lock:
                count[0] += 1
                base = os.path.join(outdir, "%04d" % count[0])
            with open(base + ".eml", "wb") as f:
                f.write(envelope.original_content)
            with open(base + ".json.tmp", "w") as f:
                json.dump({"from": envelope.mail_from, "rcpts": envelope.rcpt_tos}, f)
            os.rename(base + ".json.tmp", base + ".json")
            return "250 2.0.0 stored"
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port, decode_data=False)
    ctl.start()
    print("ready", flush=True)
    _wait_for_stdin_eof()
    ctl.stop()


def send(host, port, sender, rcpts):
    body = sys.stdin.buffer.read()
    with smtplib.SMTP(host, port, timeout=60) as s:
        s.ehlo("injector.test")
        s.mail(sender)
        for r in rcpts.split(","):
            code, msg = s.rcpt(r)
            if code != 250:
                print("rcpt %s: %d %s" % (r, code, msg.decode()), flush=True)
                sys.exit(1)
        code, msg = s.data(body)
        print("%d %s" % (code, msg.decode("utf-8", "replace")), flush=True)
        sys.exit(0 if code == 250 else 1)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "dns":
        dns(int(sys.argv[2]), sys.argv[3])
    elif mode == "sink":
        sink(int(sys.argv[2]), sys.argv[3])
    elif mode == "send":
        send(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        sys.exit("unknown mode %s" % mode)
