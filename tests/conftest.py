"""Test configuration. The etcd fixtures come from trio_etcd_tree.testing.pytest_plugin
(registered by the package's pytest11 entry point); here are only the suite's safety nets
against hangs."""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator

import pytest

# A stuck test (real time, or spinning through virtual time under an autojump clock) must
# not eat CI's 90 minutes: dump every stack and exit.
WHOLE_RUN_LIMIT = 40 * 60


@pytest.fixture(scope="session", autouse=True)
def _hang_guard() -> Iterator[None]:
    faulthandler.dump_traceback_later(WHOLE_RUN_LIMIT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
