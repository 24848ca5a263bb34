"""Typed stash keys: all plugin state lives in config.stash / item.stash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .inflight import Scheduler
from .results import CellResult
from .state import SessionState

STATE_KEY = pytest.StashKey[SessionState]()
RESULT_KEY = pytest.StashKey[CellResult]()
KEPT_KEY = pytest.StashKey[tuple[str, list[str]]]()  # a kept run: its name and the commands that inspect it
SCHEDULER_KEY = pytest.StashKey[Scheduler[Any]]()  # set when --ipv6-inflight is more than 1
TARGET_NAMES_KEY = pytest.StashKey[dict[str, Path]]()  # target name -> the matrix file that has it
