"""``selftest``: run the installed sglang's real norm entries on the contract cases, unguarded and guarded.

On a GPU (ROCm with aiter by default, or ``--device``) it uses the kernels sglang imported, says
which device and which ``aiter`` they came from, and runs the unguarded calls in child processes
so a memory fault cannot take the selftest down.  Elsewhere it uses the memory-faithful kernel
double and says so ("emulated") in every report.  Each case runs only where the installed sglang
has the entry's aiter branch and selected it.

Isolation without a re-import per case: a child (:func:`worker_main`) imports sglang once and runs
the cases it is given one after another, one protocol line per case on its stdout as each ends.
A child that dies in a case (a memory fault aborts the process on ROCm) has that case recorded as
its fault, with its exit code and last stderr line; one whose device is no longer usable after a
caught fault (CUDA / HIP errors are sticky per process) reports that case and exits.  Either way
the remaining cases go to a fresh child, so one crash never decides another case's result.  Up to
``jobs`` children run side by side (each its own process and device context), started before the
parent imports sglang itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import deque
from typing import Any

import torch

from aiter_norm_guard.cli.cases import BY_NAME, CASES, Case, CaseInputs, describe, make_module
from aiter_norm_guard.cli.selftest_report import err_text

FAULT_EXIT = 3
PROTOCOL = "@@aiter-norm-guard-selftest "  #: a child's result lines start with this (sglang may print too)
CASE_TIMEOUT_S = 600  #: a child that gives no result for a case in this long is killed: that case is its fault
MAX_JOBS = 8
WORKER = "from aiter_norm_guard.cli.selftest import worker_main; worker_main({tokens}, {emulated!r})"  #: child code


def real_rocm() -> bool:
    """A ROCm build of torch with a visible GPU."""
    return bool(torch.version.hip) and torch.cuda.is_available()


def device_label() -> str:
    """The device, torch's HIP version and the ``aiter`` sglang imported its kernels from: what ran."""
    aiter = sys.modules.get("aiter")
    if aiter is None:
        origin = "no aiter imported"
    elif getattr(aiter, "__aiter_norm_guard_emulated__", False):
        origin = f"a test double of aiter's kernels ({aiter.__doc__ or 'not aiter'})"
    else:
        origin = f"aiter {getattr(aiter, '__version__', '?')} at {getattr(aiter, '__file__', '?')}"
    return f"{torch.cuda.get_device_name()}, torch.version.hip={torch.version.hip}, kernels from {origin}"


def _pairs(got: Any, want: Any) -> list[tuple[Any, Any]]:
    return list(zip(got, want, strict=False)) if isinstance(want, tuple) else [(got, want)]


def _max_err(got: Any, want: Any) -> float | None:
    """The largest absolute difference; None where there is no number (other shape, NaN or inf)."""
    err = 0.0
    for g, w in _pairs(got, want):
        if g.shape != w.shape:
            return None
        if g.numel():
            diff = (g.float() - w.float()).abs()
            if not bool(torch.isfinite(diff).all()):
                return None  # garbage: NaN or inf where forward_native is finite
            err = max(err, diff.max().item())
    return err


def _close(got: Any, want: Any, tol: float | None) -> bool:
    try:
        for g, w in _pairs(got, want):
            torch.testing.assert_close(g, w, rtol=tol, atol=tol)
    except (AssertionError, TypeError):
        return False
    return isinstance(got, tuple) == isinstance(want, tuple)


def tolerance(case: Case) -> float | None:
    """One bf16 ulp at |v| < 4 where the aiter path rounds in bf16 and native in fp32: sglang adds
    residual + post in bf16 (RMSNorm), and computes ``weight + 1`` in bf16 (Gemma, 0.5.10)."""
    return 2**-6 if case.uses_post or case.entry.startswith("Gemma") else None


def _build(layernorm: Any, case: Case, tokens: int, device: torch.device) -> tuple[Any, CaseInputs]:
    inp = case.build(tokens, torch.bfloat16, device, torch.Generator().manual_seed(0))
    return make_module(layernorm, case.entry, inp.hidden, torch.bfloat16, inp.weight_dtype, device), inp


