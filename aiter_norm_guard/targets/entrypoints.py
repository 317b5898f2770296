"""sglang's ways of starting, as data, and whether their model processes load sglang's plugins.

sglang (>= 0.5.11) runs ``load_plugins()`` (entry-point group ``sglang.srt.plugins``) in some of
its processes, not all.  Each :class:`Way` names the processes that run the model and where a
``load_plugins()`` call would have to be for them (:class:`Site`: candidate files under the
``sglang`` package, first one that defines the function wins).  :func:`scan` reads the installed
sources with ``ast``; nothing here imports sglang.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, NamedTuple

MAIN = "<main>"  #: the module's ``if __name__ == "__main__":`` block
PLUGINS_FILE = "srt/plugins/__init__.py"
PLUGINS_MODULE = "sglang.srt.plugins"


class Site(NamedTuple):
    """A function (``Class.method``, or :data:`MAIN`) in the first of ``files`` that defines it."""

    files: tuple[str, ...]
    function: str


class Process(NamedTuple):
    """Processes that build the model; they load plugins if any site calls ``load_plugins()``.

    The first site is where sglang would call it; a missing first site is "cannot tell", unless
    ``optional`` and none of its files exist (the release has no such process).
    """

    role: str
    sites: tuple[Site, ...]
    optional: bool = False


class Way(NamedTuple):
    """One way of starting sglang: present when any of ``files`` exists."""

    name: str
    command: str
    files: tuple[str, ...]
    processes: tuple[Process, ...]
    note: str = ""


MODEL_RUNNER = Site(("srt/model_executor/model_runner.py",), "ModelRunner.__init__")
SCHEDULER = Process(
    "scheduler (one per TP/PP rank; the DP controller starts the same)",
    (Site(("srt/managers/scheduler.py",), "run_scheduler_process"),
     Site(("srt/managers/scheduler.py",), "Scheduler.__init__"), MODEL_RUNNER),
)  # fmt: skip
ONE_BATCH = ("bench_one_batch.py", "benchmark/one_batch.py")
ONE_BATCH_NEW = ("benchmark/one_batch.py",)
ENCODER = ("srt/disaggregation/encode_server.py", "srt/disaggregation/encoder/server.py")


def _one_batch(files: tuple[str, ...]) -> tuple[Process, ...]:
    return tuple(
        Process(f"model worker `{fn}` (in the benchmark process at TP 1, one child per rank above)",
                (Site(files, fn), Site(files, "load_model"), MODEL_RUNNER))
        for fn in ("latency_test", "correctness_test")
    )  # fmt: skip


WAYS: tuple[Way, ...] = (
    Way("launch_server", "python -m sglang.launch_server", ("launch_server.py",), (SCHEDULER,)),
    Way("serve", "sglang serve", ("cli/serve.py",), (SCHEDULER,)),
    Way("Engine", "sglang.Engine(...) in your code", ("srt/entrypoints/engine.py",), (SCHEDULER,)),
    Way("bench_offline_throughput", "python -m sglang.bench_offline_throughput", ("bench_offline_throughput.py",),
        (SCHEDULER,)),
    Way("benchmark.offline_throughput", "python -m sglang.benchmark.offline_throughput",
        ("benchmark/offline_throughput.py",), (SCHEDULER,)),
    Way("bench_one_batch_server", "python -m sglang.bench_one_batch_server", ("bench_one_batch_server.py",),
        (SCHEDULER,)),
    Way("benchmark.one_batch_server", "python -m sglang.benchmark.one_batch_server",
        ("benchmark/one_batch_server.py",), (SCHEDULER,)),
    Way("compile_deep_gemm", "python -m sglang.compile_deep_gemm", ("compile_deep_gemm.py",), (SCHEDULER,)),
    Way("bench_one_batch", "python -m sglang.bench_one_batch", ("bench_one_batch.py",), _one_batch(ONE_BATCH),
        "builds ModelRunner itself, without the scheduler"),
    Way("benchmark.one_batch", "python -m sglang.benchmark.one_batch", ONE_BATCH_NEW, _one_batch(ONE_BATCH_NEW),
        "builds ModelRunner itself, without the scheduler"),
    Way("use_ray", "--use-ray (RayEngine, Ray scheduler actors)", ("srt/ray/scheduler_actor.py",),
        (Process("Ray scheduler actor (in Ray's worker processes)",
                 (Site(("srt/ray/scheduler_actor.py",), "SchedulerActor.__init__"),
                  Site(("srt/managers/scheduler.py",), "Scheduler.__init__"), MODEL_RUNNER)),),
        "Ray's workers get the environment of the process that started the Ray cluster"),
    Way("encoder_only", "--encoder-only (EPD encoder server)", ENCODER,
        (Process("encoder TP ranks >= 1", (Site(ENCODER, "launch_encoder"), Site(ENCODER, "MMEncoder.__init__"))),
         Process("encoder DP workers", (Site(("srt/disaggregation/encoder/runtime.py",), "launch_dp_worker"),
                                        Site(ENCODER, "MMEncoder.__init__")), optional=True)),
        "rank 0 is the launching process, which loads plugins where launch_server / serve do"),
)  # fmt: skip


def _is_main_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")  # fmt: skip


def find(body: list[ast.stmt], parts: list[str]) -> ast.AST | None:
    """The def or class ``parts`` (a qualname split on dots) in ``body``, also under if / try."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == parts[0]:
            return node if len(parts) == 1 else find(node.body, parts[1:])
        if isinstance(node, (ast.If, ast.Try)) and not _is_main_block(node):
            nested = [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            nested += [s for h in getattr(node, "handlers", []) for s in h.body]
            found = find(nested, parts)
            if found is not None:
                return found
    return None


def direct_calls(node: ast.AST, name: str = "load_plugins") -> list[int]:
    """Lines of calls of ``name`` (plain or as an attribute) in ``node``, not inside nested defs."""
    lines, stack = [], list(ast.iter_child_nodes(node))
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(n, ast.Call):
            f = n.func
            if (f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)) == name:
                lines.append(n.lineno)
        stack.extend(ast.iter_child_nodes(n))
    return sorted(lines)


