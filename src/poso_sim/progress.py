"""Logging and progress for the ``poso-sim`` command (the face layer's consumer of poso_sim's log records).

Library code only *emits* standard :mod:`logging` records on loggers under ``poso_sim`` (for example
``poso_sim.solvers.pipeline``). A record that reports progress of a long task carries a mapping in
``extra={"poso_progress": {...}}`` with the keys

    task        what runs, e.g. "solve"
    case        the case name (a case file: shown by name and instance id, see :func:`short_case`)
    variant     the objective variant ("true", "tampered", ...)
    stage       the stage name;           iteration the current iteration (per-iteration records only)
    iterations  iterations so far;        objective the current objective value
    violation   the constraint violation; final     True when the stage (or the task) has ended

(every key optional). INFO records mark stage ends, DEBUG records single iterations (throttled by the emitter).
A record whose mapping has a ``cache`` key (a solution-cache hit or miss) is an ordinary message: shown with -v.

:func:`configure` installs one handler on the ``poso_sim`` logger:

* on a terminal, progress records drive a live one-line display on stderr (stage, iterations, cost, elapsed
  time), redrawn at most ten times a second (and every half second while a stage runs, so a slow iteration
  still shows the time going on) and erased before any other line is written; when nothing at all has been
  written for two seconds (loading, a step that reports nothing), the line says ``poso-sim run: working [N s]``;
* otherwise, progress records at INFO (stage ends) become plain lines on stderr; of the per-iteration DEBUG
  records one is printed when ``heartbeat`` seconds (2) have passed without a progress line, every one with
  ``-vv`` -- so a long solve is never silent for more than about two seconds;
* other records of poso_sim's loggers are shown from WARNING (default), INFO (``-v``) or DEBUG (``-vv``);
  other libraries' records (Pyomo, CasADi) from WARNING whatever the verbosity, on the same stream.

Nothing is ever written to stdout, so ``--json`` output stays clean.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import sys
import threading
import time
from pathlib import PurePath
from typing import Any, Callable, Mapping, TextIO

__all__ = ["ProgressHandler", "configure", "unconfigure", "format_progress", "solve_progress_callback", "PROGRESS_KEY",
           "short_case"]

PROGRESS_KEY = "poso_progress"
_SPIN = "|/-\\"


def _num(v: Any, fmt: str) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return None
    return format(v, fmt)


_INSTANCE = re.compile(r"^(?P<name>.+?)(?:-s\d+-d\d+)?-(?:instance-)?(?P<id>[0-9a-f]{8})[0-9a-f]{8,}$")


def short_case(case: Any) -> str:
    """A case as a progress label shows it: a case file (a generated day in the cache, an instance file) by its
    case name and an 8-character instance id (``manchester 1a2b3c4d``), not its path; at most 40 characters."""
    text = str(case)
    if "/" in text or "\\" in text or text.endswith(".json"):
        text = PurePath(text.replace("\\", "/")).stem
    m = _INSTANCE.match(text)
    if m:
        text = f"{m['name']} {m['id']}"
    return text if len(text) <= 40 else text[:39] + "~"


def _task_name(p: Mapping[str, Any]) -> str:
    task = str(p.get("task") or "work")
    what = "/".join(short_case(p[k]) if k == "case" else str(p[k])
                    for k in ("case", "variant") if p.get(k) not in (None, ""))
    return f"{task} {what}" if what else task


def format_progress(p: Mapping[str, Any], *, message: str = "", width: int | None = None) -> str:
    """One human line for a progress mapping, e.g.
    ``solve manchester/true: fixed-flows done, 212 it, cost 815.7200, violation 3.1e-09``.

    ``width``: at most that many characters, keeping the stage, the iterations and the cost (the violation goes
    first, then the label is shortened)."""
    parts = []
    stage = p.get("stage")
    if stage:
        parts.append(f"{stage} done" if p.get("final") else str(stage))
    it = p.get("iteration", p.get("iterations"))
    if _num(it, "d") is not None:
        parts.append(f"{'it' if 'iteration' in p else 'iterations'} {int(it)}")
    obj = _num(p.get("objective"), ".4f")
    if obj is not None:
        parts.append(f"cost {obj}")
    vio = _num(p.get("violation"), ".1e")
    if vio is not None:
        parts.append(f"violation {vio}")
    name = _task_name(p)
    line = name + (": " + ", ".join(parts) if parts else "")
    if message and not parts:
        line += f": {message}"
    if width is None or len(line) <= width:
        return line
    parts = [x.replace("iterations ", "it ") for x in parts if not x.startswith("violation")]
    tail = ": " + ", ".join(parts) if parts else ""
    room = width - len(tail)
    if len(name) > room:
        name = name[: max(room - 1, 8)] + "~"
    return (name + tail)[:width]


def _own(name: str) -> bool:
    return name == "poso_sim" or name.startswith("poso_sim.")


class ProgressHandler(logging.Handler):
    """See the module docstring. ``live``: draw a one-line display (default: whether ``stream`` is a TTY)."""

    def __init__(self, verbosity: int = 0, stream: TextIO | None = None, *, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, min_interval: float = 0.1,
                 heartbeat: float = 2.0, idle_label: str | None = None, idle_after: float = 2.0) -> None:
        super().__init__(logging.DEBUG)
        self.verbosity = max(0, int(verbosity))
        self.stream = stream if stream is not None else sys.stderr
        if live is None:
            isatty = getattr(self.stream, "isatty", None)
            live = bool(isatty and isatty())
        self.live = live
        self.clock = clock
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self._last_line = clock()  # when the last plain progress line was written
        self.threshold = (logging.WARNING, logging.INFO, logging.DEBUG)[min(self.verbosity, 2)]
        self._shown = ""          # text of the live line currently on screen ("" = none)
        self._last_draw = -math.inf
        self._starts: dict[str, float] = {}  # task name -> when its first record came
        self._spin = 0
        self._solver_seen = False  # records from poso_sim.solvers supersede the CLI's own callback records
        self._current: Mapping[str, Any] | None = None  # the running stage's last progress (live mode)
        self.idle_label = idle_label  # live mode: "<label>: working [N s]" after idle_after s without output
        self.idle_after = idle_after
        self._t0 = clock()
        self._last_activity = self._t0
        self._idle_shown = False
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    # -------------------------------------------------------------------------------- writing
    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # closed pipe or stream: progress is not worth a traceback
            pass

    def clear(self) -> None:
        """Erase the live line (if one is shown)."""
        if self._shown:
            self._write("\r\x1b[2K")
            self._shown = ""
        self._idle_shown = False

    def note_activity(self) -> None:
        """Something else was written (the command's output): the command is not idle."""
        self._last_activity = self.clock()

    def _println(self, line: str) -> None:
        shown, idle = self._shown, self._idle_shown
        self.clear()
        self._write(line + "\n")
        self.note_activity()
        if shown and self.live:
            self._write(shown)
            self._shown, self._idle_shown = shown, idle

    def _fit(self, text: str) -> str:
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        return text if len(text) <= width else text[: width - 1] + "~"

    def _draw_idle(self, now: float) -> None:
        self._spin = (self._spin + 1) % len(_SPIN)
        text = self._fit(f"{_SPIN[self._spin]} {self.idle_label}: working  [{now - self._t0:.0f} s]")
        self._write("\r\x1b[2K" + text)
        self._shown = text
        self._idle_shown = True
        self._last_draw = now

    def _draw(self, p: Mapping[str, Any], force: bool) -> None:
        now = self.clock()
        name = _task_name(p)
        start = self._starts.setdefault(name, now)
        if not force and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        self._spin = (self._spin + 1) % len(_SPIN)
        elapsed = f"  [{now - start:.0f} s]"
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1) - 2 - len(elapsed)
        text = self._fit(f"{_SPIN[self._spin]} {format_progress(p, width=width)}{elapsed}")
        self._write("\r\x1b[2K" + text)
        self._shown = text
        self._idle_shown = False

    # -------------------------------------------------------------------------------- logging.Handler
    def emit(self, record: logging.LogRecord) -> None:
        try:
            p = getattr(record, PROGRESS_KEY, None)
            if isinstance(p, Mapping) and p.get("cache") is None:
                self._progress(record, p)
            elif record.levelno >= (self.threshold if _own(record.name) else logging.WARNING):
                self._println(f"{record.levelname} {record.name}: {record.getMessage()}")
        except Exception:  # never let a display problem break a solve
            self.handleError(record)

    def tick(self) -> None:
        """Live mode, called twice a second by a daemon thread: redraw the line of a running stage (spinner,
        elapsed time) when no record has come for a while, so an iteration that takes seconds still shows that
        work goes on; and with an ``idle_label``, when neither a stage runs nor anything was written for
        ``idle_after`` seconds, show ``<label>: working [N s]`` until something is."""
        with self.lock:
            if not self.live:
                return
            now = self.clock()
            if self._current is not None and self._shown:
                if now - self._last_draw >= 2 * self.min_interval:
                    self._draw(self._current, force=True)
            elif self.idle_label and (self._idle_shown or not self._shown) \
                    and now - self._last_activity >= self.idle_after:
                self._draw_idle(now)

    def start_ticker(self) -> None:
        """Start the redrawing thread (live mode only; once)."""
        if self._ticker is not None or not self.live:
            return

        def run() -> None:
            while not self._stop.wait(0.5):
                self.tick()

        self._ticker = threading.Thread(target=run, name="poso-sim-progress", daemon=True)
        self._ticker.start()

    def _progress(self, record: logging.LogRecord, p: Mapping[str, Any]) -> None:
        if record.name.startswith("poso_sim.solvers"):
            self._solver_seen = True
        elif self._solver_seen and getattr(record, "poso_fallback", False):
            return  # the solver reports this itself
        final = bool(p.get("final"))
        if self.live:
            if final and p.get("stage") is None:  # the whole task ended: drop the line
                self._starts.pop(_task_name(p), None)
                self.clear()
                if self.verbosity >= 1:
                    self._println(format_progress(p, message=record.getMessage()))
                return
            if final and self.verbosity >= 1:  # stage ends stay on screen with -v
                self._println(format_progress(p, message=record.getMessage()))
            self._draw(p, force=final)
            self._current = None if final else p
            self.start_ticker()
            return
        now = self.clock()
        if record.levelno >= logging.INFO or self.verbosity >= 2 or now - self._last_line >= self.heartbeat:
            self._last_line = now
            self._println(format_progress(p, message=record.getMessage()))

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        with self.lock:
            self._current = None
            self.clear()
        super().close()