def _unguarded(original: Any, norm: Any, inp: CaseInputs, want: Any, tol: float | None) -> tuple[str, str]:
    try:
        got = original(norm, *inp.args())
        if inp.x.is_cuda and torch.cuda.is_available():  # (the emulation reports CPU memory as device memory)
            torch.cuda.synchronize()
    except Exception as exc:
        return "fault", f"{type(exc).__name__}: {str(exc).splitlines()[0][:90] if str(exc) else ''}"
    if _close(got, want, tol):
        return "ok", ""
    return "wrong", err_text(_max_err(got, want))


def _original(layernorm: Any, case: Case) -> Any:
    from aiter_norm_guard.guard.guard import original_of

    cls, attr = case.entry.split(".")
    fn = getattr(getattr(layernorm, cls), attr)
    return original_of(fn) or fn


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(PROTOCOL + json.dumps(message) + "\n")
    sys.stdout.flush()


def _device_usable(emulated: bool) -> bool:
    """Whether this process's device still runs work (a sticky CUDA / HIP error poisons the context)."""
    if emulated:  # the double's faults are exceptions: nothing is left behind
        return True
    try:
        torch.cuda.synchronize()
        return bool(torch.ones(1, device="cuda").add_(1).sum().item() == 2)
    except Exception:
        return False


def worker_main(tokens: int, emulated: bool = False) -> None:
    """A child's body (guard off in it): import sglang once, then for each case name read from stdin run
    the case unguarded and print one protocol line ``{"case", "outcome", "detail", "healthy"}``.  After a
    fault that left the device unusable it exits: the parent gives the rest to a fresh child."""
    if emulated:
        from aiter_norm_guard.emulation import EmulatedRocm

        EmulatedRocm().activate()
    import sglang.srt.layers.layernorm as ln

    device = torch.device("cpu" if emulated else "cuda")
    _say({"ready": True})
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        try:
            case = BY_NAME[name]
            norm, inp = _build(ln, case, tokens, device)
            want = norm.forward_native(*inp.args())
            outcome, detail = _unguarded(_original(ln, case), norm, inp, want, tolerance(case))
            del norm, inp, want
        except Exception as exc:  # the case itself could not be set up here (the parent's row says why)
            outcome, detail = "fault", f"child: {type(exc).__name__}: {exc}"[:120]
        healthy = outcome != "fault" or _device_usable(emulated)
        _say({"case": name, "outcome": outcome, "detail": detail, "healthy": healthy})
        if not healthy:
            return


