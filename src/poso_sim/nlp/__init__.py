"""poso_sim.nlp: compile any Pyomo NLP into sparse numeric callbacks with exact derivatives (CasADi SX).

Public API: :func:`compile_nlp`, :class:`CompiledNLP`, :class:`Solution` (a primal-dual point of a compiled NLP,
shared by the solvers and the certificate) with its file format, :class:`NLPCompileError`, :class:`UnsupportedExpressionError`.
See docs/nlp.md.
"""

from poso_sim.nlp.compiled import FINGERPRINT_VERSION, STRUCTURE_FINGERPRINT_VERSION, CompiledNLP, compile_nlp
from poso_sim.nlp.solution import FORMAT_VERSION, Solution, load_solution, save_solution, solution_digest
from poso_sim.nlp.walker import SUPPORTED_NODE_TYPES, NLPCompileError, UnsupportedExpressionError

__all__ = [
    "CompiledNLP",
    "compile_nlp",
    "NLPCompileError",
    "UnsupportedExpressionError",
    "STRUCTURE_FINGERPRINT_VERSION",
    "FINGERPRINT_VERSION",
    "SUPPORTED_NODE_TYPES",
    "Solution",
    "save_solution",
    "load_solution",
    "solution_digest",
    "FORMAT_VERSION",
]
