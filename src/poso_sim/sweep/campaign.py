"""Running a sweep on an executor, collecting the table, the checker's summary and the replay commands."""

from __future__ import annotations

import array
import json
import math
import os
import sys
import time
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from poso_sim.scenarios.payloads import OPTIMAL_DISPATCH
from poso_sim.errors import PosoError

from .checker import PROPERTIES, SAFETY
from .spec import BEHAVIOUR_KINDS, SweepSpec, resolve_sweep
from .worker import MUTATIONS, CaseOutcome, PayloadDescriptor, run_batch

if TYPE_CHECKING:  # pandas (0.4 s to import) only for the tables a caller asks for, and for CSV files
    import pandas as pd

__all__ = ["SweepResult", "run_sweep", "replay_command", "summary_table", "coverage_table", "save_table"]


#: the columns of the violations table (one row per violation)
VIOLATION_COLUMNS = ["case", "seed", "property", "height", "node", "detail"]


@dataclass
class SweepResult:
    """A finished sweep: one row per case (`rows`, sorted by case index; `table` is them as a pandas DataFrame),
    the violations (`violation_rows`, one per violation; `violations` as a DataFrame), the case files written and
    the timing. The DataFrames are made on first use (pandas is not imported by a sweep that needs none)."""

    spec: SweepSpec
    rows: list[dict[str, Any]]
    violation_rows: list[dict[str, Any]]
    wall_seconds: float
    workers: int
    out_dir: Path | None = None
    case_files: dict[int, Path] = field(default_factory=dict)
    mutation: str | None = None
    _frames: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def table(self) -> pd.DataFrame:
        """The results table, one row per case (a pandas DataFrame)."""
        if "table" not in self._frames:
            import pandas as pd  # 0.4 s: only when a DataFrame is asked for

            self._frames["table"] = pd.DataFrame(self.rows)
        return self._frames["table"]

    @property
    def violations(self) -> pd.DataFrame:
        """The violations, one row per violation (a pandas DataFrame with `VIOLATION_COLUMNS`)."""
        if "violations" not in self._frames:
            import pandas as pd  # 0.4 s: only when a DataFrame is asked for

            self._frames["violations"] = pd.DataFrame(self.violation_rows, columns=VIOLATION_COLUMNS)
        return self._frames["violations"]

    @property
    def n_violations(self) -> int:
        return len(self.violation_rows)

    @property
    def failing_cases(self) -> list[int]:
        return sorted({int(v["case"]) for v in self.violation_rows})

    @property
    def cases_per_second(self) -> float:
        return len(self.rows) / self.wall_seconds if self.wall_seconds > 0 else math.inf

    def summary(self) -> pd.DataFrame:
        return summary_table(self.table, self.violations)

    def summary_records(self) -> list[dict[str, Any]]:
        """`summary()` as plain records (what `--json` prints), made without pandas."""
        return _summary_records([r["liveness_premise"] for r in self.rows],
                                [(v["property"], v["case"]) for v in self.violation_rows])

    def coverage(self) -> pd.DataFrame:
        return coverage_table(self.table)

    def _row_of(self, case: int) -> dict[str, Any]:
        return next(r for r in self.rows if r["case"] == case)

    def replay_commands(self) -> dict[int, str]:
        return {i: replay_command(self.spec, self.case_files.get(i), int(self._row_of(i)["seed"]), index=i,
                                  mutation=self.mutation)
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

    rows = [o.row for o in outcomes]
    vrows = [{"case": o.index, "seed": o.row.get("seed"), **v} for o in outcomes for v in o.violations]
    res = SweepResult(spec, rows, vrows, wall, n_workers, mutation=mutation)
    if out is not None:
        _write_results(res, Path(out), specs, outcomes, write_cases, keep_traces)
    if echo is not None:
        cmds = res.replay_commands()
        for i, cmd in list(cmds.items())[:max_echo]:
            echo(f"case {i} violates {res._row_of(i)['violated']}: replay with\n  {cmd}")
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
                from concurrent.futures import ProcessPoolExecutor  # (its module: only for a pool)

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
    _save_rows(res.rows, None, table_path)
    if res.violation_rows:
        _save_rows(res.violation_rows, VIOLATION_COLUMNS,
                   table_path.with_name(table_path.stem + "-violations" + table_path.suffix))
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


def _save_rows(rows: list[dict[str, Any]], columns: list[str] | None, path: Path) -> Path:
    """`save_table` of the DataFrame of ``rows`` (with ``columns``, else every key in order of appearance): a
    Parquet file is written by pyarrow straight from the rows when every column is of a kind whose pandas
    conversion is known (`_arrow_table`), with the same column types; otherwise, and for CSV, through pandas."""
    if path.suffix.lower() != ".csv" and rows:
        try:
            import pyarrow.parquet as pq  # 0.2 s (with numpy): only to write a Parquet table
        except ImportError as exc:
            raise PosoError(f"{path}: writing Parquet needs pyarrow ({exc}); use a .csv path") from None
        table = _arrow_table(rows, columns)
        if table is not None:
            pq.write_table(table, path)
            return path
    import pandas as pd  # 0.4 s: CSV, and a column of a kind `_arrow_table` leaves to pandas

    return save_table(pd.DataFrame(rows, columns=columns), path)


def _arrow_table(rows: list[dict[str, Any]], columns: list[str] | None) -> Any:
    """The Arrow table pandas would write for ``pd.DataFrame(rows, columns=columns)`` (the same column types and
    nulls, without pandas' own metadata), or None if a column is of another kind (see `_arrow_column`)."""
    import pyarrow as pa  # loaded with pyarrow.parquet by `_save_rows`

    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    arrays = []
    for c in columns:
        try:
            arr = _arrow_column(pa, [r.get(c) for r in rows])
        except (OverflowError, UnicodeError, pa.ArrowException):  # beyond int64, not UTF-8: pandas decides
            arr = None
        if arr is None:
            return None
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, names=columns)