class _Child:
    """One worker child: started at once (it imports while the parent works), fed one case at a time."""

    def __init__(self, tokens: int, emulated: bool) -> None:
        code = WORKER.format(tokens=tokens, emulated=emulated)
        env = {**os.environ, "AITER_NORM_GUARD": "0"}
        self.err = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            env=env,
            bufsize=1,
        )

    def run(self, name: str, timeout: float) -> tuple[str, str, bool]:
        """(outcome, detail, whether this child takes another case)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(name + "\n")
            self.proc.stdin.flush()
        except OSError:  # it died already (in its imports): reading says how
            pass
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        ready = False
        try:
            for line in self.proc.stdout:
                if not line.startswith(PROTOCOL):
                    continue
                msg = json.loads(line[len(PROTOCOL) :])
                ready = ready or bool(msg.get("ready"))
                if msg.get("case") == name:
                    return str(msg["outcome"]), str(msg["detail"]), bool(msg["healthy"])
        finally:
            timer.cancel()
        rc = self.proc.wait()
        self.err.seek(0)
        tail = ([ln for ln in self.err.read().splitlines() if ln.strip()] or ["no output"])[-1][:90]
        return "fault", f"child exit {rc}{'' if ready else ' before the case ran'}: {tail}", False

    def close(self, now: bool = False) -> None:
        """End the child: at once (``now``: one never given a case, maybe still importing), else when its
        loop ends."""
        try:
            if now:
                self.proc.kill()
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # the child's loop ends
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.err.close()


def default_jobs(cases: int) -> int:
    """Children side by side: one per two cores, at most ``MAX_JOBS`` and one per case."""
    return max(1, min(cases, MAX_JOBS, (os.cpu_count() or 1) // 2))


class Isolation:
    """The unguarded cases in child processes: ``jobs`` lanes, each a child that takes cases from one queue
    until it dies or its device is poisoned, then a fresh child (only while cases remain)."""

    def __init__(self, tokens: int, emulated: bool, jobs: int) -> None:
        self.tokens, self.emulated, self.jobs = tokens, emulated, max(1, jobs)
        self.children = 0  # started, in all
        self._lock = threading.Lock()
        self._spare = [self._spawn() for _ in range(self.jobs)]  # importing while the parent imports
        self._queue: deque[str] = deque()
        self._threads: list[threading.Thread] = []
        self.results: dict[str, tuple[str, str]] = {}

    def _spawn(self) -> _Child:
        with self._lock:
            self.children += 1
        return _Child(self.tokens, self.emulated)

    def _lane(self, child: _Child | None) -> None:
        """Take cases from the queue until it is empty; a child that cannot take another is replaced (for a case
        left, not before)."""
        try:
            while True:
                with self._lock:
                    name = self._queue.popleft() if self._queue else None
                if name is None:
                    break
                child = child or self._spawn()
                outcome, detail, alive = child.run(name, CASE_TIMEOUT_S)
                with self._lock:
                    self.results[name] = (outcome, detail)
                if not alive:
                    child.close()
                    child = None
        finally:
            if child is not None:
                child.close()

    def start(self, names: list[str]) -> None:
        """Run ``names`` (in order, over the lanes) in the background."""
        self._queue.extend(names)
        lanes = min(self.jobs, len(names))
        spare, self._spare = self._spare, []
        for child in spare[lanes:]:
            child.close(now=True)
        self._threads = [threading.Thread(target=self._lane, args=(c,), daemon=True) for c in spare[:lanes]]
        for t in self._threads:
            t.start()

    def finish(self) -> dict[str, tuple[str, str]]:
        """Wait for the cases; each case's (outcome, detail)."""
        for t in self._threads:
            t.join()
        return self.results

    def close(self) -> None:
        """Stop what is left (an early return of ``run``)."""
        with self._lock:
            self._queue.clear()
        for child in self._spare:
            child.close(now=True)
        self._spare = []
        self.finish()


def _not_applicable(ln: Any, case: Case, state: dict[str, Any] | None, version: str | None) -> str | None:
    """Why ``case`` cannot run on this sglang (None: it can)."""
    if state is None or not state.get("present"):
        return f"{case.entry} is not in sglang {version}"
    if not state.get("aiter_branch"):
        return f"{case.entry} has no aiter branch in sglang {version}"
    if not state.get("patched"):
        return f"sglang did not select {case.entry}'s aiter path here"
    if case.uses_post and "post_residual_addition" not in _original(ln, case).__code__.co_varnames:
        return f"{case.entry} takes no post_residual_addition in sglang {version}"
    return None