def binds_load_plugins(tree: ast.AST) -> bool:
    """Whether the file imports ``load_plugins`` (or the module) from ``sglang.srt.plugins``."""
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            if n.module == PLUGINS_MODULE and any(a.name == "load_plugins" for a in n.names):
                return True
            if n.module == "sglang.srt" and any(a.name == "plugins" for a in n.names):
                return True
        if isinstance(n, ast.Import) and any(a.name == PLUGINS_MODULE for a in n.names):
            return True
    return False


class _Sources:
    """Parsed files under one package root, each read once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trees: dict[str, ast.Module | str] = {}

    def tree(self, rel: str) -> ast.Module | str:
        """The parsed file, or the reason it cannot be read ("absent" if there is no such file)."""
        if rel not in self.trees:
            path = self.root / rel
            try:
                self.trees[rel] = ast.parse(path.read_text(encoding="utf-8"), str(path))
            except FileNotFoundError:
                self.trees[rel] = "absent"
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
                self.trees[rel] = f"cannot read {path}: {type(exc).__name__}: {exc}"
        return self.trees[rel]

    def site(self, site: Site) -> dict[str, Any]:
        """Where ``site`` is defined and its ``load_plugins()`` lines (``calls`` None: not found)."""
        errors = []
        for rel in site.files:
            tree = self.tree(rel)
            if isinstance(tree, str):
                if tree != "absent":
                    errors.append(tree)
                continue
            if site.function == MAIN:
                lines = [ln for node in tree.body if _is_main_block(node) for ln in direct_calls(node)]
                found = any(_is_main_block(node) for node in tree.body)
            else:
                node = find(tree.body, site.function.split("."))
                found, lines = node is not None, direct_calls(node) if node is not None else []
            if found:
                calls = bool(lines) and binds_load_plugins(tree)
                return {"where": f"{rel}:{site.function}", "calls": calls, "lines": lines if calls else []}
        return {"where": f"{'|'.join(site.files)}:{site.function}", "calls": None,
                "error": errors[0] if errors else "not found"}  # fmt: skip


def _process(src: _Sources, proc: Process) -> dict[str, Any] | None:
    if proc.optional and all(src.tree(f) == "absent" for f in proc.sites[0].files):
        return None
    sites = [src.site(s) for s in proc.sites]
    if any(s["calls"] for s in sites):
        loads: bool | None = True
    else:
        loads = None if sites[0]["calls"] is None else False
    evidence = [s for s in sites if s["calls"]] or sites[:1]
    return {"role": proc.role, "loads_plugins": loads, "evidence": evidence}


def plugin_system(root: Path) -> dict[str, Any]:
    """sglang's plugin loader: present?, the entry-point group it runs, the filter variable it reads."""
    src = _Sources(root)
    tree = src.tree(PLUGINS_FILE)
    if isinstance(tree, str):
        return {"present": False, "group": None, "reads_SGLANG_PLUGINS": False,
                **({} if tree == "absent" else {"error": tree})}  # fmt: skip
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
              for t in n.targets if isinstance(t, ast.Name)}  # fmt: skip
    present = find(tree.body, ["load_plugins"]) is not None
    names = {n.value if isinstance(n, ast.Constant) else n.attr for n in ast.walk(tree)
             if isinstance(n, ast.Attribute) or (isinstance(n, ast.Constant) and isinstance(n.value, str))}  # fmt: skip
    return {"present": present, "group": consts.get("GENERAL_PLUGINS_GROUP"),
            "reads_SGLANG_PLUGINS": "SGLANG_PLUGINS" in names}  # fmt: skip


def scan(root: Path, ways: tuple[Way, ...] = WAYS) -> list[dict[str, Any]]:
    """Per way of starting present under ``root`` (sglang's package directory): do its model
    processes call ``load_plugins()``?  ``loads_plugins``: True, False, or None (cannot tell)."""
    src = _Sources(root)
    out = []
    for way in ways:
        if all(src.tree(f) == "absent" for f in way.files):
            continue
        procs = [p for p in (_process(src, proc) for proc in way.processes) if p is not None]
        flags = [p["loads_plugins"] for p in procs]
        loads = False if False in flags else (None if None in flags or not flags else True)
        out.append({"name": way.name, "command": way.command, "loads_plugins": loads, "processes": procs,
                    "note": way.note})  # fmt: skip
    return out
