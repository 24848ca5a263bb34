"""Matrix files become test items: one item per cell, with a stable readable id."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import images
from .backends import Backend, EngineError, Launch, Run, StackUnsupported, UnknownUser
from .diagnose import hint
from .inflight import Cancelled, Serial, Slot, Timing
from .keys import KEPT_KEY, RESULT_KEY, SCHEDULER_KEY, STATE_KEY, TARGET_NAMES_KEY
from .matrix import Matrix, MatrixError, check_target_settle, claim_target_name, judge, load_matrix, setting_source
from .model import Attestation, Cell, Verdict
from .options import run_base
from .outcomes import fail, unavailable, unsupported
from .provenance import Provenance, with_guest_kernel
from .results import CellResult
from .spec import RunSpec
from .stacks import get_stack
from .state import SessionState, Unavailable


class MatrixFile(pytest.File):
    """A ``*.ipv6.toml`` file: a target and the expected verdict of every cell."""

    def collect(self) -> Iterator[CellItem]:
        try:
            # A recording run takes a file whose [expect] lacks cells, or is absent: it fills them in.
            matrix = load_matrix(self.path, placeholders=self.config.stash[STATE_KEY].settings.record)
            claimed: dict[str, Path] = self.config.stash.setdefault(TARGET_NAMES_KEY, {})
            claim_target_name(matrix, claimed)
            base = run_base(self.config.stash[STATE_KEY].settings)
            if (base.settle, base.timeout) != (RunSpec().settle, RunSpec().timeout):
                # the file was checked over the defaults; --ipv6-settle/--ipv6-timeout may move either bound
                check_target_settle(matrix.target, self.path, base, " (with --ipv6-settle/--ipv6-timeout as given)")
        except MatrixError as exc:
            raise self.CollectError(str(exc)) from None
        for cell in matrix.cells:
            yield CellItem.from_parent(self, name=f"{cell.target}[{cell.id}]", matrix=matrix, cell=cell)


@dataclass
class Observed:
    """What starting and observing a cell gave: its run (held by ``stack`` until the item's teardown), the
    attestation, the verdict, what ran it, report sections, and the error or skip it met (raised in its item)."""

    stack: contextlib.ExitStack[bool | None]
    running: Run | None = None
    attestation: Attestation | None = None
    verdict: Verdict | None = None
    ran_on: Provenance = ()
    sections: list[tuple[str, str]] = field(default_factory=list)
    error: BaseException | None = None


class CellItem(pytest.Item):
    """One cell: start the target on its stack, attest, observe, judge."""

    def __init__(self, *, matrix: Matrix, cell: Cell, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.matrix = matrix
        self.cell = cell
        self._exit = contextlib.ExitStack()
        self._running: Run | None = None
        self.attestation: Attestation | None = None
        self.verdict: Verdict | None = None
        self.ran_on: Provenance = ()  # what runs (or ran) the cell: its engine, or the User-mode Linux kernel
        self.timing: Timing | None = None  # when its cell ran, when started ahead of the item (--ipv6-inflight)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"{self.cell.target}[{self.cell.id}] ({self.cell.expectation.source})"

    def _image(self) -> str:
        state = self.config.stash[STATE_KEY]
        target = self.matrix.target
        given = target.image_for(self.cell.variant)
        if given is not None:
            return given
        assert target.build is not None
        return state.built_image(
            target.build, f"{target.name}-{self.cell.variant}", {target.variant_arg: self.cell.variant}
        )

    def setup(self) -> None:
        """Take the cell's outcome: started ahead by the in-flight scheduler (--ipv6-inflight), or start,
        attest and observe it now. When its engine is gone and --ipv6-engines names another that answers,
        start it again there (the cell's provenance says so)."""
        state = self.config.stash[STATE_KEY]
        scheduler = self.config.stash.get(SCHEDULER_KEY, None)
        job = scheduler.take(self) if scheduler is not None else None
        while True:
            try:
                if job is not None:
                    self.timing = job.timing
                    observed = job.result()
                else:
                    observed = self.observe(Serial())
                job = None
                self._take(observed)
                return
            except pytest.fail.Exception:
                if not state.fail_over():  # the engine answers (the error is the cell's), or no other one does
                    raise
                if scheduler is not None:
                    scheduler.cancel_all()  # cells started on the engine just left: each starts again in its item
            self._exit.close()
            self._exit = contextlib.ExitStack()
            self._running, self.attestation, self.verdict, self.ran_on, self.timing = None, None, None, (), None

    def _take(self, observed: Observed) -> None:
        """Make the outcome this item's (its container ends with the item), then raise its error, if any."""
        self._exit = observed.stack
        self._running, self.attestation, self.verdict = observed.running, observed.attestation, observed.verdict
        self.ran_on = observed.ran_on
        for section in observed.sections:
            self.add_report_section("setup", *section)
        if observed.error is not None:
            error, observed.error = observed.error, None
            raise error

    def observe(self, slot: Slot) -> Observed:
        """Start, attest and observe the cell; everything it meets (a verdict, an error, a skip) in the outcome.

        The work of a cell wherever it runs: in its item, or in a thread of the in-flight scheduler.
        Only :class:`Cancelled` (the scheduler stopped it before it made anything) is raised.
        """
        observed = Observed(contextlib.ExitStack())
        try:
            self._observe(self.config.stash[STATE_KEY], observed, slot)
        except Cancelled:
            observed.stack.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - raised in the item, as if it had run there
            observed.error = exc
        return observed

    def _prepare(self, state: SessionState, observed: Observed) -> tuple[Backend, Launch]:
        cell, target = self.cell, self.matrix.target
        try:
            engine = state.backend(get_stack(cell.stack))
            observed.ran_on = state.provenance(engine)
            image = self._image()
            image_env = engine.image_config(image).get("Env") or []
        except Unavailable as exc:
            unavailable(exc, require_docker=state.settings.require_docker)
        except (images.ImageError, EngineError) as exc:
            fail(str(exc))
        env = dict(target.env)
        if cell.knob and cell.setting.value is not None:
            env[cell.knob] = cell.setting.value
        elif cell.knob and any(e.partition("=")[0] == cell.knob for e in image_env):
            fail(f"image {image!r} sets {cell.knob} in its ENV, so the 'unset' setting cannot be realised")
        spec = target.run_for(cell.variant, run_base(state.settings))
        config = target.config_for(cell.variant)
        if cell.config_mode == "ro" and config is not None:
            spec = spec.updated({"mounts": (*spec.mounts, (config[0], str(config[1])))})
        return engine, Launch(image, get_stack(cell.stack), env=env, run=spec)

    def _observe(self, state: SessionState, observed: Observed, slot: Slot) -> None:
        cell, target = self.cell, self.matrix.target
        with slot.starting():  # the CPU-heavy part, up to the attestation: bounded in number per process
            try:
                with slot.entering():  # session state and the backend's start: one cell at a time
                    engine, launch = self._prepare(state, observed)
                    observed.running = observed.stack.enter_context(engine.run(launch))
                    slot.made(observed.stack.close)
                observed.attestation = observed.running.attestation()
                observed.ran_on = with_guest_kernel(observed.ran_on, observed.attestation.facts)
            except UnknownUser as exc:  # the image lacks the name: say where the matrix set it
                fail(exc.line(setting_source(target, self.path, cell.variant, "user")))
            except StackUnsupported as exc:
                unsupported(exc, require_docker=state.settings.require_docker)
            except EngineError as exc:
                fail(str(exc))
        if not observed.attestation.ok:
            observed.sections.append(("attestation", observed.attestation.describe()))
            runtime = engine.info().get("runtime", "?")
            why = (
                f"\n  Hint: the engine's OCI runtime ({runtime}) did not apply disable_ipv6=0; crun with Docker"
                " 20.10 is known to ignore it: make runc the engine's runtime"
                if any("disable_ipv6" in p and "want 0" in p for p in observed.attestation.problems)
                else ""
            )
            fail(
                f"stack {cell.stack} could not be attested inside the container; the engine may ignore "
                f"sysctls or seccomp, so no verdict is trusted:\n{observed.attestation.describe()}{why}"
            )
        # Observing is part of setting the cell up: a fault here (an engine that stops answering, a
        # container removed by someone else) is a pytest error, as the grid calls it, not a failure.
        try:
            observed.verdict = observed.running.verdict()
        except EngineError as exc:
            fail(str(exc))

    def runtest(self) -> None:
        verdict = self.verdict
        assert verdict is not None
        mismatch = judge(self.cell.expectation, verdict)
        result = self.result(mismatch.reasons)
        self.stash[RESULT_KEY] = result
        if mismatch:
            raise CellMismatch(result)

    def teardown(self) -> None:
        result = self.stash.get(RESULT_KEY, None)
        state = self.config.stash[STATE_KEY]
        keep = result is not None and result.status == "fail" and state.settings.keep_failed
        if keep and self._running is not None:
            self._running.keep = True
        self._exit.close()  # a kept container is renamed ipv6compat-kept-... here
        if keep and self._running is not None:
            state.kept[self._running.name] = self._running.inspection()
            self.stash[KEPT_KEY] = (self._running.name, state.kept[self._running.name])  # for xdist's controller

    def result(self, reasons: tuple[str, ...]) -> CellResult:
        verdict = self.verdict
        status = "fail" if reasons else "pass"
        advice = (
            hint(verdict.logs, verdict.error_line, exit_code=verdict.exit_code, stack=self.cell.stack)
            if verdict is not None and reasons
            else None
        )
        return CellResult(self.cell, status, verdict, self.attestation, reasons, advice, self.ran_on)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CellMismatch):
            return excinfo.value.explain()
        return str(super().repr_failure(excinfo, style=style))


class CellMismatch(Exception):
    """The verdict differs from the expectation; carries the evidence."""

    def __init__(self, result: CellResult) -> None:
        super().__init__("; ".join(result.reasons))
        self.result = result

    def explain(self) -> str:
        from .listeners import format_listeners
        from .report import describe_reach

        r = self.result
        cell, verdict = r.cell, r.verdict
        assert verdict is not None
        exp = cell.expectation
        lines = [f"{cell.target}[{cell.id}]: verdict does not match the expectation ({cell.where})"]
        lines += [f"  - {reason}" for reason in r.reasons]
        lines.append(f"  expected: {exp.source}")
        seen = f"{verdict.outcome}"
        if verdict.exit_code is not None:
            seen += f" with code {verdict.exit_code}"
        lines.append(f"  seen:     {seen}")
        lines.append(f"  expected listeners: {format_listeners(exp.listeners)}")
        lines.append(f"  seen listeners:     {format_listeners(verdict.listeners)}")
        lines += [f"    {line}" for line in describe_reach(verdict)]
        if verdict.listened:
            lines.append(f"  had listened on: {format_listeners(verdict.listened)}")
        if verdict.error_line:
            lines.append(f"  error line: {verdict.error_line}")
        if r.attestation is not None:
            lines.append("  " + r.attestation.describe().replace("\n", "\n  "))
        tail = verdict.logs.strip().splitlines()[-15:]
        if tail:
            lines.append("  log tail:")
            lines += [f"    | {line}" for line in tail]
        if r.hint:
            lines.append(f"  Hint: {r.hint}")
        return "\n".join(lines)
