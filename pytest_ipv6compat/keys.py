"""Typed stash keys: all plugin state lives in config.stash / item.stash."""

from __future__ import annotations

import pytest

from .results import CellResult
from .state import SessionState

STATE_KEY = pytest.StashKey[SessionState]()
RESULT_KEY = pytest.StashKey[CellResult]()
