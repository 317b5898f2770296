"""Injected into every Python process of a way-of-starting test (``PYTHONPATH``); not a test module.

Stubs the named missing modules (``WAYS_STUB``: top-level names, CPU-only machines lack them),
records whether sglang's ``load_plugins()`` ran, and where the process would build the model
(``Scheduler.__init__``, ``ModelRunner.__init__``) writes ``WAYS_REPORT/<pid>.json`` (was the
guard installed in this process, how it came) and ends the process: the model itself is not needed.
"""

import importlib.abc
import importlib.machinery
import json
import os
import sys
from unittest import mock

STUB = set(filter(None, os.environ.get("WAYS_STUB", "").split(",")))
MODELS = set(filter(None, os.environ.get("WAYS_STUB_MODELS", "").split(",")))  # their classes: pydantic models
REPORT = os.environ.get("WAYS_REPORT")
PLUGINS_RAN: list = []


class _Stub(mock.MagicMock):
    """A stand-in module (MODELS: capitalised names are classes pydantic accepts), the rest mocks."""

    def __getattr__(self, name):
        if name[:1].isupper() and not name.isupper() and str(self.__name__).split(".")[0] in MODELS:
            import pydantic

            cls = type(name, (pydantic.BaseModel,), {"model_config": pydantic.ConfigDict(extra="allow")})
            setattr(self, name, cls)
            return cls
        return super().__getattr__(name)


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        module = _Stub(name=spec.name)
        module.__path__, module.__spec__, module.__name__ = [], spec, spec.name
        return module

    def exec_module(self, module):
        if module.__name__ == "uvloop":
            import asyncio

            module.EventLoopPolicy = asyncio.DefaultEventLoopPolicy
            module.install = lambda: None
            module.new_event_loop = asyncio.new_event_loop


def _report(point):
    guard = sys.modules.get("aiter_norm_guard")
    status = guard.status() if guard is not None else None
    data = {
        "pid": os.getpid(),
        "argv": sys.argv,
        "point": point,
        "load_plugins_ran": bool(PLUGINS_RAN),
        "guard_installed": bool(status and status["installed"] and not status["error"]),
        "sources": status["sources"] if status else [],
        "error": status["error"] if status else None,
    }
    with open(os.path.join(REPORT, f"{os.getpid()}.json"), "w") as f:
        json.dump(data, f)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _wrap_init(cls, point):
    def __init__(self, *args, **kwargs):
        _report(point)

    cls.__init__ = __init__


def _patch(module):
    name = module.__name__
    if name == "sglang.srt.plugins":
        original = module.load_plugins

        def load_plugins(*args, **kwargs):
            PLUGINS_RAN.append(True)
            return original(*args, **kwargs)

        module.load_plugins = load_plugins
    elif name == "sglang.srt.managers.scheduler":
        _wrap_init(module.Scheduler, "Scheduler.__init__")
    elif name == "sglang.srt.model_executor.model_runner":
        _wrap_init(module.ModelRunner, "ModelRunner.__init__")


WATCH = ("sglang.srt.plugins", "sglang.srt.managers.scheduler", "sglang.srt.model_executor.model_runner")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        missing = (
            importlib.machinery.PathFinder.find_spec(name, path) is None
            if top == name
            else isinstance(sys.modules.get(top), _Stub)
        )
        if top in STUB and missing:  # only what this interpreter cannot import
            return importlib.machinery.ModuleSpec(name, _StubLoader(), is_package=True)
        if name not in WATCH:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if REPORT:
    sys.meta_path.insert(0, _Finder())
