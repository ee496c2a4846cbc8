"""poso_sim.sweep on a Dask cluster (optional extra: `pip install poso-sim[dask]`); skipped without it."""

from __future__ import annotations

import pytest

distributed = pytest.importorskip("distributed")

from poso_sim.sweep import parse_sweep, run_sweep  # noqa: E402

SWEEP = """
name: dask-small
cases: 12
seed: 5
parameters:
  delegates: {randint: [4, 7]}
  dishonest: {randint: [0, max]}
  loss: [0.0, 0.05]
  signatures: [true, false]
"""


def test_sweep_on_local_cluster():
    spec = parse_sweep(SWEEP, "<dask>")
    ref = run_sweep(spec, workers=1, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            res = run_sweep(spec, executor=client, progress=False, chunk=3)
    assert res.n_violations == 0
    cols = [c for c in ref.table.columns if c not in ("wall_seconds", "check_seconds")]
    assert res.table[cols].equals(ref.table[cols])
    assert res.workers == 2


def test_sweep_on_local_cluster_catches_broken_rule():
    spec = parse_sweep(SWEEP, "<dask>")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            res = run_sweep(spec, executor=client, progress=False, mutation="accept_unverified")
    assert res.n_violations > 0
