"""Fixtures and hooks of the reliability suite: ``--soak``, trial counts, the summary table."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from . import summary
from .plugin import add_options

_T0 = time.monotonic()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _opt(config: pytest.Config, name: str) -> bool:
    try:
        return bool(config.getoption(name))
    except ValueError:
        return False


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    """True with ``--soak``: the issue's full trial counts instead of the CI-sized set."""
    return _opt(request.config, "soak")


@pytest.fixture(scope="session")
def trials(soak: bool) -> Callable[[int, int], int]:
    """``trials(ci, soak_n)``: how many trials of a scenario this session runs."""
    return lambda ci, full: full if soak else ci


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Iterator[Callable[[str], summary.Scenario]]:
    """``scenario("name")`` -> a handle counting this test's trials in the summary row."""
    yield lambda name: summary.open_scenario(name, request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        summary.mark_test_failed(item.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if not summary.rows():
        return
    tr = terminalreporter
    soak = _opt(config, "soak")
    tr.write_sep("=", f"reliability summary ({'soak' if soak else 'CI set'})")
    for line in summary.table_lines():
        tr.write_line(line)
    if _opt(config, "write_summary"):
        path = summary.write_doc(soak, time.monotonic() - _T0)
        tr.write_line(f"written to {path}")


# -- the fleet: every selected real-run scenario starts at once, in its own thread ------------
FLEET_KEY = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fleet(name): the test checks the real-run driver NAME (fleet.py)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    names: list[str] = []
    for item in items:
        for mark in item.iter_markers("fleet"):
            names += [n for n in mark.args if n not in names]
    config.stash[FLEET_KEY] = names


class Fleet:
    """The running drivers; :meth:`result` waits for one and returns its TrialLog."""

    def __init__(self, futures: dict) -> None:  # type: ignore[type-arg]
        self.futures = futures

    def result(self, name: str):  # type: ignore[no-untyped-def]
        from .fleet import RUN_TIMEOUT

        return self.futures[name].result(timeout=RUN_TIMEOUT * 4)


@pytest.fixture(scope="session", autouse=True)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, soak: bool):  # type: ignore[no-untyped-def]
    """Starts the selected real-run scenarios as soon as the session starts, so their
    minutes of start-up overlap with the rest of the suite."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from .fleet import DRIVERS, Ctx

    names = request.config.stash.get(FLEET_KEY, [])
    if not names:
        yield Fleet({})
        return
    make_config = request.getfixturevalue("make_demo_config")
    base_env = dict(os.environ)
    pool = ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="fleet")
    futures = {}
    for i, name in enumerate(names):
        ctx = Ctx(tmp_path_factory.mktemp(f"fleet-{name}"), make_config, soak, seed=1000 + i, base_env=base_env)
        futures[name] = pool.submit(DRIVERS[name], ctx)
    try:
        yield Fleet(futures)
    finally:
        pool.shutdown(wait=True)
