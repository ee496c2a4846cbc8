"""The `poso-sim` command itself: lazy sub-commands, `python -m poso_sim`, -v/-vv anywhere, and the progress /
logging handler fed by poso_sim's log records (synthetic records in the solver's format, and plain ones)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from poso_sim import progress
from poso_sim.cli import _COMMANDS, build_parser, main

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("numpy", "pyomo", "casadi", "pandas", "scipy", "matplotlib", "pydantic")


def _py(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args] if not code else [sys.executable, "-c", code, *args],
                          capture_output=True, text=True, env=env, timeout=120)


# ----------------------------------------------------------------------------------------------- entry points
def test_python_dash_m_poso_sim_lists_every_command():
    r = _py("", "-m", "poso_sim", "--help")
    assert r.returncode == 0, r.stderr
    for name in _COMMANDS:
        assert f"    {name} " in r.stdout
    assert "-v, --verbose" in r.stdout


def test_python_dash_m_poso_sim_runs_a_command():
    r = _py("", "-m", "poso_sim", "scenarios", "--json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) >= {"scenario-1", "scenario-4"}


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from poso_sim.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    r = _py(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_a_subcommand_help_imports_only_its_own_module():
    code = (
        "import sys\n"
        "from poso_sim.cli import main\n"
        "try:\n    main(['scenarios', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print(sorted(m for m in ('poso_sim.sweep.cli', 'poso_sim.report.cli', 'poso_sim.kkt.cli', 'pyomo', 'casadi')"
        " if m in sys.modules))\n"
    )
    r = _py(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_top_level_help_lines_match_the_contributors():
    """The static help lines shown by `poso-sim --help` are those the commands' own modules register."""
    full = build_parser("*")
    lazy = build_parser(None)
    helps = {}
    for parser in (full, lazy):
        sub = next(a for a in parser._actions if a.dest == "command")
        helps[parser is full] = {c.dest: c.help for c in sub._choices_actions}
    assert helps[True] == helps[False]
    assert list(helps[True]) == list(_COMMANDS)


def test_unknown_command_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- -v anywhere
@pytest.mark.parametrize(
    "argv, level",
    [
        (["scenarios"], 0),
        (["-v", "scenarios"], 1),
        (["scenarios", "-v"], 1),
        (["-v", "scenarios", "-v"], 2),
        (["scenarios", "-vv"], 2),
        (["--verbose", "scenarios", "--verbose"], 2),
    ],
)
def test_verbose_before_or_after_the_subcommand(argv, level, monkeypatch, capsys):
    seen = []
    real = progress.configure
    monkeypatch.setattr(progress, "configure", lambda v, *a, **k: seen.append(v) or real(v, *a, **k))
    assert main(argv) == 0
    assert seen == [level]
    assert "scenario-1" in capsys.readouterr().out


def test_verbose_after_a_nested_subcommand_parses():
    args = build_parser("plot").parse_args(["plot", "sweep", "t.csv", "--out", "x.png", "-vv"])
    assert args.verbose + args.verbose_after == 2


def test_main_leaves_logging_as_it_found_it():
    logger = logging.getLogger("poso_sim")
    before = (list(logger.handlers), logger.level, logger.propagate)
    assert main(["scenarios", "--json"]) == 0
    assert (list(logger.handlers), logger.level, logger.propagate) == before


