"""Unit tests for hints.py: the failure classifier."""

from __future__ import annotations

import pytest

from pytest_ipv6compat.hints import classify

EMERG_97 = "nginx: [emerg] socket() [::]:56000 failed (97: Address family not supported by protocol)"
INVALID = "entrypoint: invalid value for PL_IPV6_DISABLE: 'maybe' (use 1/true/yes/on, 0/false/no/off or leave unset)"


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        (EMERG_97, "the kernel has no IPv6 (errno 97): drop the [::] listen lines or make them conditional"),
        ("python: OSError: [Errno 97] Address family not supported by protocol", "the kernel has no IPv6"),
        ("nginx: [emerg] bind() to [::1]:56000 failed (99: Cannot assign requested address)",
         "IPv6 is disabled by sysctl (errno 99): there is no ::1"),
        ("sed: can't create temp file '/etc/proxy/proxy.conf.tmplXXXXXX': Read-only file system",
         "the entrypoint edits a config directory mounted read-only (a ConfigMap?): render into a writable path"),
        ("nginx: [emerg] open() \"/etc/nginx/conf.d/default.conf\" failed (30: Read-only file system)",
         "mounted read-only"),
        ('nginx: [emerg] host not found in upstream "api:51200" in /etc/nginx/conf.d/proxy.conf:12',
         "a hostname does not resolve: there is no DNS inside --network none"),
        ("2025/01/01 10:00:00 [error] 7#7: *1 no resolver defined to resolve api.pixie.svc", "no DNS"),
        (INVALID, "the target rejected the value of PL_IPV6_DISABLE: use a documented value"),
        ("proxy: invalid value 'maybe'", "the target rejected the value of the knob"),
        ("entrypoint: PL_DOMAIN_NAME is required", "PL_DOMAIN_NAME is not set: add it to the target's base env"),
        ("/entrypoint.sh: line 4: PL_DOMAIN_NAME: parameter null or not set", "PL_DOMAIN_NAME is not set"),
        ("sh: PL_DOMAIN_NAME: parameter not set", "PL_DOMAIN_NAME is not set"),
        ("FATAL: environment variable PL_DOMAIN_NAME must be set", "PL_DOMAIN_NAME is not set"),
        ("error: ssl_certificate is required", "a required environment variable is not set"),
    ],
)
def test_classify_known_signatures(line: str, hint: str) -> None:
    got = classify("", line)
    assert got is not None
    assert hint in got
    assert classify(f"starting\n{line}\nexiting\n", None) == got  # found in the logs too


def test_classify_prefers_the_error_line_then_the_earliest_signature() -> None:
    logs = "warn: sed: /etc/x: Read-only file system\n" + EMERG_97
    assert str(classify(logs, EMERG_97)).startswith("the kernel has no IPv6")
    assert str(classify(logs, None)).startswith("the entrypoint edits")  # the root cause comes first
    assert classify("nginx: [emerg] unknown directive \"lissen\"", "nginx: [emerg] unknown directive") is None
    assert classify("", None) is None
