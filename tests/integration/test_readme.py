"""The commands a newcomer copies, run as written: the README's "Try it" section and
the header comments of the two example files. The commands are read from those files,
so a change that breaks them (a second binary that `cargo run` cannot choose between,
an example backend without the path the example asks for) fails here.

The commands name fixed ports (8080, 10254, 9001, 9002). As root they run in a network
namespace of their own, so they cannot collide with anything on the machine;
otherwise those ports must be free."""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# A cold `cargo run --release` when the suite runs on its own without a build.
BUILD_TIMEOUT = 1800
PORTS = (8080, 10254, 9001, 9002)


def readme_try_it():
    """The shell lines of the README's "Try it" section, in order."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "Try it: expected a command block and a requests block"
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def header_commands(example):
    """The indented command lines of an example file's header comment."""
    lines = []
    for line in (REPO / example).read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("#   "):
            lines.append(line[4:])
    return lines


def in_own_netns():
    return os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")


def run_session(lines, tmp_path):
    """Runs the lines as a person would in two terminals: servers (`cargo run`, lines
    ending in `&`) in the background, each waited for; then the other lines one by
    one. Returns the output of each foreground line, in order."""
    log = tmp_path / "portico.log"
    errors = tmp_path / "stderr.txt"
    script = ["set -u", "cd %s" % shlex.quote(str(REPO))]
    if in_own_netns():
        script.insert(0, "ip link set lo up")
    marks = []
    for line in lines:
        stripped = line.split("  #", 1)[0].rstrip()
        if stripped.endswith("&") or "cargo run" in stripped:
            command = stripped.rstrip("&").rstrip()
            out = shlex.quote(str(log)) if "cargo run" in command else "/dev/null"
            script.append("%s >%s 2>&1 &" % (command, out))
            if "cargo run" in command:
                # Built (or building), then serving the file.
                script.append(
                    "for i in $(seq %d); do curl -fs http://127.0.0.1:10254/readyz >/dev/null && break; "
                    "kill -0 $! 2>/dev/null || break; sleep 0.5; done" % (BUILD_TIMEOUT * 2)
                )
            else:
                port = re.findall(r"\b(\d{4,5})\b", command)[-1]
                script.append(
                    "for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/%s) 2>/dev/null && break; sleep 0.1; done"
                    % port
                )
        else:
            # Its output as a person sees it on the terminal; curl's progress meter
            # (stderr, shown when stdout is not a terminal) aside.
            marks.append(line)
            script.append("echo '@@@ begin'; { %s\n} 2>>%s; echo \"@@@ end $?\"" % (stripped, shlex.quote(str(errors))))
    script.append("kill $(jobs -p) 2>/dev/null; wait")
    argv = ["bash", "-c", "\n".join(script)]
    if in_own_netns():
        argv = ["unshare", "--net", "--"] + argv
    else:
        for port in PORTS:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    pytest.fail("port %d is taken: these commands need it (or run as root)" % port)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BUILD_TIMEOUT + 120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    text = out.decode(errors="replace")
    portico_log = log.read_text(errors="replace") if log.exists() else ""
    outputs = re.findall(r"@@@ begin\n(.*?)@@@ end (\d+)\n", text, re.S)
    assert len(outputs) == len(marks), (text, portico_log[-3000:])
    for line, (output, rc) in zip(marks, outputs):
        assert rc == "0", (line, output, portico_log[-3000:])
    return [output for output, _ in outputs], portico_log


def www(name):
    return (REPO / "examples" / "www" / name).read_text()


def test_readme_try_it_serves_the_quickstart(tmp_path):
    lines = readme_try_it()
    assert lines[0].startswith("cargo run --release -p portico-controller -- --from-file examples/quickstart.yaml")
    outputs, log = run_session(lines, tmp_path)
    assert outputs == [www("index.html"), www("api/index.html")], log[-3000:]
    # `--log-format text` in the README: readable lines, no colour codes in a file.
    assert "listening" in log and "\x1b[" not in log, log[-3000:]
    assert "Some(" not in log, log[-3000:]


def test_quickstart_header_commands(tmp_path):
    lines = header_commands("examples/quickstart.yaml")
    # The same run command as the README's.
    assert lines[2].rstrip(" &") == readme_try_it()[0]
    outputs, log = run_session(lines, tmp_path)
    assert outputs == [www("index.html"), www("api/index.html")], log[-3000:]


def test_canary_header_commands(tmp_path):
    outputs, log = run_session(header_commands("examples/canary.yaml"), tmp_path)
    split, forced = outputs
    counts = {name: int(n) for n, name in (row.split() for row in split.strip().splitlines())}
    # A smooth weighted round robin: 90/10 is exactly 18 and 2 of 20.
    assert counts == {"v1": 18, "v2": 2}, (split, log[-3000:])
    assert forced == "v2\n"
