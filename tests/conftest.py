import logging
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """Tests that call ``anpr_edge.cli.main`` get the root logger pointed at their captured stderr, which is
    closed once they end: put the handlers back so later tests' log records never go to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