def test_error_is_one_line_and_logging_is_removed(capsys):
    assert main(["run", "no-such-scenario", "--stub", "-v"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("poso-sim: error: no-such-scenario: no such scenario") and err.count("\n") == 1
    assert not logging.getLogger("poso_sim").handlers


# ---------------------------------------------------------------------------------------------- the handler
class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _record(name: str, level: int, msg: str, p: dict | None = None) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, (), None)
    if p is not None:
        rec.poso_progress = p
    return rec


def _solver_progress(stage: str, it: int, obj: float, final: bool) -> dict:
    p = {"task": "solve", "case": "manchester", "variant": "true", "stage": stage, "iterations": it,
         "objective": obj, "violation": 2.5e-9, "final": final}
    if not final:
        p["iteration"] = it
    return p


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    h = progress.ProgressHandler(0, out, live=False, clock=Clock())
    h.handle(_record("poso_sim.solvers.pipeline", logging.DEBUG, "it", _solver_progress("fixed-flows", 25, 900.5, False)))
    h.handle(_record("poso_sim.solvers.pipeline", logging.INFO, "done", _solver_progress("fixed-flows", 212, 815.72, True)))
    h.handle(_record("poso_sim.solvers.cache", logging.INFO, "cache hit manchester/true"))
    h.handle(_record("poso_sim.solvers.cache", logging.WARNING, "cache entry unreadable"))
    assert out.getvalue().splitlines() == [
        "solve manchester/true: fixed-flows done, iterations 212, cost 815.7200, violation 2.5e-09",
        "WARNING poso_sim.solvers.cache: cache entry unreadable",
    ]


def test_cache_records_are_messages_shown_with_v():
    rec = lambda: _record(  # noqa: E731 - the solver's cache record: final, NaN objective, a "cache" key
        "poso_sim.solvers.api", logging.INFO, "manchester true: solution cache hit (cyipopt)",
        {"task": "solve", "case": "manchester", "variant": "true", "stage": "cache-hit", "iterations": 0,
         "objective": float("nan"), "violation": float("nan"), "final": True, "cache": "hit", "backend": "cyipopt"})
    for live in (False, True):
        quiet, verbose = io.StringIO(), io.StringIO()
        progress.ProgressHandler(0, quiet, live=live, clock=Clock()).handle(rec())
        progress.ProgressHandler(1, verbose, live=live, clock=Clock()).handle(rec())
        assert quiet.getvalue() == ""
        assert verbose.getvalue() == "INFO poso_sim.solvers.api: manchester true: solution cache hit (cyipopt)\n"


def test_verbosity_levels_for_plain_and_progress_records():
    lines = {}
    for v in (0, 1, 2):
        out = io.StringIO()
        h = progress.ProgressHandler(v, out, live=False, clock=Clock())
        h.handle(_record("poso_sim.solvers.pipeline", logging.DEBUG, "it", _solver_progress("final", 7, 744.0, False)))
        h.handle(_record("poso_sim.solvers.cache", logging.INFO, "cache miss manchester/true"))
        h.handle(_record("poso_sim.kkt", logging.DEBUG, "residuals computed"))
        lines[v] = out.getvalue().splitlines()
    assert lines[0] == []
    assert lines[1] == ["INFO poso_sim.solvers.cache: cache miss manchester/true"]
    assert lines[2] == [
        "solve manchester/true: final, it 7, cost 744.0000, violation 2.5e-09",
        "INFO poso_sim.solvers.cache: cache miss manchester/true",
        "DEBUG poso_sim.kkt: residuals computed",
    ]


def test_without_a_terminal_a_long_stage_prints_a_line_every_two_seconds():
    out = io.StringIO()
    clock = Clock()
    h = progress.ProgressHandler(0, out, live=False, clock=clock)
    for it in range(0, 60):  # one iteration record every 0.25 s for 15 s
        clock.t += 0.25
        h.handle(_record("poso_sim.solvers.pipeline", logging.DEBUG, "it", _solver_progress("final", it, 744.0, False)))
    lines = out.getvalue().splitlines()
    assert [int(ln.split(", it ")[1].split(",")[0]) for ln in lines] == [7, 15, 23, 31, 39, 47, 55]
    assert all(ln.startswith("solve manchester/true: final, it ") for ln in lines)


def test_live_line_on_a_terminal_is_throttled_and_erased():
    out = io.StringIO()
    clock = Clock()
    h = progress.ProgressHandler(0, out, live=True, clock=clock, min_interval=0.1)
    for i, dt in enumerate((0.0, 0.01, 0.02, 0.5)):
        clock.t += dt
        h.handle(_record("poso_sim.solvers.pipeline", logging.DEBUG, "it", _solver_progress("proximal-1", 10 * i, 800 + i, False)))
    text = out.getvalue()
    draws = text.split("\r\x1b[2K")[1:]
    assert len(draws) == 2  # the two records 10 ms and 20 ms after the first are not drawn
    assert "solve manchester/true: proximal-1, it 0, cost 800.0000" in draws[0]
    assert "it 30, cost 803.0000" in draws[1] and draws[1].endswith("[1 s]")
    assert "\n" not in text
    # a plain warning goes on its own line, and the live line is redrawn after it
    h.handle(_record("poso_sim.solvers.cache", logging.WARNING, "slow disk"))
    tail = out.getvalue()[len(text):]
    assert tail.startswith("\r\x1b[2KWARNING poso_sim.solvers.cache: slow disk\n")
    assert tail.endswith(draws[1])
    h.close()
    assert out.getvalue().endswith("\r\x1b[2K")


def test_live_line_keeps_ticking_during_a_slow_iteration():
    out = io.StringIO()
    clock = Clock()
    h = progress.ProgressHandler(0, out, live=True, clock=clock, min_interval=0.1)
    try:
        h.handle(_record("poso_sim.solvers.pipeline", logging.DEBUG, "it", _solver_progress("final", 5, 744.5, False)))
        assert h._ticker is not None and h._ticker.daemon
        before = out.getvalue()
        clock.t += 0.1
        h.tick()  # too soon after the last draw
        assert out.getvalue() == before
        clock.t += 7.0
        h.tick()  # no record for 7 s: the line is redrawn with the elapsed time
        assert out.getvalue().endswith("final, it 5, cost 744.5000, violation 2.5e-09  [7 s]")
        h.handle(_record("poso_sim.solvers.pipeline", logging.INFO, "done", _solver_progress("final", 9, 744.0, True)))
        drawn = out.getvalue()
        clock.t += 5.0
        h.tick()  # the stage ended: nothing runs, nothing is redrawn
        assert out.getvalue() == drawn
    finally:
        h.close()
    assert h._ticker is None and out.getvalue().endswith("\r\x1b[2K")


def test_idle_indicator_after_two_silent_seconds():
    out = io.StringIO()
    clock = Clock()
    h = progress.ProgressHandler(0, out, live=True, clock=clock, idle_label="poso-sim run")
    h.tick()
    clock.t += 1.5
    h.tick()
    assert out.getvalue() == ""  # not yet two seconds
    clock.t += 1.0
    h.tick()
    assert out.getvalue().endswith("poso-sim run: working  [2 s]")
    clock.t += 3.0
    h.tick()
    assert out.getvalue().endswith("poso-sim run: working  [6 s]")
    # the command writes: the line is erased, and it is not idle any more
    stdout = io.StringIO()
    proxy = progress._ClearingStream(stdout, h)
    proxy.write("result\n")
    assert stdout.getvalue() == "result\n" and out.getvalue().endswith("\r\x1b[2K")
    n = len(out.getvalue())
    clock.t += 1.0
    h.tick()
    assert len(out.getvalue()) == n
    clock.t += 1.5
    h.tick()
    assert out.getvalue().endswith("poso-sim run: working  [8 s]")
    # a progress record replaces the idle line; while its stage runs the idle line does not come back
    h.handle(_record("poso_sim.solvers.pipeline", logging.DEBUG, "it", _solver_progress("final", 1, 750.0, False)))
    clock.t += 5.0
    h.tick()
    assert "working" not in out.getvalue().rsplit("\r\x1b[2K", 1)[1]
    h.close()


def test_configure_wraps_the_terminal_streams_only(monkeypatch):
    class TTY(io.StringIO):
        def isatty(self):
            return True

    err, out = TTY(), TTY()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    h = progress.configure(0, label="poso-sim solve")
    try:
        assert h.live and h.stream is err and h._ticker is not None
        assert isinstance(sys.stdout, progress._ClearingStream) and isinstance(sys.stderr, progress._ClearingStream)
        print("hello")
    finally:
        progress.unconfigure()
    assert sys.stdout is out and sys.stderr is err and out.getvalue() == "hello\n"
    h2 = progress.configure(0, io.StringIO(), live=False, label="poso-sim solve")
    try:
        assert h2._ticker is None and sys.stdout is out
    finally:
        progress.unconfigure()


def test_live_stage_end_is_drawn_at_once_and_kept_with_v():
    out = io.StringIO()
    clock = Clock()
    h = progress.ProgressHandler(1, out, live=True, clock=clock)
    h.handle(_record("poso_sim.solvers.pipeline", logging.DEBUG, "it", _solver_progress("polish", 3, 744.0, False)))
    h.handle(_record("poso_sim.solvers.pipeline", logging.INFO, "done", _solver_progress("polish", 9, 743.99, True)))
    assert "polish done, iterations 9, cost 743.9900, violation 2.5e-09\n" in out.getvalue()
    assert out.getvalue().rsplit("\r\x1b[2K", 1)[1][2:].startswith("solve manchester/true: polish done")


def test_records_without_every_key_are_shown():
    out = io.StringIO()
    h = progress.ProgressHandler(0, out, live=False, clock=Clock())
    h.handle(_record("poso_sim.scenarios.runner", logging.INFO, "plans ready", {"task": "plans"}))
    h.handle(_record("poso_sim.solvers", logging.INFO, "x", {"objective": float("nan"), "stage": "s", "final": True}))
    assert out.getvalue().splitlines() == ["plans: plans ready", "work: s done"]


def test_pyomo_debug_is_not_shown_at_vv(capsys):
    out = io.StringIO()
    progress.configure(2, out, live=False)
    try:
        logging.getLogger("pyomo.core").debug("pyomo internals")
        logging.getLogger("poso_sim.solvers.api").debug("own debug")
    finally:
        progress.unconfigure()
    assert out.getvalue() == "DEBUG poso_sim.solvers.api: own debug\n"
    assert "pyomo internals" not in capsys.readouterr().err


def test_other_libraries_warnings_share_the_stream():
    out = io.StringIO()
    progress.configure(0, out, live=False)
    try:
        logging.getLogger("pyomo.core").warning("a pyomo warning")
        logging.getLogger("pyomo.core").info("pyomo info")
    finally:
        progress.unconfigure()
    assert out.getvalue() == "WARNING pyomo.core: a pyomo warning\n"
    assert progress.ProgressHandler not in {type(h) for h in logging.getLogger().handlers}


def test_solve_callback_turns_iterations_into_records():
    clock = Clock()
    out = io.StringIO()
    progress.configure(2, out, live=False)
    try:
        cb = progress.solve_progress_callback("manchester", "tampered", min_interval=0.5, clock=clock)
        for it in range(4):
            clock.t += 0.2
            cb("fixed-flows", {"iter": it, "objective": 950.0 - it, "inf_pr": 1e-3, "inf_du": 1.0})
        cb("final", {"iter": 0, "objective": 904.1, "inf_pr": 1e-9, "inf_du": 1e-9})
        cb.finish()
    finally:
        progress.unconfigure()
    assert out.getvalue().splitlines() == [
        "solve manchester/tampered: fixed-flows, it 0, cost 950.0000, violation 1.0e-03",
        "solve manchester/tampered: fixed-flows, it 3, cost 947.0000, violation 1.0e-03",
        "solve manchester/tampered: fixed-flows done, iterations 3, cost 947.0000, violation 1.0e-03",
        "solve manchester/tampered: final done, iterations 0, cost 904.1000, violation 1.0e-09",
    ]


def test_solver_records_supersede_the_callback():
    out = io.StringIO()
    progress.configure(0, out, live=False)
    try:
        cb = progress.solve_progress_callback("manchester", "true")
        logging.getLogger("poso_sim.solvers.pipeline").info(
            "stage done", extra={"poso_progress": _solver_progress("fixed-flows", 212, 815.72, True)})
        cb("fixed-flows", {"iter": 1, "objective": 1.0, "inf_pr": 1.0})
        cb.finish()
    finally:
        progress.unconfigure()
    assert out.getvalue().splitlines() == [
        "solve manchester/true: fixed-flows done, iterations 212, cost 815.7200, violation 2.5e-09"]


def test_json_stdout_stays_clean_with_progress_records(tmp_path):
    """A command that logs progress (here: synthetic solver records around `scenarios --json`) keeps stdout JSON."""
    code = (
        "import logging, sys\n"
        "import poso_sim.report.runs_cli as c\n"
        "real = c.cmd_scenarios\n"
        "def noisy(args):\n"
        "    log = logging.getLogger('poso_sim.solvers.pipeline')\n"
        "    p = dict(task='solve', case='manchester', variant='true', stage='final', iterations=5, objective=1.0,"
        " violation=0.0, final=True)\n"
        "    log.info('done', extra={'poso_progress': p})\n"
        "    log.info('cache miss')\n"
        "    return real(args)\n"
        "c.cmd_scenarios = noisy\n"
        "from poso_sim.cli import main\n"
        "sys.exit(main(['scenarios', '--json', '-v']))\n"
    )
    r = _py(code)
    assert r.returncode == 0, r.stderr
    assert "scenario-1" in json.loads(r.stdout)
    assert r.stderr.splitlines() == [
        "solve manchester/true: final done, iterations 5, cost 1.0000, violation 0.0e+00",
        "INFO poso_sim.solvers.pipeline: cache miss",
    ]


# ------------------------------------------------------------------------------------------------ sweep --list
def test_sweep_list_prints_whole_descriptions(capsys):
    import yaml
    from importlib import resources

    assert main(["sweep", "--list"]) == 0
    out = capsys.readouterr().out
    data = resources.files("poso_sim.sweep") / "data"
    blocks = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            name, _, rest = line.partition("  ")
            blocks[name] = [rest.strip()]
        else:
            blocks[name].append(line.strip())
    for entry in data.iterdir():
        if entry.name.endswith(".yaml"):
            desc = " ".join(str(yaml.safe_load(entry.read_text())["description"]).split())
            assert " ".join(blocks[entry.name[:-5]]) == desc
    assert " ".join(blocks["campaign"]).endswith("stub payloads.")


def test_sweep_list_wraps_under_the_name_column():
    from poso_sim.sweep.cli import format_sweep_list

    text = format_sweep_list({"a": "word " * 30 + "loss 0 or 5 %, end.", "long-name": "short"}, width=50)
    lines = text.splitlines()
    assert all(len(ln) <= 50 for ln in lines)
    assert lines[0].startswith("a          word") and all(ln.startswith(" " * 11) for ln in lines[1:-1])
    assert "5 %" in text and lines[-1] == "long-name  short"


# --------------------------------------------------------------------------------------- through a real process
def test_flags_after_the_subcommand_in_a_process():
    r = _py("", "-m", "poso_sim", "run", "scenario-1", "--stub", "--quiet", "-vv")
    assert r.returncode == 0, r.stderr
    assert "executed D's optimal (744.09 $)" in r.stdout


def test_scenario_error_in_a_process_is_one_line_with_file_and_line(tmp_path):
    bad = tmp_path / "dup.yaml"
    bad.write_text("delegates: [C, D, E]\nbehaviours:\n  C:\n    silence: true\n  C:\n    follower_error: others\n")
    r = _py("", "-m", "poso_sim", "-v", "run", str(bad), "--stub")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"poso-sim: error: {bad}, line 5: behaviours.C: duplicate key 'C' (first at line 3; a key may " \
                       "appear once)\n"
