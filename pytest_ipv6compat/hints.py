"""Deprecated: the failure classifier moved to :mod:`pytest_ipv6compat.diagnose`.

Kept only so ``items.py`` imports until its call site uses :func:`~pytest_ipv6compat.diagnose.hint`;
delete this module then.
"""

from __future__ import annotations

from .diagnose import hint as classify

__all__ = ["classify"]
