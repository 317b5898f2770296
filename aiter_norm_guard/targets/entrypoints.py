"""sglang's ways of starting, as data, and which plugins their model processes load.

sglang runs ``load_plugins()`` in some of its processes, not all: the srt runtime (>= 0.5.11)
loads entry-point group ``sglang.srt.plugins``, the diffusion runtime (>= 0.5.21) its own
group.  Each :class:`Way` names the processes that build the model, where a ``load_plugins()``
call would be (:class:`Site`: candidate files under the ``sglang`` package, first one that
defines the function wins) and the launching process's own sites (what a plugin sets there,
its children inherit).  :func:`scan` reads the installed sources with ``ast``; no sglang import.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, NamedTuple

from aiter_norm_guard.targets import source_scan

MAIN = "<main>"  #: the module's ``if __name__ == "__main__":`` block
PLUGINS_FILE = "srt/plugins/__init__.py"


class Site(NamedTuple):
    """A function (``Class.method``, or :data:`MAIN`) in the first of ``files`` that defines it."""

    files: tuple[str, ...]
    function: str


class Process(NamedTuple):
    """Processes that build the model; they load plugins if any site calls ``load_plugins()``.

    None of the sites found is "cannot tell", unless ``optional`` and none of the first site's
    files exist (no such process in this release).  ``inherits``: started with the launching
    process's environment (Ray's actors need not be).
    """

    role: str
    sites: tuple[Site, ...]
    optional: bool = False
    inherits: bool = True


class Way(NamedTuple):
    """One way of starting sglang: present when any of ``files`` and all of ``needs`` exist."""

    name: str
    command: str
    files: tuple[str, ...]
    processes: tuple[Process, ...]
    launcher: tuple[Site, ...] = ()
    runtime: str = "srt"  # or "diffusion": which entries it runs
    needs: tuple[str, ...] = ()
    note: str = ""


RUNNER = Site(("srt/model_executor/model_runner.py",), "ModelRunner.__init__")
SCHED = "srt/managers/scheduler.py"
SCHED_INIT = Site((SCHED,), "Scheduler.__init__")
SCHEDULER = Process(
    "scheduler (one per TP/PP rank; the DP controller starts the same)",
    (Site((SCHED,), "run_scheduler_process"), SCHED_INIT, RUNNER),
)
LAUNCH, SERVE = Site(("launch_server.py",), MAIN), Site(("cli/serve.py",), "serve")
ENGINE = Site(("srt/entrypoints/engine.py",), "Engine.__init__")
ONE_BATCH, ONE_BATCH_NEW = ("bench_one_batch.py", "benchmark/one_batch.py"), ("benchmark/one_batch.py",)
ENCODER = ("srt/disaggregation/encode_server.py", "srt/disaggregation/encoder/server.py")
MM = "multimodal_gen/runtime/"
DIFFUSION = (
    Process(
        "diffusion worker (one per GPU)",
        (
            Site((MM + "managers/worker_bootstrap.py",), "bootstrap_scheduler_process"),
            Site((MM + "managers/gpu_worker.py",), "run_scheduler_process"),
        ),
    ),
)


def _one_batch(files: tuple[str, ...]) -> tuple[Process, ...]:
    return tuple(
        Process(
            f"model worker `{fn}` (the benchmark process at TP 1, one child per rank above)",
            (Site(files, fn), Site(files, "load_model"), RUNNER),
        )
        for fn in ("latency_test", "correctness_test")
    )


def _module(module: str, processes: tuple[Process, ...], launcher: tuple[Site, ...] = (), **kw: Any) -> Way:
    """A way that is ``python -m sglang.MODULE``: named by its module, present where its file is."""
    path = module.replace(".", "/") + ".py"
    return Way(module, f"python -m sglang.{module}", (path,), processes, launcher, **kw)


ONE_BATCH_NOTE = "builds ModelRunner itself, without the scheduler"
WAYS: tuple[Way, ...] = (
    _module("launch_server", (SCHEDULER,), (LAUNCH,)),
    Way("serve", "sglang serve", ("cli/serve.py",), (SCHEDULER,), (SERVE,)),
    Way("Engine", "sglang.Engine(...) in your code", ("srt/entrypoints/engine.py",), (SCHEDULER,), (ENGINE,)),
    _module("bench_offline_throughput", (SCHEDULER,), (ENGINE,)),
    _module("benchmark.offline_throughput", (SCHEDULER,), (ENGINE,)),
    _module("bench_one_batch_server", (SCHEDULER,)),
    _module("benchmark.one_batch_server", (SCHEDULER,)),
    _module("compile_deep_gemm", (SCHEDULER,)),
    _module("bench_one_batch", _one_batch(ONE_BATCH), note=ONE_BATCH_NOTE),
    _module("benchmark.one_batch", _one_batch(ONE_BATCH_NEW), note=ONE_BATCH_NOTE),
    Way(
        "use_ray",
        "--use-ray (RayEngine, Ray scheduler actors)",
        ("srt/ray/scheduler_actor.py",),
        (
            Process(
                "Ray scheduler actor (in Ray's worker processes)",
                (Site(("srt/ray/scheduler_actor.py",), "SchedulerActor.__init__"), SCHED_INIT, RUNNER),
                inherits=False,
            ),
        ),
        (ENGINE,),
        note="Ray's workers get the environment of whoever started the Ray cluster",
    ),
    Way(
        "encoder_only",
        "--encoder-only (EPD encoder server; rank 0 runs in the launching process)",
        ENCODER,
        (
            Process("encoder TP ranks >= 1", (Site(ENCODER, "launch_encoder"), Site(ENCODER, "MMEncoder.__init__"))),
            Process(
                "encoder DP workers",
                (
                    Site(("srt/disaggregation/encoder/runtime.py",), "launch_dp_worker"),
                    Site(ENCODER, "MMEncoder.__init__"),
                ),
                optional=True,
            ),
        ),
        (LAUNCH, SERVE),
    ),
    Way(
        "serve (diffusion model)",
        "sglang serve --model-path <diffusion model>",
        ("cli/serve.py",),
        DIFFUSION,
        (SERVE,),
        "diffusion",
        (MM + "launch_server.py",),
    ),
    Way(
        "generate (diffusion model)",
        "sglang generate",
        ("cli/generate.py",),
        DIFFUSION,
        (Site(("cli/generate.py",), "generate"),),
        "diffusion",
        (MM + "launch_server.py",),
    ),
    Way(
        "multimodal_gen.launch_server",
        "python -m sglang.multimodal_gen.runtime.launch_server",
        (MM + "launch_server.py",),
        DIFFUSION,
        (Site((MM + "launch_server.py",), MAIN),),
        "diffusion",
    ),
)


def _is_main_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
    )


def find(body: list[ast.stmt], parts: list[str]) -> ast.AST | None:
    """The def or class ``parts`` (a qualname split on dots) in ``body``, also under if / try."""
    nodes = source_scan.statements(body, lambda node: not _is_main_block(node))
    node = next((n for n in nodes if isinstance(n, source_scan.DEFS) and n.name == parts[0]), None)
    return node if node is None or len(parts) == 1 else find(node.body, parts[1:])


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


def loader_modules(tree: ast.AST) -> list[str]:
    """The sglang modules this file takes ``load_plugins`` from (``from M import load_plugins``, ``import M``)."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("sglang."):
            out += [n.module for a in n.names if a.name == "load_plugins"]
            out += [f"{n.module}.plugins" for a in n.names if a.name == "plugins"]
        elif isinstance(n, ast.Import):
            out += [a.name for a in n.names if a.name.startswith("sglang.") and a.name.endswith(".plugins")]
    return list(dict.fromkeys(out))


