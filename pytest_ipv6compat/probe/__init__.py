"""The probe: what runs inside the target's network namespace, and the parser of what it reports.

``shim.sh`` (busybox sh) runs first in the target, attests the stack and execs the
target; ``watch.c`` (a static binary) observes the running target on a channel of
its own. :mod:`.report` parses both, for every backend.
"""
