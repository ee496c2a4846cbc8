"""Running a sweep on an executor, collecting the table, the checker's summary and the replay commands."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from poso_sim.scenarios.payloads import OPTIMAL_DISPATCH
from poso_sim.errors import PosoError

from .checker import PROPERTIES, SAFETY
from .spec import BEHAVIOUR_KINDS, SweepSpec, resolve_sweep
from .worker import MUTATIONS, CaseOutcome, PayloadDescriptor, run_batch

__all__ = ["SweepResult", "run_sweep", "replay_command", "summary_table", "coverage_table", "save_table"]


@dataclass
class SweepResult:
    """A finished sweep: one row per case (sorted by case index), the violations (one row each), the case
    files written and the timing."""

    spec: SweepSpec
    table: pd.DataFrame
    violations: pd.DataFrame
    wall_seconds: float
    workers: int
    out_dir: Path | None = None
    case_files: dict[int, Path] = field(default_factory=dict)
    mutation: str | None = None

    @property
    def n_violations(self) -> int:
        return int(len(self.violations))

    @property
    def failing_cases(self) -> list[int]:
        return sorted(set(int(c) for c in self.violations["case"])) if len(self.violations) else []

    @property
    def cases_per_second(self) -> float:
        return len(self.table) / self.wall_seconds if self.wall_seconds > 0 else math.inf

    def summary(self) -> pd.DataFrame:
        return summary_table(self.table, self.violations)

    def coverage(self) -> pd.DataFrame:
        return coverage_table(self.table)

    def replay_commands(self) -> dict[int, str]:
        return {i: replay_command(self.spec, self.case_files.get(i), int(self.table.loc[self.table.case == i, "seed"].iloc[0]),
                                  index=i, mutation=self.mutation)
                for i in self.failing_cases}


def replay_command(spec: SweepSpec, case_file: Path | str | None, seed: int, *, index: int | None = None,
                   mutation: str | None = None) -> str:
    """The command that replays one case: `poso-sim run <case file> --seed N [--stub]` (the case file is the
    generated scenario). Mutated runs replay through the sweep itself (`--case I --mutation M`)."""
    stub = " --stub" if spec.payloads == "stub" else ""
    if mutation:
        src = spec.source if spec.source and not spec.source.startswith("<package>") else spec.name
        return f"poso-sim sweep {src} --case {index} --mutation {mutation}"
    if case_file is None:
        src = spec.source if spec.source and not spec.source.startswith("<package>") else spec.name
        return f"poso-sim sweep {src} --case {index} --write-case case-{index:05d}.yaml && " \
               f"poso-sim run case-{index:05d}.yaml --seed {seed}{stub}"
    return f"poso-sim run {case_file} --seed {seed}{stub}"


def _chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _progress(total: int, enabled: bool | None, desc: str) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="case", file=sys.stderr, dynamic_ncols=True)


def _as_executor(executor: Any) -> Any:
    """A Dask `Client` -> its concurrent.futures executor; anything with `submit` is used as it is."""
    if executor is not None and hasattr(executor, "get_executor") and not isinstance(executor, Executor):
        return executor.get_executor()
    return executor


def run_sweep(
    sweep: SweepSpec | str | os.PathLike[str],
    *,
    executor: Any = None,
    workers: int | None = None,
    out: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    cases: Iterable[int] | None = None,
    progress: bool | None = None,
    chunk: int | None = None,
    mutation: str | None = None,
    payloads: str | None = None,
    cache_dir: str | None = None,
    write_cases: str = "failing",
    keep_traces: bool = False,
    echo: Callable[[str], None] | None = None,
    max_echo: int = 10,
) -> SweepResult:
    """Run a sweep (a SweepSpec, a packaged name or a file) and check every case.

    * `executor`: any `concurrent.futures.Executor` or a Dask `distributed.Client`; default: a process pool of
      `workers` processes (`workers=1`: in this process, no pool). Results do not depend on either.
    * `out`: a directory (results.parquet, summary, cases/ go there) or a `.parquet`/`.csv` file (its directory
      gets `cases/`); None writes nothing.
    * `limit` / `cases`: run only the first `limit` cases / these case indices.
    * `write_cases`: "failing" (default), "all" or "none": which generated scenarios to write as
      `<out>/cases/case-NNNNN.yaml` (the files the replay commands run).
    * `mutation`: a deliberately broken rule (`MUTATIONS`), to show the checker catches it.
    * `payloads`: "stub" or "real" (default: the sweep's); real payloads are solved/loaded and verified once
      here and shared with the workers as a descriptor (`PayloadDescriptor`).
    """
    spec = resolve_sweep(sweep)
    if mutation is not None and mutation not in MUTATIONS:
        raise PosoError(f"unknown mutation {mutation!r} (known: {', '.join(MUTATIONS)})")
    if write_cases not in ("failing", "all", "none"):
        raise PosoError(f"write_cases: expected failing, all or none, got {write_cases!r}")
    kind = payloads or spec.payloads
    t_start = time.perf_counter()
    if cases is not None:
        idx = sorted(set(int(i) for i in cases))
        specs = [spec.case(i) for i in idx]
    else:
        specs = list(spec.iter_cases(limit))
    case_ids = {s.scenario.case for s in specs} or {"manchester"}
    if len(case_ids) > 1:
        raise PosoError(f"a sweep runs one case (problem), got {sorted(case_ids)}")
    mappings = {tuple(sorted(s.scenario.variants.items())) for s in specs} or {()}
    if len(mappings) > 1:
        raise PosoError(f"a sweep runs one mapping of plans to variants, got {sorted(map(dict, mappings), key=str)}")
    desc = PayloadDescriptor.prepare(kind, case_ids.pop(), cache_dir, mappings.pop())
    outcomes, n_workers = _run_cases(spec, specs, desc, mutation, keep_traces, executor, workers, chunk, progress)
    wall = time.perf_counter() - t_start

    table = pd.DataFrame([o.row for o in outcomes])
    vrows = [{"case": o.index, "seed": o.row.get("seed"), **v} for o in outcomes for v in o.violations]
    violations = pd.DataFrame(vrows, columns=["case", "seed", "property", "height", "node", "detail"])
    res = SweepResult(spec, table, violations, wall, n_workers, mutation=mutation)
    if out is not None:
        _write_results(res, Path(out), specs, outcomes, write_cases, keep_traces)
    if echo is not None:
        cmds = res.replay_commands()
        for i, cmd in list(cmds.items())[:max_echo]:
            echo(f"case {i} violates {res.table.loc[res.table.case == i, 'violated'].iloc[0]}: replay with\n  {cmd}")
        if len(cmds) > max_echo:
            echo(f"... and {len(cmds) - max_echo} more failing cases (see the violations table)")
    return res


def _run_cases(spec: SweepSpec, specs: list[Any], desc: Any, mutation: str | None, keep: bool, executor: Any,
               workers: int | None, chunk: int | None, progress: bool | None) -> tuple[list[CaseOutcome], int]:
    """Run the cases in batches, in this process (one worker, no executor) or on the executor; returns the
    outcomes in case order and the number of workers."""
    ex = _as_executor(executor)
    own_pool = None
    if ex is None:
        n_workers = workers if workers is not None else (os.cpu_count() or 1)
        n_workers = max(1, min(n_workers, len(specs) or 1))
    else:
        n_workers = workers or _executor_workers(ex)
    if chunk is None:
        chunk = max(1, min(32, math.ceil(len(specs) / (max(n_workers, 1) * 8))))
    batches = _chunks(specs, chunk)
    bar = None
    outcomes: list[CaseOutcome] = []
    try:
        if ex is None and n_workers == 1:
            bar = _progress(len(specs), progress, spec.name)
            for b in batches:
                outcomes.extend(run_batch(b, desc, mutation, spec.signature_memo, keep))
                if bar is not None:
                    bar.update(len(b))
        else:
            if ex is None:
                own_pool = ex = ProcessPoolExecutor(max_workers=n_workers)
            futs: dict[Future[Any], int] = {
                ex.submit(run_batch, b, desc, mutation, spec.signature_memo, keep): len(b) for b in batches
            }
            # the bar (and its monitor thread) only after the pool has started its processes
            bar = _progress(len(specs), progress, spec.name)
            for fut in as_completed(futs):
                outcomes.extend(fut.result())
                if bar is not None:
                    bar.update(futs[fut])
    finally:
        if bar is not None:
            bar.close()
        if own_pool is not None:
            own_pool.shutdown(cancel_futures=True)
    outcomes.sort(key=lambda o: o.index)
    return outcomes, n_workers


def _write_results(res: SweepResult, out_p: Path, specs: list[Any], outcomes: list[CaseOutcome], write_cases: str,
                   keep_traces: bool) -> None:
    """The results table (and violations), the summary, the chosen case files and traces, under ``out_p``."""
    if out_p.suffix.lower() in (".parquet", ".csv"):
        out_dir, table_path = out_p.parent if str(out_p.parent) else Path("."), out_p
    else:
        out_dir, table_path = out_p, out_p / "results.parquet"
    out_dir.mkdir(parents=True, exist_ok=True)
    res.out_dir = out_dir
    by_index = {s.index: s for s in specs}
    want = [] if write_cases == "none" else (sorted(by_index) if write_cases == "all" else res.failing_cases)
    if want:
        (out_dir / "cases").mkdir(exist_ok=True)
    for i in want:
        path = out_dir / "cases" / f"case-{i:05d}.yaml"
        path.write_text(by_index[i].to_yaml(), encoding="utf-8")
        res.case_files[i] = path
    for o in outcomes:
        if o.trace is not None and (keep_traces or o.violations):
            (out_dir / "cases").mkdir(exist_ok=True)
            (out_dir / "cases" / f"case-{o.index:05d}.trace.json").write_text(json.dumps(o.trace, sort_keys=True))
    save_table(res.table, table_path)
    if len(res.violations):
        save_table(res.violations, table_path.with_name(table_path.stem + "-violations" + table_path.suffix))
    (out_dir / "summary.txt").write_text(format_report(res), encoding="utf-8")


def _executor_workers(ex: Any) -> int:
    n = getattr(ex, "_max_workers", None)
    if isinstance(n, int):
        return n
    client = getattr(ex, "_client", None)
    if client is not None:
        try:
            return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
        except Exception:  # noqa: BLE001 - only a sizing hint
            return 1
    return 1


def save_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Parquet (needs pyarrow) or CSV, by extension."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        df.to_csv(p, index=False)
    else:
        try:
            df.to_parquet(p, index=False)
        except ImportError as exc:
            raise PosoError(f"{p}: writing Parquet needs pyarrow ({exc}); use a .csv path") from None
    return p


# ------------------------------------------------------------------------------------------------ tables
def summary_table(table: pd.DataFrame, violations: pd.DataFrame) -> pd.DataFrame:
    """One row per property: cases checked, violations, cases violating (liveness: cases where the premises
    held in at least one height)."""
    n = len(table)
    rows = []
    for p in PROPERTIES:
        v = violations[violations.property == p] if len(violations) else violations
        checked = int((table.liveness_premise > 0).sum()) if p == "liveness" and n else n
        rows.append({
            "property": p,
            "kind": "safety" if p in SAFETY else "liveness",
            "cases checked": checked,
            "violations": int(len(v)),
            "cases violating": int(v.case.nunique()) if len(v) else 0,
        })
    return pd.DataFrame(rows)


def coverage_table(table: pd.DataFrame) -> pd.DataFrame:
    """How often each behaviour kind and each network condition occurred (cases)."""
    rows = []
    kinds = table.get("kinds", pd.Series(dtype=str)).fillna("")
    for k in BEHAVIOUR_KINDS:
        rows.append({"what": f"behaviour {k}", "cases": int(kinds.str.contains(rf"(?:^|[:+]){k}(?:$|[+;])").sum())})
    if len(table):
        rows += [
            {"what": "signatures off", "cases": int((~table.signatures.astype(bool)).sum())},
            {"what": "first leader dishonest", "cases": int(table.leader_dishonest.astype(bool).sum())},
            {"what": "loss > 0", "cases": int((table.loss > 0).sum())},
            {"what": "duplication > 0", "cases": int((table.duplicate > 0).sum())},
            {"what": "reordering > 0", "cases": int((table.reorder > 0).sum())},
            {"what": "partition", "cases": int((table.partition != "").sum())},
            {"what": "node crash (kernel)", "cases": int((table.crash != "").sum())},
            {"what": "N range", "cases": f"{int(table.N.min())}..{int(table.N.max())}"},
            {"what": "f range", "cases": f"{int(table.f.min())}..{int(table.f.max())}"},
        ]
    return pd.DataFrame(rows)


def format_report(res: SweepResult) -> str:
    t = res.table
    lines = [
        f"sweep {res.spec.name}: {len(t)} cases, {res.n_violations} violations in {len(res.failing_cases)} cases, "
        f"{res.wall_seconds:.1f} s wall on {res.workers} worker(s) ({res.cases_per_second:.1f} cases/s)"
        + (f"  [mutation: {res.mutation}]" if res.mutation else ""),
        "",
        res.summary().to_string(index=False),
    ]
    if len(t):
        exec_opt = (t.executed.str.split("|").apply(lambda xs: all(x in OPTIMAL_DISPATCH for x in xs))).sum()
        lines += [
            "",
            f"outcomes: every height executed the optimal plan in {int(exec_opt)} cases; "
            f"liveness premises held in {int((t.liveness_premise > 0).sum())} cases; "
            f"messages {int(t.messages.sum()):,}; simulated {t.virtual_seconds.sum():,.0f} s",
        ]
    return "\n".join(lines) + "\n"

