"""Failure classifier: a one-line hint for a target's log or error line.

Pure: a table of known failure signatures (regular expression, hint) and :func:`classify`.
No pytest, no Docker.
"""

from __future__ import annotations

import re

__all__ = ["classify"]

_SIGNATURES: tuple[tuple[re.Pattern[str], str, str], ...] = (  # (signature, hint, default for {name})
    (re.compile(r"Address family not supported by protocol|EAFNOSUPPORT"),
     "the kernel has no IPv6 (errno 97): drop the [::] listen lines or make them conditional", ""),
    (re.compile(r"Cannot assign requested address|EADDRNOTAVAIL"),
     "IPv6 is disabled by sysctl (errno 99): there is no ::1, so binding or connecting to [::1] fails;"
     " listen on [::] or 127.0.0.1, or skip ::1 when disable_ipv6=1", ""),
    (re.compile(r"Read-only file system|EROFS"),
     "the entrypoint edits a config directory mounted read-only (a ConfigMap?): render into a writable path", ""),
    (re.compile(r"host not found in upstream|no resolver defined|could not be resolved|bad address '"),
     "a hostname does not resolve: there is no DNS inside --network none; use an IP, or a resolver"
     " plus a variable in proxy_pass so nginx resolves at request time", ""),
    (re.compile(r"invalid value for [\'\"]?(?P<name>[\w.-]+)|invalid value", re.IGNORECASE),
     "the target rejected the value of {name}: use a documented value (e.g. 1/true, 0/false) or leave it unset",
     "the knob"),
    (re.compile(r"(?:\b(?P<name>[A-Z][A-Z0-9_]*)[:\s]+)?(?:is required|must be set|parameter (?:null or )?not set)"),
     "{name} is not set: add it to the target's base environment", "a required environment variable"),
)


def classify(logs: str, error_line: str | None) -> str | None:
    """A one-line hint for a known failure signature, or None.

    The error line wins over the logs; within the logs the earliest signature (the root cause) wins.
    """
    for text in (error_line or "", logs):
        found = [(m.start(), i, m) for i, (p, _, _) in enumerate(_SIGNATURES) if (m := p.search(text))]
        if found:
            _, i, match = min(found, key=lambda f: f[:2])
            return _SIGNATURES[i][1].format(name=match.groupdict().get("name") or _SIGNATURES[i][2])
    return None
