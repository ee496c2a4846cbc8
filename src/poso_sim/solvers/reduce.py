"""A reduced formulation of the IES model for the solver, and the exact maps back to the canonical model.

The reduced model has the same feasible set, expressed with fewer variables and rows:

* variables fixed by a single linear row (``m_load = 20``, hub supply temperature 85, slack voltage, source
  pressure, initial storage, leaf gas flows, ...) become constants and their rows leave;
* on the radial heat network the return flow of a pipe equals its supply flow: ``m_ret`` is replaced by ``m_sup``
  and the return mass balances (implied by the supply ones) leave;
* the pipe outlet temperatures are substituted by their definition
  ``theta = T_out + (tau - T_out) * exp(-a / m)`` into the mixing rows, and the loss rows leave.

A point of the reduced model maps to the canonical vector exactly (:meth:`Reduction.to_canonical`). Its
multipliers map too (:meth:`Reduction.canonical_multipliers`): the multipliers of the rows that left are the
solution of the stationarity equations on the columns those rows touch, a small sparse least-squares problem
that is exactly consistent at a KKT point of the reduced model (documented in docs/solver.md).
"""

from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr import replace_expressions
from scipy.sparse import csr_matrix, hstack
from scipy.sparse.linalg import lsqr

SUBSTITUTED_ROWS = ("HBranchTempLossS", "HBranchTempLossR", "HKCLLoadR", "HKCLCHPR")
MIX_ROWS = ("HNodeMixLoadS", "HNodeMixLoadR", "HNodeMixCHPR")


REDUCTION_FORMAT = "poso-sim/reduction/v1"
_MEMO: dict[str, "Reduction"] = {}


def reduction_key(canonical_nlp, x_ref: np.ndarray) -> str:
    """Key of a reduction: the canonical problem's fingerprint, the reference point, this module's source and
    CasADi's version (the stored functions are CasADi's serialisation)."""
    import hashlib
    from pathlib import Path

    import casadi

    h = hashlib.sha256(REDUCTION_FORMAT.encode() + b"\n")
    h.update(canonical_nlp.fingerprint.encode())
    h.update(np.ascontiguousarray(np.round(np.asarray(x_ref, dtype=float), 9), dtype="<f8").tobytes())
    h.update(casadi.__version__.encode())
    here = Path(__file__).resolve().parent
    for rel in ("reduce.py", "../nlp/compiled.py", "../nlp/walker.py"):
        h.update((here / rel).read_bytes())
    return h.hexdigest()


def cached_reduction(model, canonical_nlp, x_ref: np.ndarray, *, disk_cache: bool = True) -> "Reduction":
    """:class:`Reduction` of ``canonical_nlp``, built once per process and kept on disk
    (``<cache dir>/compiled/<key>.red``) like the compiled canonical problem: a later process loads the reduced
    problem's functions (about 0.2 s) instead of cloning, substituting and compiling (about 1.5-2 s)."""
    import logging
    import os
    import tempfile

    from poso_sim.solvers.cache import default_cache_dir

    key = reduction_key(canonical_nlp, x_ref)
    if key in _MEMO:
        return _MEMO[key]
    path = default_cache_dir() / "compiled" / f"{key}.red"
    red = None
    if disk_cache:
        try:
            red = Reduction.from_bytes(path.read_bytes(), canonical_nlp)
        except FileNotFoundError:
            red = None
        except Exception as exc:  # noqa: BLE001 - a damaged or stale entry is only a miss
            logging.getLogger(__name__).debug("stored reduction %s unusable (%s): rebuilding", path.name, exc)
            red = None
    if red is None:
        red = Reduction(model, canonical_nlp, x_ref)
        if disk_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(red.to_bytes())
                os.replace(tmp, path)
            except OSError:
                pass
    if len(_MEMO) > 8:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[key] = red
    return red


