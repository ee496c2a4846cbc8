"""poso_sim.solvers: solver backends (CasADi's bundled Ipopt, the default, and Ipopt via cyipopt), the generic
machinery of staged solves, the one solve route and the solution cache; re-exports the Solution type of
:mod:`poso_sim.nlp.solution`. A problem family's own recipe lives in its wing (:mod:`.ies` for the
integrated-energy model), reached only through the problem registry's ``solve_recipe``.

Generic API:

* :class:`Solution`, :func:`save_solution`, :func:`load_solution` (:mod:`.solution`)
* :class:`SolverBackend`, :class:`RawResult`, :class:`IterInfo`, :func:`violation` (:mod:`.backend`)
* :class:`IpoptBackend`, :class:`PyomoSolverFactoryBackend` (:mod:`.ipopt`), :class:`CasadiIpoptBackend`
  (:mod:`.casadi_ipopt`)
* :class:`ProblemView` (:mod:`.view`); :class:`SolveError`, ``final_check``, ``make_backend`` (:mod:`.pipeline`);
  ``solve_case`` / ``solve_plans`` / ``cached_solution`` live in :mod:`.api`
* :class:`SolutionCache`, :func:`cache_key` (:mod:`.cache`)
"""

from poso_sim.solvers.backend import IPOPT_STATUS, IterInfo, RawResult, SolverBackend, ipopt_status, violation
from poso_sim.solvers.casadi_ipopt import CasadiIpoptBackend
from poso_sim.solvers.pipeline import SolveError
from poso_sim.solvers.cache import CacheWarning, SolutionCache, cache_key, default_cache_dir
from poso_sim.solvers.ipopt import DEFAULT_IPOPT_OPTIONS, IpoptBackend, PyomoSolverFactoryBackend, ipopt_version
from poso_sim.nlp.solution import FORMAT_VERSION, Solution, load_solution, save_solution, solution_digest

__all__ = [
    "Solution",
    "save_solution",
    "load_solution",
    "solution_digest",
    "FORMAT_VERSION",
    "SolverBackend",
    "RawResult",
    "IterInfo",
    "violation",
    "IPOPT_STATUS",
    "ipopt_status",
    "IpoptBackend",
    "PyomoSolverFactoryBackend",
    "CasadiIpoptBackend",
    "SolveError",
    "DEFAULT_IPOPT_OPTIONS",
    "ipopt_version",
    "SolutionCache",
    "cache_key",
    "default_cache_dir",
    "CacheWarning",
]