def _constants(tree: ast.Module) -> dict[str, Any]:
    return {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name)
    }


class _Sources:
    """Parsed files under one package root, each read once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trees: dict[str, ast.Module | str] = {}

    def tree(self, rel: str) -> ast.Module | str:
        """The parsed file, or why it cannot be read ("absent" if there is no such file)."""
        if rel not in self.trees:
            self.trees[rel] = source_scan.read(self.root / rel, named=True)
        return self.trees[rel]

    def exists(self, rel: str) -> bool:
        return self.tree(rel) != source_scan.ABSENT

    def group(self, module: str) -> str | None:
        """``GENERAL_PLUGINS_GROUP`` of the loader module ``sglang.X.Y`` (None: not a plugin loader)."""
        rel = "/".join(module.split(".")[1:])
        for cand in (f"{rel}.py", f"{rel}/__init__.py"):
            tree = self.tree(cand)
            if not isinstance(tree, str):
                group = _constants(tree).get("GENERAL_PLUGINS_GROUP")
                return group if isinstance(group, str) else None
        return None

    def site(self, site: Site) -> dict[str, Any]:
        """Where ``site`` is, its ``load_plugins()`` lines and the groups they load (``calls`` None: not found)."""
        errors = []
        for rel in site.files:
            tree = self.tree(rel)
            if isinstance(tree, str):
                errors += [] if tree == source_scan.ABSENT else [tree]
                continue
            if site.function == MAIN:
                nodes = [n for n in tree.body if _is_main_block(n)]
            else:
                nodes = [n for n in [find(tree.body, site.function.split("."))] if n is not None]
            if not nodes:
                continue
            lines = sorted(line for node in nodes for line in direct_calls(node))
            groups = [g for g in (self.group(m) for m in loader_modules(tree)) if g] if lines else []
            return {
                "where": f"{rel}:{site.function}",
                "calls": bool(groups),
                "lines": lines if groups else [],
                "groups": groups,
            }
        return {
            "where": f"{'|'.join(site.files)}:{site.function}",
            "calls": None,
            "lines": [],
            "groups": [],
            "error": errors[0] if errors else "not found",
        }

    def sites(self, sites: tuple[Site, ...]) -> dict[str, Any]:
        """Any of ``sites`` calling ``load_plugins()``: loads (None: none found), the groups, the evidence."""
        found = [self.site(s) for s in sites]
        calling = [s for s in found if s["calls"]]
        loads = True if calling else (None if all(s["calls"] is None for s in found) else False)
        evidence = calling or [s for s in found if s["calls"] is not None][:1] or found[:1]
        groups = list(dict.fromkeys(g for s in calling for g in s["groups"]))
        return {"loads_plugins": loads, "groups": groups, "evidence": evidence}


def plugin_system(root: Path) -> dict[str, Any]:
    """sglang's srt plugin loader: present?, the entry-point group it runs, the filter variable it reads."""
    tree = _Sources(root).tree(PLUGINS_FILE)
    if isinstance(tree, str):
        error = {} if tree == source_scan.ABSENT else {"error": tree}
        return {"present": False, "group": None, "reads_SGLANG_PLUGINS": False, **error}
    names = {
        n.value if isinstance(n, ast.Constant) else n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) or (isinstance(n, ast.Constant) and isinstance(n.value, str))
    }
    return {
        "present": find(tree.body, ["load_plugins"]) is not None,
        "reads_SGLANG_PLUGINS": "SGLANG_PLUGINS" in names,
        "group": _constants(tree).get("GENERAL_PLUGINS_GROUP"),
    }


def scan(root: Path, ways: tuple[Way, ...] = WAYS) -> list[dict[str, Any]]:
    """Per way of starting present under ``root`` (sglang's package directory): which plugin groups its
    model processes load (``loads_plugins``: True, False, None for cannot tell), and its launching process."""
    src, out = _Sources(root), []
    for way in ways:
        if not any(src.exists(f) for f in way.files) or not all(src.exists(f) for f in way.needs):
            continue
        procs = []
        for p in way.processes:
            if p.optional and not any(src.exists(f) for f in p.sites[0].files):
                continue
            procs.append({"role": p.role, "inherits": p.inherits, **src.sites(p.sites)})
        flags = [p["loads_plugins"] for p in procs]
        loads = False if False in flags else (None if None in flags or not flags else True)
        launcher = src.sites(way.launcher) if way.launcher else {"loads_plugins": False, "groups": [], "evidence": []}
        out.append(
            {
                "name": way.name,
                "command": way.command,
                "runtime": way.runtime,
                "loads_plugins": loads,
                "processes": procs,
                "launcher": launcher,
                "note": way.note,
            }
        )
    return out
