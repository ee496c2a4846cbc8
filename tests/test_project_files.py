"""The README, getting-started, Makefile, tox.ini and .ci/run agree with each other and with the command."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from poso_sim.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
GETTING_STARTED = (ROOT / "docs" / "getting-started.md").read_text()


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _code_lines(block_text: str) -> list[str]:
    """Commands of the fenced code blocks in a piece of markdown (comments stripped, `$ ` prompts removed)."""
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", block_text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                line = line[2:]
            elif block_text.count("```console") and not line.startswith("poso-sim"):
                continue
            cmd = line.split("#", 1)[0].strip()
            if cmd:
                out.append(cmd)
    return out


def _makefile_recipes() -> dict[str, list[str]]:
    recipes: dict[str, list[str]] = {}
    target = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z][\w-]*):", line)
        if m:
            target = m.group(1)
            recipes[target] = []
        elif line.startswith("\t") and target:
            recipes[target].append(line.strip().lstrip("@"))
        elif not line.strip():
            target = None
    return recipes


# ------------------------------------------------------------------------------------------------ README
def test_readme_has_exactly_two_setup_commands():
    assert _code_lines(_section(README, "Set-up")) == ["make demo", "make test"]


def test_readme_commands_work_in_the_order_shown():
    cmds = _code_lines(_section(README, "Using it"))
    made: set[str] = set()
    parser = build_parser("*")
    for cmd in cmds:
        argv = shlex.split(cmd)
        assert argv[0] == "poso-sim", cmd
        args = parser.parse_args(argv[1:])  # every command parses
        for word in argv[1:]:
            if word.endswith((".sol", ".csv", ".parquet")) and not word.startswith("-"):
                prev = argv[argv.index(word) - 1]
                if prev != "--out":
                    assert word in made, f"{cmd!r} uses {word} before any command makes it"
        if getattr(args, "out", None):
            made.add(args.out)
    assert any(c.startswith("poso-sim verify plan.sol") for c in cmds)


def test_readme_says_what_a_new_user_needs():
    assert ". .venv/bin/activate" in README
    assert "pip install ." in README
    assert "stub payloads" in README.lower() and "campaign" in README
    assert "815.72 $" in README and "893.41 $" in README


# --------------------------------------------------------------------------------------------- getting started
def test_getting_started_commands_parse_and_follow_each_other():
    parser = build_parser("*")
    made: set[str] = set()
    for cmd in [c for c in _code_lines(GETTING_STARTED) if c.startswith("poso-sim ") and "--help" not in c]:
        argv = shlex.split(cmd)[1:]
        args = parser.parse_args(argv)
        if getattr(args, "command", None) == "verify":
            assert args.file in made, cmd
        if getattr(args, "out", None):
            made.add(args.out)


def test_getting_started_shows_the_real_scenario_list(capsys):
    assert main(["scenarios"]) == 0
    listing = capsys.readouterr().out
    assert f"$ poso-sim scenarios\n{listing}" in GETTING_STARTED


# ----------------------------------------------------------------------------------------- Makefile and tox
def test_tox_envs_mirror_the_makefile_targets():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    make = _makefile_recipes()

    def norm_make(lines: list[str]) -> list[str]:
        out = []
        for ln in lines:
            ln = ln.replace("$(BIN)/", "").replace("NO_MKDOCS_2_WARNING=1 ", "")
            if ln.startswith("python -m benchmarks") or ln.startswith("python examples") or not ln.startswith(
                    ("touch", "$(PY)", "$(PROGRESS)", "python -m pip", "@echo", "echo")):
                out.append(ln)
        return out

    def norm_tox(env: str) -> list[str]:
        cmds = tox[f"testenv:{env}"]["commands"].strip().splitlines()
        return [c.replace(" {posargs}", "").replace('"', "'").strip() for c in cmds]

    for env in ("test", "test-slow", "demo", "docs", "examples", "bench"):
        assert norm_tox(env) == norm_make(make[env]), env
    assert "POSO_SIM_CACHE_DIR" in tox["testenv"]["pass_env"] and "OMP_NUM_THREADS" in tox["testenv"]["pass_env"]


def test_one_test_command_for_make_tox_and_ci():
    make = _makefile_recipes()
    assert make["test"] == ["$(BIN)/python .ci/run_pytest.py -q"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test\n" in ci.replace("step make test ||", "make test\n")


# ---------------------------------------------------------------------------------------- .ci/run_pytest.py, run
def test_ci_pytest_counts_no_tests_as_success(tmp_path):
    (tmp_path / "test_nothing_here.py").write_text("import pytest\n\n@pytest.mark.slow\ndef test_x():\n    pass\n")
    r = subprocess.run([sys.executable, str(ROOT / ".ci" / "run_pytest.py"), "-q", "-m", "not slow", "-p",
                        "no:cacheprovider", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "no tests collected" in r.stdout, r.stdout + r.stderr
    (tmp_path / "test_fails.py").write_text("def test_y():\n    assert 1 == 2\n")
    r = subprocess.run([sys.executable, str(ROOT / ".ci" / "run_pytest.py"), "-q", "-p", "no:cacheprovider",
                        str(tmp_path / "test_fails.py")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1


@pytest.mark.parametrize("codes, rc, calls", [
    ({"test": 0, "test-slow": 0}, 0, ["test", "test-slow"]),
    ({"test": 5, "test-slow": 5}, 0, ["test", "test-slow"]),
    ({"test": 1, "test-slow": 0}, 1, ["test"]),
    ({"test": 0, "test-slow": 2}, 2, ["test", "test-slow"]),
])
def test_ci_run_handles_exit_5(tmp_path, codes, rc, calls):
    log = tmp_path / "calls"
    fake = tmp_path / "make"
    fake.write_text("#!/bin/sh\n"
                    f"echo \"$1\" >> {log}\n"
                    + "".join(f"[ \"$1\" = {t} ] && exit {c}\n" for t, c in codes.items())
                    + "exit 99\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True)
    assert r.returncode == rc, r.stderr
    assert log.read_text().split() == calls


# ------------------------------------------------------------------------------------ .ci/with_progress.py
def _with_progress():
    import importlib.util

    spec = importlib.util.spec_from_file_location("with_progress", ROOT / ".ci" / "with_progress.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_with_progress_fills_silences_and_keeps_the_exit_status():
    import io

    wp = _with_progress()
    out = io.StringIO()
    cmd = [sys.executable, "-u", "-c", "import time; print('start'); time.sleep(1.6); print('end'); raise SystemExit(3)"]
    rc = wp.run("waiting", cmd, after=0.5, every=0.5, out=out, poll=0.05)
    lines = out.getvalue().splitlines()
    assert rc == 3
    assert lines[0] == "start" and lines[-1] == "end"
    said = lines[1:-1]
    assert 1 <= len(said) <= 3 and all(ln.startswith("  ... waiting: ") for ln in said)


def test_with_progress_on_a_terminal_updates_one_line():
    import io

    class TTY(io.StringIO):
        def isatty(self):
            return True

    wp = _with_progress()
    out = TTY()
    rc = wp.run("installing", [sys.executable, "-c", "import time; time.sleep(1.2)"], after=0.3, out=out, poll=0.05)
    text = out.getvalue()
    assert rc == 0 and "\n" not in text
    assert text.count("\r\x1b[2K  ... installing: ") >= 3 and text.endswith("\r\x1b[2K")


def test_with_progress_command_line():
    r = subprocess.run([sys.executable, str(ROOT / ".ci" / "with_progress.py"), "x", "--after", "5", "--",
                        sys.executable, "-c", "print('hi')"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "hi\n"
    r = subprocess.run([sys.executable, str(ROOT / ".ci" / "with_progress.py"), "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "give the command after --" in r.stderr
