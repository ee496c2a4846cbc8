"""Day-ahead instances from a base case, and multi-day horizons."""

from __future__ import annotations

from .schema import Case


def repeat_days(case: Case, days: int) -> Case:
    """``case`` over ``days`` x its horizon: the per-period profiles repeated, everything else unchanged."""
    if not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if days == 1:
        return case
    prof = case.profiles
    tiled = {
        k: (None if v is None else list(v) * days)
        for k, v in prof.model_dump().items()
    }
    return case.model_copy(
        update={"name": f"{case.name}-x{days}d", "horizon": case.horizon * days, "profiles": prof.model_copy(update=tiled)}
    )
