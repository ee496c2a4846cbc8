"""Shared pieces of the benchmarks: the machine description and the section writer of docs/benchmarks.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def machine() -> list[str]:
    """Markdown bullet lines: machine, CPU, load, date and the versions that matter."""
    import numpy as np

    try:
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "unknown"
        )
    except OSError:  # pragma: no cover - not Linux
        cpu = platform.processor() or "unknown"
    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}"]
    try:
        import casadi
        import scipy

        from poso_sim.solvers import ipopt_version

        versions += [f"scipy {scipy.__version__}", f"casadi {casadi.__version__}", f"Ipopt {ipopt_version()}"]
    except ImportError:  # pragma: no cover
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return [
        f"- machine: `{' '.join(platform.uname()[i] for i in (0, 2, 4))}`",
        f"- CPU: {cpu}, {os.cpu_count()} logical CPUs; load average at start {load:.2f}",
        f"- date: {datetime.date.today().isoformat()}",
        "- " + ", ".join(versions),
    ]


def write_section(section: str, text: str, doc: Path = DOC) -> None:
    """Replace (or append) the ``## section`` of docs/benchmarks.md with ``text`` (which starts with it)."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    old = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _m: text.rstrip("\n") + "\n\n", old)
    else:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    doc.write_text(new)


def quick_main(doc: str, section: str, report, argv: list[str] | None = None) -> None:
    """The command line of a benchmark whose ``report(quick)`` returns its section: ``[--quick] [--write]``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller workloads")
    ap.add_argument("--write", action="store_true", help="replace the section in docs/benchmarks.md")
    args = ap.parse_args(argv)
    text = report(args.quick)
    print(text)
    if args.write:
        write_section(section, text)
        print(f"written to {DOC}", file=sys.stderr)