def _bitmap(flags: Iterable[bool]) -> bytes:
    """Arrow's bit-packed booleans (least significant bit first)."""
    flags = list(flags)
    out = bytearray((len(flags) + 7) // 8)
    for i, f in enumerate(flags):
        if f:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def _arrow_column(pa: Any, values: list[Any]) -> Any:
    """One column as pandas converts it: ints -> int64 (with a None: float64), ints and floats -> float64 (None
    and NaN: null), bools (and None) -> bool, strs (and None) -> large_string, only None -> null; else None.
    Built from its buffers, since `pyarrow.array` of Python values imports pandas."""
    if sys.byteorder != "little":  # Arrow's buffers are little-endian
        return None
    n = len(values)
    kinds = {type(v) for v in values}
    kinds.discard(type(None))
    if not kinds:
        return pa.nulls(n)
    if kinds <= {int, float}:
        if kinds == {int} and None not in values:
            return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(array.array("q", values).tobytes())])
        fs = [math.nan if v is None else float(v) for v in values]
        valid = [f == f for f in fs]  # pandas writes NaN (and None) as null
        data = array.array("d", [f if ok else 0.0 for f, ok in zip(fs, valid)])
        buffers = [None if all(valid) else pa.py_buffer(_bitmap(valid)), pa.py_buffer(data.tobytes())]
        return pa.Array.from_buffers(pa.float64(), n, buffers)
    valid = [v is not None for v in values]
    mask = None if all(valid) else pa.py_buffer(_bitmap(valid))
    if kinds == {bool}:
        return pa.Array.from_buffers(pa.bool_(), n, [mask, pa.py_buffer(_bitmap(v is True for v in values))])
    if kinds == {str}:
        data = [v.encode("utf-8") if v is not None else b"" for v in values]
        offsets = array.array("q", [0])
        for d in data:
            offsets.append(offsets[-1] + len(d))
        arr = pa.Array.from_buffers(pa.large_string(), n, [mask, pa.py_buffer(offsets.tobytes()),
                                                           pa.py_buffer(b"".join(data))])
        arr.validate(full=True)  # valid UTF-8
        return arr
    return None


# ------------------------------------------------------------------------------------------------ tables
def _summary_records(premises: Iterable[Any], violations: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """`summary_table` from each case's `liveness_premise` and each violation's (property, case)."""
    premises = list(premises)
    n = len(premises)
    live = sum(1 for x in premises if x > 0)
    count: dict[str, int] = {}
    cases: dict[str, set[Any]] = {}
    for prop, case in violations:
        count[prop] = count.get(prop, 0) + 1
        cases.setdefault(prop, set()).add(case)
    return [{
        "property": p,
        "kind": "safety" if p in SAFETY else "liveness",
        "cases checked": live if p == "liveness" and n else n,
        "violations": count.get(p, 0),
        "cases violating": len(cases.get(p, ())),
    } for p in PROPERTIES]


def summary_table(table: pd.DataFrame, violations: pd.DataFrame) -> pd.DataFrame:
    """One row per property: cases checked, violations, cases violating (liveness: cases where the premises
    held in at least one height)."""
    import pandas as pd  # 0.4 s: for the caller's DataFrame

    premises = table.liveness_premise.tolist() if len(table) else []
    vs = zip(violations.property.tolist(), violations.case.tolist()) if len(violations) else ()
    return pd.DataFrame(_summary_records(premises, vs))


def _text_table(records: list[dict[str, Any]]) -> str:
    """``pd.DataFrame(records).to_string(index=False)`` of a table of ints and strs: each column right-aligned
    to its widest cell or header (an int column's header with a space before it), columns one space apart."""
    columns = list(records[0]) if records else []
    cols = []
    for c in columns:
        values = [r[c] for r in records]
        head = " " + c if all(type(v) is int for v in values) else c
        cells = [str(v) for v in values]
        w = max([len(head)] + [len(x) for x in cells])
        cols.append([head.rjust(w)] + [x.rjust(w) for x in cells])
    return "\n".join(" ".join(col[i] for col in cols) for i in range(len(records) + 1))


def coverage_table(table: pd.DataFrame) -> pd.DataFrame:
    """How often each behaviour kind and each network condition occurred (cases)."""
    import pandas as pd  # 0.4 s: for the caller's DataFrame

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
    rows = res.rows
    lines = [
        f"sweep {res.spec.name}: {len(rows)} cases, {res.n_violations} violations in {len(res.failing_cases)} cases, "
        f"{res.wall_seconds:.1f} s wall on {res.workers} worker(s) ({res.cases_per_second:.1f} cases/s)"
        + (f"  [mutation: {res.mutation}]" if res.mutation else ""),
        "",
        _text_table(res.summary_records()),
    ]
    if rows:
        exec_opt = sum(1 for r in rows if all(x in OPTIMAL_DISPATCH for x in r["executed"].split("|")))
        lines += [
            "",
            f"outcomes: every height executed the optimal plan in {exec_opt} cases; "
            f"liveness premises held in {sum(1 for r in rows if r['liveness_premise'] > 0)} cases; "
            f"messages {sum(int(r['messages']) for r in rows):,}; "
            f"simulated {math.fsum(r['virtual_seconds'] for r in rows):,.0f} s",
        ]
    return "\n".join(lines) + "\n"
