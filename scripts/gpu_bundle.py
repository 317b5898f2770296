"""Build ``.gpu/``: what the GPU machine needs to import real sglang releases, and nothing more.

The GPU machine (Python 3.12, torch, triton, transformers, no package registry) lacks sglang and
some of what its layernorm / communicator modules import.  For each release in GPU_RELEASES
this imports those modules here (under the emulated ROCm host, from the pinned overlay),
records every file that came from the overlay, and copies:

- sglang's own imported ``.py`` files (and its dist-info) into ``.gpu/sglang-X/``;
- third-party packages the GPU image lacks: pure-Python ones as they are, into
  ``.gpu/common/`` (one copy per version, shared by the releases); compiled ones as cp312
  wheels of the same version into ``.gpu/wheels/``;
- transformers and tokenizers at the release's own pins, as wheels into ``.gpu/wheels-X/``,
  where the image's transformers is too new for it (sglang registers configs transformers
  has since added: "'qwen3_asr' is already used by a Transformers config").

    .venv/bin/python scripts/gpu_bundle.py        # then: carry .gpu (see scripts/gpu-test.sh)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".gpu"
GPU_RELEASES = os.environ.get("GPU_RELEASES", "0.5.10 0.5.15").split()
OWN_TRANSFORMERS = os.environ.get("GPU_OWN_TRANSFORMERS", "0.5.15").split()
#: Import names the GPU image already has (its package list, /work/.library/device/KINDS.md).
ON_GPU = set(
    "aiohappyeyeballs aiohttp aiosignal anyio attr attrs certifi charset_normalizer click einops filelock "
    "frozenlist fsspec h11 hf_xet httpcore httpx huggingface_hub idna jinja2 markdown_it markupsafe mdurl "
    "multidict numpy packaging propcache psutil pygments regex requests rich safetensors sentencepiece "
    "shellingham tokenizers torch tqdm transformers triton typer typing_extensions urllib3 wrapt yaml yarl "
    "_yaml".split()
)
LIST = """
import json, sys
sys.path.insert(0, {support!r})
from aiter_norm_guard.emulation import EmulatedRocm
EmulatedRocm().activate()
import sglang.srt.layers.layernorm
import stubs
stubs.install(); stubs.platform_shims()
for name in ("sglang.srt.layers.communicator", "sglang.srt.layers.layer_boundary.residual.add_norm"):
    try:
        __import__(name)
        break
    except ImportError:
        pass
print(json.dumps(sorted({{getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}})))
"""


def imported_files(release: str) -> list[Path]:
    overlay = ROOT / ".envs" / f"sglang-{release}"
    env = {**os.environ, "PYTHONPATH": f"{overlay}{os.pathsep}{ROOT}", "AITER_NORM_GUARD": "0"}
    code = LIST.format(support=str(ROOT / "tests" / "support"))
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    files = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    qwen3 = subprocess.run(
        [sys.executable, "-W", "ignore", str(ROOT / "tests" / "support" / "fused_qwen3.py")],
        env={**env, "LIST_IMPORTED": "1", "AITER_NORM_GUARD": "1"},
        capture_output=True,
        text=True,
    )
    if qwen3.returncode == 0:  # Qwen3's decode (tests/gpu/qwen3_decode.py) imports more, some at run time
        files |= set(json.loads(qwen3.stdout.strip().splitlines()[-1]))
    prefix = str(overlay) + os.sep
    return [Path(f) for f in sorted(files) if f.startswith(prefix)]


def dist_info(overlay: Path, top: str) -> Path | None:
    """The dist-info whose RECORD lists ``top``'s files."""
    for info in overlay.glob("*.dist-info"):
        record = info / "RECORD"
        if record.exists() and any(line.startswith(f"{top}/") for line in record.read_text().splitlines()):
            return info
    return None


def copy(files: list[Path], overlay: Path, dest: Path) -> None:
    for f in files:
        if f.is_file() and f.suffix != ".pyc":
            target = dest / f.relative_to(overlay)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)


def bundle(release: str, wheels: set[str], common: dict[str, str]) -> None:
    overlay = ROOT / ".envs" / f"sglang-{release}"
    dest = OUT / f"sglang-{release}"
    tops: dict[str, list[Path]] = {}
    for f in imported_files(release):
        tops.setdefault(f.relative_to(overlay).parts[0], []).append(f)
    for top, files in sorted(tops.items()):
        info = dist_info(overlay, top)
        if top == "sglang":  # only the modules these imports need
            copy(files, overlay, dest)
            for jit in (("jit_kernel",), ("kernels", "jit")):  # these look for their folders at import
                for marker in ("include", "csrc"):
                    (dest / "sglang" / Path(*jit) / marker).mkdir(parents=True, exist_ok=True)
                    (dest / "sglang" / Path(*jit) / marker / "README").write_text("folder marker only\n")
            if info is not None:
                shutil.copytree(info, dest / info.name, dirs_exist_ok=True)
            continue
        if top.split(".")[0] in ON_GPU:
            continue
        package = overlay / top
        everything = [p for p in package.rglob("*")] if package.is_dir() else files
        if any(f.suffix == ".so" for f in everything) and info is not None:
            wheels.add(info.name.removesuffix(".dist-info").replace("-", "==", 1))
            continue
        version = info.name if info is not None else f"{top} of {release}"
        into = OUT / "common" if common.setdefault(top, version) == version else dest  # another version: per release
        copy(everything, overlay, into)
        if info is not None:
            shutil.copytree(info, into / info.name, dirs_exist_ok=True)


def download(specs: list[str], into: Path) -> None:
    tags = ("manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux_2_24", "manylinux_2_34", "manylinux_2_35")
    platforms = [f"--platform={tag}_x86_64" for tag in tags]
    for spec in specs:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version=3.12",
                "--implementation=cp",
                *platforms,
                "-d",
                str(into),
                spec,
            ],
            check=True,
        )


def pins(release: str, names: tuple[str, ...]) -> list[str]:
    lines = (ROOT / "requirements" / f"sglang-{release}.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("==")[0].strip() in names]


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    wheels: set[str] = set()
    common: dict[str, str] = {}
    for release in GPU_RELEASES:
        bundle(release, wheels, common)
    download(sorted(wheels), OUT / "wheels")
    for release in OWN_TRANSFORMERS:
        download(pins(release, ("transformers", "tokenizers")), OUT / f"wheels-{release}")
    size = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"{OUT}: {size / 2**20:.1f} MiB; wheels: {sorted(wheels)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
