"""poso_sim.kkt: the KKT certificate of a solution on the verifier's own copy of the problem.

* :func:`verify` (``problem, solution, tolerances=None, *, claimed_digest=None) -> Certificate``; ``problem`` may be
  a ``case:`` string or left out (``verify(solution)``): the case and instance the solution names
  (:mod:`poso_sim.kkt.origin`; a plan of another problem raises ``ProblemMismatchError``)
* :class:`Certificate`, :class:`Tolerances`, :data:`DEFAULT_TOLERANCES`
* :class:`KKTChecker` (precomputed structure of one problem; :func:`checker_for` caches one per problem)
* :func:`to_shared` (a plan of another variant of the same constraint set, expressed on the shared problem),
  :func:`map_multipliers` (multipliers of a reformulated/presolved model completed on the canonical one)
* :mod:`poso_sim.kkt.decide`: when the received multipliers fail, whether valid ones exist for the point
  (multipliers recomputed from x by a weighted least squares, QDLDL; then an LP over the certificate's own sign
  and complementarity rules, HiGHS, deterministic iteration budget; the outcome kept per point);
  ``min_stationarity`` gives a lower bound on the stationarity residual any valid multipliers leave (a diagnostic)
* ``python -m poso_sim.kkt.cli FILE [--case CASE] [--json]`` (also ``poso-sim verify``; exit 0 accepted, 1 rejected,
  2 bad input, 3 a plan for another problem)

See docs/certificate.md.
"""

from poso_sim.kkt.certificate import DEFAULT_TOLERANCES, Certificate, Tolerances
from poso_sim.kkt.check import KKTChecker, Measures, checker_for, verify
from poso_sim.kkt.mapping import map_multipliers, to_shared

__all__ = [
    "verify",
    "Certificate",
    "Tolerances",
    "DEFAULT_TOLERANCES",
    "KKTChecker",
    "Measures",
    "checker_for",
    "to_shared",
    "map_multipliers",
]