class _ClearingStream:
    """sys.stdout / sys.stderr while a live line is on the terminal: erase the line before any other output
    (and count it as activity: the command is not idle)."""

    def __init__(self, inner: TextIO, handler: ProgressHandler) -> None:
        self._inner = inner
        self._handler = handler

    def write(self, text: str) -> int:
        with self._handler.lock:
            self._handler.clear()
            self._handler.note_activity()
            return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_installed: list[tuple[logging.Logger, ProgressHandler, int, bool, Any, Any]] = []


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def configure(verbosity: int = 0, stream: TextIO | None = None, *, live: bool | None = None,
              label: str | None = None) -> ProgressHandler:
    """Install the handler on the ``poso_sim`` logger (replacing one installed before) and return it.

    On a terminal (``live``), ``label`` (e.g. ``"poso-sim run"``) turns on the idle indicator: after two seconds
    without any output a line ``<label>: working [N s]`` is shown until something is written; writes through
    ``sys.stdout`` and ``sys.stderr`` erase the live line first."""
    unconfigure()
    logger = logging.getLogger("poso_sim")
    handler = ProgressHandler(verbosity, stream, live=live, idle_label=label)
    old_stdout = old_stderr = None
    if handler.live and handler.stream is sys.stderr:
        old_stderr = sys.stderr
        sys.stderr = _ClearingStream(sys.stderr, handler)  # type: ignore[assignment]
        if _isatty(sys.stdout):
            old_stdout = sys.stdout
            sys.stdout = _ClearingStream(sys.stdout, handler)  # type: ignore[assignment]
    _installed.append((logger, handler, logger.level, logger.propagate, old_stdout, old_stderr))
    logger.addHandler(handler)
    logging.getLogger().addHandler(handler)  # other libraries' warnings: same stream, the live line erased first
    logger.setLevel(logging.DEBUG)  # the handler filters; progress records must reach it at any verbosity
    logger.propagate = False
    if label:
        handler.start_ticker()
    return handler


