"""A session: the state that runs may share (memoised verdicts, solved plans, a signature cache).

Runs of one session never verify a digest twice, never solve a plan twice and (when they use its
`signatures` cache) never check the same Ed25519 signature twice. Everything memoised is a pure function of its
key, so sharing changes no result, only the work done. `run_scenario` uses the process's default session unless
given one; a sweep worker keeps one session per payload descriptor.
"""

from __future__ import annotations

from typing import Any

from poso_sim.protocol import Payload, SignatureCache, Verdict

__all__ = ["Session", "default_session", "clear_verdicts"]


class Session:
    """* `verdicts`: (verifier key, digest) -> (Verdict, measured seconds of the one real verification);
    * `plans`: (case, forge scale, cache dir) -> label -> Payload (used by `RealPayloads`);
    * `signatures`: a `SignatureCache` (used by runs given `signature_cache=session.signatures`)."""

    def __init__(self, *, signature_limit: int = 200_000) -> None:
        self.verdicts: dict[tuple[str, str], tuple[Verdict, float]] = {}
        self.plans: dict[tuple[Any, ...], dict[str, Payload]] = {}
        self.signatures = SignatureCache(signature_limit)

    def seed_verdict(self, key: str, digest: str, verdict: Verdict) -> None:
        """Record a verdict computed elsewhere (e.g. by a sweep's parent process) unless one is known."""
        self.verdicts.setdefault((key, digest), (verdict, 0.0))

    def clear(self) -> None:
        self.verdicts.clear()
        self.plans.clear()
        self.signatures.clear()


_DEFAULT = Session()


def default_session() -> Session:
    """The session `run_scenario` and `RealPayloads` use when given none."""
    return _DEFAULT


def clear_verdicts() -> None:
    """Forget the default session's verdicts (the next runs verify again)."""
    _DEFAULT.verdicts.clear()
