"""install / uninstall / first import of sglang's layernorm from many threads, then calls from many threads."""

from __future__ import annotations

import json
from typing import Any

from conftest import run_python


def churn(threads: int, rounds: int, when: str, then: str) -> str:
    """Code: ``threads`` threads from one barrier, each ``rounds`` times doing ``then`` where ``when`` (of ``i``,
    the thread, and ``j``, the round), else installing or uninstalling the guard; ``errors`` and ``hung`` after."""
    return f"""
errors = []
barrier = threading.Barrier({threads})
def churn(i):
    try:
        barrier.wait()
        for j in range({rounds}):
            if {when}:
                {then}
            elif (i + j) % 2:
                aiter_norm_guard.install(force=True)
            else:
                aiter_norm_guard.uninstall()
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=churn, args=(i,)) for i in range({threads})]
for t in threads: t.start()
for t in threads: t.join(120)
hung = sum(t.is_alive() for t in threads)
"""


CODE = (
    """
import json, random, threading, torch
from aiter_norm_guard.emulation import EmulatedRocm
EmulatedRocm().activate()
import aiter_norm_guard
from aiter_norm_guard.guard.guard import original_of
"""
    + churn(12, 20, "i % 3 == 0", "import sglang.srt.layers.layernorm")
    + """aiter_norm_guard.install(force=True)
import sglang.srt.layers.layernorm as ln
fn = ln.RMSNorm.__dict__["forward_aiter"]
original = original_of(fn)
one_wrapper = original is not None and original_of(original) is None

norm = ln.RMSNorm(128).to(torch.bfloat16)
results = []
def call(i):
    q = torch.randn(256, 6144, dtype=torch.bfloat16)[:, :4096].view(256, 32, 128)
    for _ in range(5):
        results.append(bool(torch.equal(norm(q), norm.forward_native(q))))
callers = [threading.Thread(target=call, args=(i,)) for i in range(8)]
for t in callers: t.start()
for t in callers: t.join(120)
print(json.dumps({"errors": errors, "hung": hung + sum(t.is_alive() for t in callers), "one_wrapper": one_wrapper,
                  "calls_ok": sum(results), "calls": len(results)}))
"""
)


def test_threads_install_uninstall_import_and_call(layernorm: Any) -> None:
    proc = run_python(CODE, timeout=300)  # bounded: a deadlock fails the test instead of hanging it
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"errors": [], "hung": 0, "one_wrapper": True, "calls_ok": 40, "calls": 40}


FORK_WITH_A_HELD_LOCK = """
import json, os, threading, time
import aiter_norm_guard
from aiter_norm_guard import _log
from aiter_norm_guard.bootstrap import api
from aiter_norm_guard.guard import interventions, registry
from aiter_norm_guard.install.patcher import PATCHER

def held(get):
    ready = threading.Event()
    def hold():
        with get():  # another thread inside the guard (a post-import hook patching, a first log line) at the fork
            ready.set(); time.sleep(2)
    threading.Thread(target=hold, daemon=True).start(); ready.wait()

out = {}
for name, get, use in [
    ("patcher", lambda: PATCHER._lock, lambda: aiter_norm_guard.status()),
    ("log", lambda: _log._lock, lambda: _log.log_once("fork-probe", 10, "probe")),
    ("registry", lambda: registry._lock, lambda: registry.register(len, object())),
    ("api", lambda: api._lock, lambda: api.activate("api", force=True)),
    ("interventions", lambda: interventions._lock, lambda: interventions.record("Fork.probe", "zero rows")),
]:
    held(get)
    pid = os.fork()
    if pid == 0:
        use(); os._exit(0)
    deadline = time.time() + 20
    while time.time() < deadline and not os.waitpid(pid, os.WNOHANG)[0]:
        time.sleep(0.05)
    else:
        if time.time() >= deadline:
            os.kill(pid, 9); os.waitpid(pid, 0)
    out[name] = time.time() < deadline
print(json.dumps(out))
"""


def test_a_fork_while_another_thread_holds_a_guard_lock_does_not_hang_the_child() -> None:
    proc = run_python(FORK_WITH_A_HELD_LOCK, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == dict.fromkeys(("patcher", "log", "registry", "api", "interventions"), True)


NESTED_FORGET = """
import json
from aiter_norm_guard import _state
from aiter_norm_guard.guard import registry

class Guard:  # what the registry keeps per function: its original, and whether it is on
    def __init__(self, original):
        self.original, self.enabled = original, True

def inner(): pass
def outer(): pass
registry.register(inner, Guard(None))
registry.register(outer, Guard(inner))  # a guard over a guarded function (a wrapper over ours, wrapped again)
before = len(_state.GUARDS)
del inner  # alive through outer's guard
del outer  # outer's forget drops its guard, that drops inner: inner's forget runs inside outer's
print(json.dumps({"before": before, "after": len(_state.GUARDS)}))
"""

EXIT_WITH_GUARDS_ALIVE = """
import torch
from aiter_norm_guard.emulation import EmulatedRocm
EmulatedRocm().activate()
import sglang.srt.layers.layernorm as ln
import aiter_norm_guard
norm = ln.RMSNorm(128).to(torch.bfloat16)
print(tuple(norm(torch.randn(4, 2, 128, dtype=torch.bfloat16)).shape))
"""


def test_a_guard_dropped_inside_another_guards_forget_does_not_deadlock() -> None:
    proc = run_python(NESTED_FORGET, timeout=60)  # bounded: a self-deadlock fails instead of hanging
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"before": 2, "after": 0}


def test_the_interpreter_exits_with_guarded_entries_alive(layernorm: Any) -> None:
    """At shutdown the registry's weakref callbacks run with the builtins gone: none may leave a lock held."""
    proc = run_python(EXIT_WITH_GUARDS_ALIVE, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "(4, 2, 128)"


RELOADS = (
    """
import importlib, json, threading, torch
from wrapt import importer
from aiter_norm_guard.emulation import EmulatedRocm
EmulatedRocm().activate()
import aiter_norm_guard
import sglang.srt.layers.layernorm as ln
from aiter_norm_guard.guard.guard import original_of
"""
    + churn(6, 5, "i < 3", "importlib.reload(ln)")
    + """aiter_norm_guard.install(force=True)
importlib.reload(ln)  # the hook re-armed itself through every reload above: this one is seen too
fn = ln.RMSNorm.__dict__["forward_aiter"]
norm = ln.RMSNorm(128).to(torch.bfloat16)
q = torch.randn(64, 6144, dtype=torch.bfloat16)[:, :4096].view(64, 32, 128)
print(json.dumps({"errors": errors, "hung": hung, "filed": len(importer._post_import_hooks.get(ln.__name__, ())),
                  "one_wrapper": original_of(original_of(fn) or fn) is None and original_of(fn) is not None,
                  "guarded": bool(torch.equal(norm(q), norm.forward_native(q)))}))
"""
)


def test_reloads_racing_install_and_uninstall_leave_one_armed_hook_and_a_guard(layernorm: Any) -> None:
    """Each fire files the hook again once: no pile-up of hooks, and the last reload is still guarded."""
    proc = run_python(RELOADS, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"errors": [], "hung": 0, "filed": 1, "one_wrapper": True, "guarded": True}
