"""pytest support: run ``async def`` tests in virtual time under pytest-asyncio (>= 1.1).

Enable with ``pytest_plugins = ["poso_sim.sim.pytest_plugin"]`` in the top-level conftest.py, then::

    from poso_sim.sim.pytest_plugin import virtual_time

    @virtual_time
    async def test_one_hour():
        await asyncio.sleep(3600)          # instant; asyncio.get_running_loop().time() == 3600.0

``virtual_time`` is ``pytest.mark.asyncio(loop_factories=["virtual"])``; writing
``@pytest.mark.asyncio`` together with ``@pytest.mark.virtual_time`` works too, and
``@pytest.mark.asyncio(loop_scope="module", loop_factories=["virtual"])`` shares one virtual loop across a module.
The loop is supplied through pytest-asyncio's ``pytest_asyncio_loop_factories`` hook (this plugin's
implementation runs last, so a project-specific implementation takes precedence). Tests not asking for
virtual time keep the ordinary event loop of the current policy.

Fixtures: ``virtual_loop`` (async: the running `VirtualTimeEventLoop`, for tests marked as above) and ``sim_run``
(sync: `poso_sim.sim.run`, to drive a whole simulation from a plain test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import pytest_asyncio

from poso_sim.sim.clock import VirtualTimeEventLoop, new_virtual_loop, run

__all__ = ["VIRTUAL", "virtual_time"]

VIRTUAL = "virtual"
virtual_time = pytest.mark.asyncio(loop_factories=[VIRTUAL])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "virtual_time: run this asyncio test on poso_sim's virtual-time event loop"
    )


def _default_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_event_loop_policy().new_event_loop()


def _wants_virtual(item: Any) -> bool:
    if item.get_closest_marker("virtual_time") is not None:
        return True
    for mark in item.iter_markers("asyncio"):
        names = mark.kwargs.get("loop_factories")
        if names and not isinstance(names, str) and VIRTUAL in names:
            return True
    return False


@pytest.hookimpl(trylast=True, optionalhook=True)
def pytest_asyncio_loop_factories(config: pytest.Config, item: Any) -> Mapping[str, Callable[[], Any]]:
    if _wants_virtual(item):
        return {VIRTUAL: new_virtual_loop}
    return {"asyncio": _default_loop}


@pytest_asyncio.fixture
async def virtual_loop() -> VirtualTimeEventLoop:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualTimeEventLoop):
        pytest.fail("virtual_loop: mark the test with poso_sim.sim.pytest_plugin.virtual_time", pytrace=False)
    return loop


@pytest.fixture
def sim_run() -> Callable[..., Any]:
    return run
