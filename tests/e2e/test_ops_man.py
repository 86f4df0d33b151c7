"""The man pages relayd(8), relayctl(8), fetchd(8) and holdfast.conf(5) are generated at build
time (scripts/man/mkman.c) from the key table and each program's --help; this test checks
that what was built is in step with the programs and renders without a warning: every key
that `relayd --config-reference` lists is in holdfast.conf(5) under its own section with its
default, every option of each program's --help and every relayctl command is in its page,
and groff (-ww, all warnings) and man -l render each page silently."""

import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfharness  # noqa: E402

MAN_DIR = os.path.join(os.path.dirname(hfharness.BIN_DIR), "man")
PAGES = ["relayd.8", "relayctl.8", "fetchd.8", "holdfast.conf.5"]


def render(page):
    """The page as text, roff escapes undone (what a reader sees)."""
    env = dict(os.environ, MANWIDTH="200", MAN_KEEP_FORMATTING="0")
    r = subprocess.run(["man", "-l", os.path.join(MAN_DIR, page)], capture_output=True,
                       env=env, timeout=60)
    return r.returncode, re.sub(r".\x08", "", r.stdout.decode()), r.stderr.decode()


def sections(text):
    """Splits rendered text into {SECTION HEADING: body}."""
    out, cur = {}, None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.upper() == line and "(" not in line:
            cur = line.strip()
            out[cur] = ""
        elif cur:
            out[cur] += line.strip() + "\n"
    return out


def help_text(prog):
    return subprocess.run([os.path.join(hfharness.BIN_DIR, prog), "--help"], capture_output=True,
                          text=True, timeout=30).stdout


class ManPagesTest(unittest.TestCase):
    def setUp(self):
        for p in PAGES:
            if not os.path.exists(os.path.join(MAN_DIR, p)):
                self.fail("%s was not generated in %s" % (p, MAN_DIR))
        if not shutil.which("groff") or not shutil.which("man"):
            self.skipTest("groff or man missing")

    def test_render_without_warnings(self):
        for p in PAGES:
            r = subprocess.run(["groff", "-ww", "-man", "-z", os.path.join(MAN_DIR, p)],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual((r.returncode, r.stderr), (0, ""), p)
            code, text, err = render(p)
            self.assertEqual((code, err), (0, ""), p)
            self.assertIn("holdfast", text)

    def test_every_key_in_holdfast_conf(self):
        ref = subprocess.run([hfharness.RELAYD, "--config-reference"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        rows = re.findall(r"^\| (\w+) \| `([^`]+)` \| (.*?) \| (.*) \|$", ref, re.M)
        self.assertGreater(len(rows), 50)
        _, text, _ = render("holdfast.conf.5")
        secs = sections(text)
        heading = {"top": "GLOBAL KEYS", "domain": "DOMAIN KEYS", "group": "GROUP KEYS",
                   "relay": "RELAY KEYS"}
        for sec, key, default, meaning in rows:
            body = secs.get(heading[sec], "")
            m = re.search(r"^%s\b(.*?)(?:\n\n|\Z)" % re.escape(key), body, re.M | re.S)
            self.assertTrue(m, "key %s missing from %s in holdfast.conf(5)" % (key, heading[sec]))
            para = " ".join(m.group(0).split())
            d = re.search(r"Default: (.*?)(?:; one of \S+)?\.$", para)
            self.assertTrue(d, "no default for %s: %r" % (key, para))
            want = re.match(r"`([^`]*)`", default)
            self.assertEqual(d.group(1), want.group(1) if want and want.group(1) else "none",
                             "default of %s" % key)
            restart = "(read at start only)" in meaning
            self.assertEqual("read at start only" in para, restart, key)

    def test_every_option_in_its_page(self):
        for prog, page in (("relayd", "relayd.8"), ("relayctl", "relayctl.8"),
                           ("fetchd", "fetchd.8")):
            _, text, _ = render(page)
            opts = sections(text).get("OPTIONS", "")
            for opt in set(re.findall(r"^\s{2,6}(?:-\w, )?(--[\w-]+|-\w)", help_text(prog), re.M)):
                self.assertRegex(opts, r"(^|\s)%s\b" % re.escape(opt),
                                 "%s missing from OPTIONS of %s" % (opt, page))

    def test_every_relayctl_command_in_page(self):
        h = help_text("relayctl")
        cmds = re.findall(r"^  ([a-z]+)\b", h.split("commands:", 1)[1], re.M)
        self.assertIn("flush", cmds)
        _, text, _ = render("relayctl.8")
        body = sections(text).get("COMMANDS", "")
        for c in cmds:
            self.assertRegex(body, r"(?m)^%s\b" % c, "relayctl %s missing from relayctl(8)" % c)


if __name__ == "__main__":
    unittest.main()