class Reduction:
    """Build the reduced model of a canonical model and map points and multipliers back."""

    def __init__(self, model, canonical_nlp, x_ref: np.ndarray):
        from poso_sim.nlp import compile_nlp
        from poso_sim.solvers.pipeline import fixing_rows

        t0 = time.perf_counter()
        self.canonical = canonical_nlp
        case = model._case
        cp = case.scalars.cp
        self.t_amb = case.scalars.t_ambient
        pipes = {p.id: p for p in case.heat.pipes}
        self.a = {k: p.loss_coeff * p.length_m / (cp * 1000.0) for k, p in pipes.items()}
        dumped = {d["id"]: d for d in case.model_dump(by_alias=True)["heat"]["pipes"]}
        self.hfrom = {k: dumped[k]["from"] for k in dumped}
        self.hto = {k: dumped[k]["to"] for k in dumped}

        r = model.clone()
        nlp = canonical_nlp
        rows, cols, vals = fixing_rows(nlp, np.clip(x_ref, nlp.x_lb, nlp.x_ub))
        self.fixed = {nlp.x_names[c]: float(v) for c, v in zip(cols, vals)}
        self.removed_rows = [nlp.row_names[i] for i in rows]
        for name, v in self.fixed.items():
            r.find_component(name).fix(v)
        for name in self.removed_rows:
            r.find_component(name).deactivate()
        # substitutions on the heat network
        T = list(r.T)
        sub = {}
        for k in r.HPipe:
            for t in T:
                m = r.m_sup[k, t]
                decay = pyo.exp(-self.a[k] / m)
                sub[id(r.m_ret[k, t])] = m
                sub[id(r.T_end_sup[k, t])] = self.t_amb + (r.T_sup[self.hfrom[k], t] - self.t_amb) * decay
                sub[id(r.T_end_ret[k, t])] = self.t_amb + (r.T_ret[self.hto[k], t] - self.t_amb) * decay
        for fam in MIX_ROWS:
            for c in getattr(r, fam).values():
                if c.active:
                    c.set_value(replace_expressions(c.body, sub) == 0)
        for fam in SUBSTITUTED_ROWS:
            for c in getattr(r, fam).values():
                if c.active:
                    self.removed_rows.append(c.name)
                    c.deactivate()
        for comp in ("m_ret", "T_end_sup", "T_end_ret"):
            for v in getattr(r, comp).values():
                v.fix(1.0)  # no longer appears in any active row; its value is recomputed on the way back
        self.model = r
        self.nlp = compile_nlp(r)
        # index maps
        pos = {nm: i for i, nm in enumerate(nlp.x_names)}
        self.red_to_can = np.array([pos[nm] for nm in self.nlp.x_names], dtype=np.int64)
        rpos = {nm: i for i, nm in enumerate(nlp.row_names)}
        self.red_rows_to_can = np.array([rpos[nm] for nm in self.nlp.row_names], dtype=np.int64)
        self.removed_idx = np.array(sorted(rpos[nm] for nm in self.removed_rows), dtype=np.int64)
        self.fixed_idx = np.array([pos[nm] for nm in self.fixed], dtype=np.int64)
        self.fixed_val = np.array(list(self.fixed.values()))
        hp = sorted(self.a)
        self._msup = np.array([[pos[f"m_sup[{k},{t}]"] for t in T] for k in hp])
        self._mret = np.array([[pos[f"m_ret[{k},{t}]"] for t in T] for k in hp])
        self._tes = np.array([[pos[f"T_end_sup[{k},{t}]"] for t in T] for k in hp])
        self._ter = np.array([[pos[f"T_end_ret[{k},{t}]"] for t in T] for k in hp])
        self._tsf = np.array([[pos[f"T_sup[{self.hfrom[k]},{t}]"] for t in T] for k in hp])
        self._trt = np.array([[pos[f"T_ret[{self.hto[k]},{t}]"] for t in T] for k in hp])
        self._avec = np.array([self.a[k] for k in hp])[:, None]
        self.seconds = time.perf_counter() - t0

    _STATE = ("t_amb", "a", "hfrom", "hto", "fixed", "removed_rows", "red_to_can", "red_rows_to_can", "removed_idx",
              "fixed_idx", "fixed_val", "_msup", "_mret", "_tes", "_ter", "_tsf", "_trt", "_avec")

    def to_bytes(self) -> bytes:
        """The reduction without its Pyomo model: index maps, fixed values and the compiled reduced problem."""
        import pickle

        return pickle.dumps(
            {"format": REDUCTION_FORMAT, "state": {k: getattr(self, k) for k in self._STATE},
             "canonical": self.canonical.fingerprint, "nlp": self.nlp.to_bytes()},
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    @classmethod
    def from_bytes(cls, data: bytes, canonical_nlp) -> "Reduction":
        import pickle

        from poso_sim.nlp.compiled import CompiledNLP

        blob = pickle.loads(data)
        if not isinstance(blob, dict) or blob.get("format") != REDUCTION_FORMAT:
            raise ValueError("not a stored reduction")
        if blob["canonical"] != canonical_nlp.fingerprint:
            raise ValueError("the stored reduction belongs to another canonical problem")
        red = cls.__new__(cls)
        for k, v in blob["state"].items():
            setattr(red, k, v)
        red.canonical = canonical_nlp
        red.model = None
        red.nlp = CompiledNLP.from_bytes(blob["nlp"])
        red.seconds = 0.0
        return red

    def to_reduced(self, x_can: np.ndarray) -> np.ndarray:
        return np.asarray(x_can, dtype=float)[self.red_to_can]

    def to_canonical(self, x_red: np.ndarray) -> np.ndarray:
        x = np.zeros(self.canonical.n)
        x[self.red_to_can] = x_red
        x[self.fixed_idx] = self.fixed_val
        m = x[self._msup]
        decay = np.exp(-self._avec / m)
        x[self._mret] = m
        x[self._tes] = self.t_amb + (x[self._tsf] - self.t_amb) * decay
        x[self._ter] = self.t_amb + (x[self._trt] - self.t_amb) * decay
        return x

    def canonical_multipliers(self, x_can, y_red, zl_red, zu_red):
        """Canonical (y, z_L, z_U) at ``x_can`` from the reduced model's multipliers.

        Kept rows keep their multipliers; variables that left have zero bound multipliers; the removed rows'
        multipliers ``y_R`` solve ``J[R, C]^T y_R = -(grad f + J[K, C]^T y_K - z_L + z_U)_C`` on the columns ``C``
        they touch. Where a pipe sits at its minimum flow, the reduced model's single bound multiplier stands for
        both ``m_sup`` and ``m_ret``: the lower-bound multipliers of both become unknowns of the same system.
        """
        nlp = self.canonical
        y = np.zeros(nlp.m)
        y[self.red_rows_to_can] = y_red
        zl = np.zeros(nlp.n)
        zu = np.zeros(nlp.n)
        zl[self.red_to_can] = zl_red
        zu[self.red_to_can] = zu_red
        x_can = np.asarray(x_can, dtype=float)
        lb = np.asarray(nlp.x_lb)
        at_floor = x_can[self._mret] - lb[self._mret] <= 1e-7 * np.maximum(1.0, np.abs(lb[self._mret]))
        free_z = np.concatenate([self._msup[at_floor], self._mret[at_floor]])
        zl[free_z] = 0.0
        jr, jc = (np.asarray(a) for a in nlp.jac_structure)
        J = csr_matrix((np.asarray(nlp.jac(x_can)), (jr, jc)), shape=(nlp.m, nlp.n))
        resid = np.asarray(nlp.grad(x_can)) + J.T @ y - zl + zu
        R = self.removed_idx
        JR = J[R]
        cols = np.union1d(np.unique(JR.indices), free_z)
        pos = -np.ones(nlp.n, dtype=np.int64)
        pos[cols] = np.arange(cols.size)
        zcols = csr_matrix(
            (-np.ones(free_z.size), (pos[free_z], np.arange(free_z.size))), shape=(cols.size, free_z.size)
        )
        A = hstack([JR[:, cols].T, zcols]).tocsr()
        sol = lsqr(A, -resid[cols], atol=1e-15, btol=1e-15, iter_lim=20000)[0]
        y[R] = sol[: R.size]
        zl[free_z] = sol[R.size :]
        return y, zl, zu
