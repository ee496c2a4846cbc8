"""Run the example notebooks (jupytext percent scripts) as scripts or as real notebooks.

    python examples/run_examples.py                 # each example as a plain script (real, cached solves)
    python examples/run_examples.py --stub          # stub payloads, no solver: a quick check
    python examples/run_examples.py --notebook      # through jupytext + nbclient (an IPython kernel)
    python examples/run_examples.py --notebook --out-dir build/notebooks   # keep the executed .ipynb files
    python examples/run_examples.py 02              # only the examples whose name contains "02"

Exit status 0 when every example ran, 1 otherwise. --notebook needs `pip install jupytext nbclient ipykernel`.
Either way an example gets the caller's environment (POSO_SIM_CACHE_DIR, OMP_NUM_THREADS and other thread limits,
PYTHONPATH; relative paths made absolute) and, as a notebook, a kernel running this same interpreter.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def examples(patterns: list[str] | None = None) -> list[Path]:
    """The example scripts, in order (``NN_name.py``), optionally those matching any of ``patterns``."""
    found = sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))
    if patterns:
        found = [p for p in found if any(pat in p.name for pat in patterns)]
    return found


#: variables that hold paths: made absolute, since the examples run in examples/ and not in the caller's directory
PATH_VARS = ("POSO_SIM_CACHE_DIR", "XDG_CACHE_HOME", "MPLCONFIGDIR")
PATH_LIST_VARS = ("PYTHONPATH",)


def _env(stub: bool, notebook: bool = False, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an example: the caller's (cache location, thread limits such as OMP_NUM_THREADS,
    PYTHONPATH ...) with relative paths made absolute, the stub switch, and Agg for scripts."""
    env = dict(os.environ if base is None else base, MPLBACKEND="Agg")
    if notebook:  # a kernel draws inline (PNG outputs); Agg would leave figures as text
        del env["MPLBACKEND"]
    for var in PATH_VARS:
        if env.get(var):
            env[var] = os.path.abspath(os.path.expanduser(env[var]))
    for var in PATH_LIST_VARS:
        if env.get(var):
            env[var] = os.pathsep.join(os.path.abspath(p) if p else p for p in env[var].split(os.pathsep))
    if stub:
        env["POSO_SIM_EXAMPLES_STUB"] = "1"
    else:
        env.pop("POSO_SIM_EXAMPLES_STUB", None)
    return env


def _kernel_manager(kernel_dir: Path):
    """A kernel manager whose kernel is this interpreter (not whatever `python3` kernel spec is found first)."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    write_kernel_spec(str(kernel_dir / "poso-sim-examples"))  # argv: sys.executable -m ipykernel_launcher ...
    return KernelManager(kernel_name="poso-sim-examples",
                         kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False))


def run_script(path: Path, *, stub: bool = False, timeout: float = 1200) -> None:
    """Run one example with this interpreter in a fresh process; raise on failure."""
    subprocess.run([sys.executable, str(path)], env=_env(stub), check=True, timeout=timeout, cwd=HERE)


def run_notebook(path: Path, *, stub: bool = False, timeout: float = 1200, out_dir: Path | None = None):
    """Convert one example to a notebook and execute it in a kernel; returns the executed notebook."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    env = _env(stub, notebook=True)
    with tempfile.TemporaryDirectory(prefix="poso-sim-kernel-") as kernel_dir:
        km = _kernel_manager(Path(kernel_dir))
        client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
        client.execute(env=env)  # passed to the kernel's launch explicitly
    if out_dir is not None:
        import nbformat

        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / (path.stem + ".ipynb"))
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("patterns", nargs="*", help="only examples whose file name contains one of these")
    ap.add_argument("--stub", action="store_true", help="stub payloads, no solver (POSO_SIM_EXAMPLES_STUB=1)")
    ap.add_argument("--notebook", action="store_true", help="execute as notebooks (jupytext + nbclient)")
    ap.add_argument("--out-dir", type=Path, help="with --notebook: write the executed notebooks here")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per example (default 1200)")
    args = ap.parse_args(argv)
    paths = examples(args.patterns)
    if not paths:
        print("no example matches", file=sys.stderr)
        return 1
    failed = []
    for path in paths:
        t0 = time.perf_counter()
        try:
            if args.notebook:
                run_notebook(path, stub=args.stub, timeout=args.timeout, out_dir=args.out_dir)
            else:
                run_script(path, stub=args.stub, timeout=args.timeout)
            print(f"ok      {path.name}  {time.perf_counter() - t0:6.1f} s", flush=True)
        except Exception as exc:  # report every example, then fail
            failed.append(path.name)
            print(f"FAILED  {path.name}  {type(exc).__name__}: {str(exc)[-2000:]}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