def run(
    tokens: int = 2048,
    emulated: bool | None = None,
    isolate: bool | None = None,
    cases: list[str] | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run the cases (all by default) unguarded and guarded; return the report (see ``format_table``).
    ``jobs``: isolated children side by side (default: :func:`default_jobs`)."""
    unknown = sorted(set(cases or ()) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; known: {sorted(BY_NAME)}")
    if tokens < 1:
        raise ValueError(f"--tokens must be at least 1 (got {tokens}); zero rows are a case of their own")
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be at least 1 (got {jobs})")
    emulated = (not real_rocm()) if emulated is None else emulated
    isolate = (not emulated) if isolate is None else isolate
    wanted = len(set(cases)) if cases else len(CASES)
    pool = Isolation(tokens, emulated, jobs or default_jobs(wanted)) if isolate else None  # importing meanwhile
    try:
        report = _run(tokens, emulated, cases, pool)
    finally:
        if pool is not None:
            pool.close()
    if pool is not None:
        report["isolation"] = {"children": pool.children, "jobs": pool.jobs}
    return report


def _run(tokens: int, emulated: bool, cases: list[str] | None, pool: Isolation | None) -> dict[str, Any]:
    from aiter_norm_guard.bootstrap import settings

    if emulated:
        from aiter_norm_guard.emulation import EmulatedRocm

        EmulatedRocm().activate()
    import aiter_norm_guard

    status = aiter_norm_guard.install(force=True)
    flag = settings.enabled()
    report: dict[str, Any] = {
        "mode": "emulated" if emulated else "device",
        "tokens": tokens,
        "cases": [],
        "guard_enabled_in_env": flag.value,
        "env_reason": flag.reason,
        "passed": False,
    }
    if status.get("error"):  # e.g. wrapt missing: sglang imported from now on would stay unguarded
        report["error"] = f"the guard cannot install in this interpreter: {status['error']}"
        return report
    try:
        import sglang.srt.layers.layernorm as ln
    except Exception as exc:
        report["error"] = f"cannot import sglang's layernorm module: {exc!r}"
        return report
    finally:
        if not emulated:
            report["device"] = device_label()
    status = aiter_norm_guard.status()
    report["sglang"] = status["sglang"]["version"]
    states = {t["name"]: t for t in status["targets"]}
    failed = [f"{t['name']}: {t['error']}" for t in status["targets"] if t.get("error")]
    if failed:
        report["error"] = f"the guard could not patch {'; '.join(failed)}"
        return report
    if not any(t["patched"] for t in status["targets"]):
        report["not_applicable"] = "this sglang has no aiter norm entry selected here: nothing to guard, nothing run"
        report["passed"] = None  # nothing ran: neither passed nor failed
        return report
    device = torch.device("cpu" if emulated else "cuda")
    skipped: list[dict[str, str]] = []
    built: list[tuple[dict[str, Any], Case, Any, CaseInputs, Any]] = []
    for case in CASES:
        if cases and case.name not in cases:
            continue
        why = _not_applicable(ln, case, states.get(case.entry), report["sglang"])
        if why is not None:
            skipped.append({"case": case.name, "entry": case.entry, "reason": why})
            continue
        row, made = _prepare(ln, case, tokens, device)
        report["cases"].append(row)
        if made is not None:
            built.append((row, case, *made))
    if pool is not None:  # the children run the unguarded calls while this process runs the guarded ones
        pool.start([case.name for _, case, *_ in built])
    for row, case, norm, inp, want in built:
        tol = tolerance(case)
        if pool is None:
            row["unguarded"], row["unguarded_detail"] = _unguarded(_original(ln, case), norm, inp, want, tol)
        _guarded(row, case, norm, inp, want, tol)
    if pool is not None:
        results = pool.finish()
        for row, case, *_ in built:
            before, detail = results.get(case.name, ("fault", "no result from the children"))
            row["unguarded"] = before
            row["unguarded_detail"] = row.get("unguarded_detail") or detail  # a guarded failure's text first
    report["not_applicable_cases"] = skipped
    report["requested"] = list(cases) if cases else None
    if not report["cases"]:
        report["not_applicable"] = "none of the requested cases applies to this sglang"
    report["passed"] = all(c["guarded"] == "ok" for c in report["cases"]) if report["cases"] else None
    return report


def _prepare(ln: Any, case: Case, tokens: int, device: torch.device) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
    """The case's report row, and its (module, inputs, forward_native's result); None where it cannot be built."""
    row: dict[str, Any] = {
        "case": case.name,
        "entry": case.entry,
        "description": case.description,
        "x": "-",
        "residual": "-",
    }
    try:  # the installed sglang's own module and reference result
        norm, inp = _build(ln, case, tokens, device)
        want = norm.forward_native(*inp.args())
    except Exception as exc:
        row.update(
            unguarded="n/a",
            guarded="fail",
            max_abs_error=None,
            unguarded_detail=f"cannot build the case here: {type(exc).__name__}: {exc}",
        )
        return row, None
    row.update(x=describe(inp.x), residual=describe(inp.residual), unguarded="n/a", unguarded_detail="")
    return row, (norm, inp, want)


def _guarded(row: dict[str, Any], case: Case, norm: Any, inp: CaseInputs, want: Any, tol: float | None) -> None:
    """The guarded call of the case into ``row``."""
    try:
        got = getattr(norm, case.entry.split(".")[1])(*inp.args())
        after, err = ("ok" if _close(got, want, tol) else "fail"), _max_err(got, want)
    except Exception as exc:
        after, err = "fail", None
        row["unguarded_detail"] = f"guarded raised {type(exc).__name__}: {exc}"
    row.update(guarded=after, max_abs_error=err)
