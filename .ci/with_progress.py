"""Run a command and pass its output through; while it prints nothing, say that it still works.

    python .ci/with_progress.py "installing packages" -- python -m pip install ...

A step such as pip's "Installing collected packages" or ``python -m venv`` prints nothing for a minute or more.
After ``--after`` seconds (2) without output this prints ``  ... <label>: N s`` -- on a terminal as one line
updated in place, otherwise as a new line every ``--every`` seconds (5). The exit status is the command's.
Only the standard library: it runs before the project's environment exists (the Makefile's install step).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time


def run(label: str, cmd: list[str], *, after: float = 2.0, every: float = 5.0, out=None,
        clock=time.monotonic, poll: float = 0.25) -> int:
    out = out if out is not None else sys.stdout
    tty = out.isatty() if hasattr(out, "isatty") else False
    lock = threading.Lock()
    state = {"last": clock(), "shown": False, "said": -1e300}
    t0 = clock()

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            with lock:
                if state["shown"]:
                    out.write("\r\x1b[2K")
                    state["shown"] = False
                out.write(raw.decode(errors="replace"))
                out.flush()
                state["last"] = clock()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while proc.poll() is None:
        time.sleep(poll)
        with lock:
            now = clock()
            if now - state["last"] < after:
                continue
            text = f"  ... {label}: {now - t0:.0f} s"
            if tty:
                out.write("\r\x1b[2K" + text)
                state["shown"] = True
            elif now - state["said"] >= every or state["said"] < state["last"]:
                out.write(text + "\n")
                state["said"] = now
            out.flush()
    reader.join()
    with lock:
        if state["shown"]:
            out.write("\r\x1b[2K")
            out.flush()
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], usage="%(prog)s LABEL [options] -- COMMAND ...")
    ap.add_argument("label", help="what the command does, e.g. 'installing packages'")
    ap.add_argument("--after", type=float, default=2.0, help="seconds of silence before saying anything")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between lines when not on a terminal")
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        ap.error("give the command after --")
    cut = argv.index("--")
    args = ap.parse_args(argv[:cut])
    cmd = argv[cut + 1:]
    try:
        return run(args.label, cmd, after=args.after, every=args.every)
    except FileNotFoundError as exc:
        print(f"with_progress: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