def unconfigure() -> None:
    """Remove the handler installed by :func:`configure` (erasing its live line) and restore the logger."""
    while _installed:
        logger, handler, level, propagate, old_stdout, old_stderr = _installed.pop()
        if old_stdout is not None and isinstance(sys.stdout, _ClearingStream):
            sys.stdout = old_stdout
        if old_stderr is not None and isinstance(sys.stderr, _ClearingStream):
            sys.stderr = old_stderr
        logger.removeHandler(handler)
        logging.getLogger().removeHandler(handler)
        handler.close()
        logger.setLevel(level)
        logger.propagate = propagate


def solve_progress_callback(case: str, variant: str, *, min_interval: float = 0.5,
                            clock: Callable[[], float] = time.monotonic) -> Callable[[str, dict], None]:
    """A ``progress=`` callback for :func:`poso_sim.solvers.api.solve_case` that turns the pipeline's
    per-iteration calls into progress records on the ``poso_sim.cli`` logger: a DEBUG record at most every
    ``min_interval`` seconds and an INFO record when a stage ends (seen when the next one starts). Records
    the solvers emit themselves take precedence over these (the handler drops these once it has seen one)."""
    log = logging.getLogger("poso_sim.cli")
    state: dict[str, Any] = {"stage": None, "info": None, "last": -math.inf}

    def payload(stage: str, info: Mapping[str, Any], final: bool) -> dict[str, Any]:
        it = int(info.get("iter", 0))
        p = {"task": "solve", "case": case, "variant": variant, "stage": stage, "iterations": it,
             "objective": info.get("objective"), "violation": info.get("inf_pr"), "final": final}
        if not final:
            p["iteration"] = it
        return p

    def callback(stage: str, info: dict) -> None:
        if state["stage"] is not None and stage != state["stage"]:
            log.info("stage %s done", state["stage"],
                     extra={PROGRESS_KEY: payload(state["stage"], state["info"], True), "poso_fallback": True})
        state["stage"], state["info"] = stage, dict(info)
        now = clock()
        if now - state["last"] >= min_interval:
            state["last"] = now
            log.debug("iteration %s", info.get("iter"),
                      extra={PROGRESS_KEY: payload(stage, info, False), "poso_fallback": True})

    def finish() -> None:
        if state["stage"] is not None:
            log.info("stage %s done", state["stage"],
                     extra={PROGRESS_KEY: payload(state["stage"], state["info"], True), "poso_fallback": True})
            state["stage"] = None

    callback.finish = finish  # type: ignore[attr-defined]
    return callback
