"""Helpers shared by test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "matrix" / "cloud-proxy.ipv6.toml"


def copy_matrix(pytester: pytest.Pytester, *replacements: tuple[str, str]) -> Path:
    """A copy of the cloud-proxy matrix, pointing at the real build context."""
    text = MATRIX.read_text()
    text = text.replace('build = "cloud-proxy"', f'build = "{ROOT / "matrix" / "cloud-proxy"}"')
    text = text.replace(
        'config_source = "cloud-proxy/proxy"', f'config_source = "{ROOT / "matrix" / "cloud-proxy" / "proxy"}"'
    )
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = pytester.path / "cloud-proxy.ipv6.toml"
    path.write_text(text)
    return path
