"""Every aiter normalization call site in released sglang, as data: where its aiter call is, guarded here, or why not.

Read from the released wheels 0.5.10 - 0.5.23 (every ``import aiter`` / ``from aiter...`` and
every use of an aiter norm kernel).  Each row says where the call is (:class:`AiterCall`: the
file under sglang's package directory and the kernel as the source reaches it), and
:func:`present` finds it in an installed sglang's source (``ast``, nothing imported): a row is
in a release where its call is, not where its file is.  ``guards``: the target table's entries
that cover the site; ``switch``: what turns it on.  The README's table is :func:`markdown`'s, and
``doctor`` lists :func:`present`'s verdict per row; a test keeps this table, the README, the
target table and every pinned release's source in agreement.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, NamedTuple

from aiter_norm_guard.targets import source_scan

GUARDED = "guarded"
RELEASE_CHECKS = "checked by sglang itself"
NOT_GUARDED = "not guarded"

IMPORTED = "imported"  #: ``from aiter... import NAME`` (or ``import aiter`` and ``aiter.NAME``), that name then used
METHOD = "method"  #: ``obj.NAME(...)``: a method of an aiter object the code holds (the custom all-reduce)
ATTRIBUTE = "attribute"  #: ``module.NAME`` read from an aiter module loaded by its name (``importlib``)


class AiterCall(NamedTuple):
    """Where a row's aiter call is in a release: one file, the kernel as that file reaches it.

    ``file``: the path under sglang's package directory (``srt/layers/layernorm.py``).
    ``names``: aiter's names for the kernel(s), as the source writes them at the ``how``:
    :data:`IMPORTED` (what it imports from aiter: the alias it binds must then be used, called or
    handed on, inside ``scope``), :data:`METHOD` (the method called), :data:`ATTRIBUTE` (the
    attribute read).  ``scope``: the function or ``Class.method`` the use must be in (``""``: anywhere
    in the file); ``aiter_branch``: only in the code that runs where aiter is selected
    (:func:`source_scan.aiter_branch`, for a method that calls the same names on another path).
    """

    file: str
    names: tuple[str, ...]
    how: str = IMPORTED
    scope: str = ""
    aiter_branch: bool = False


class CallSite(NamedTuple):
    site: str
    calls: tuple[AiterCall, ...]
    since: str
    until: str | None  #: the last release with the call; None: still in the newest read
    kernel: str
    switch: str
    status: str
    guards: tuple[str, ...] = ()
    why: str = ""
    note: str = ""  #: more on the releases (a file that moved, a part that came later)

    @property
    def releases(self) -> str:
        span = (
            f"{self.since}+"
            if self.until is None
            else (self.since if self.until == self.since else f"{self.since} - {self.until}")
        )
        return f"{span} ({self.note})" if self.note else span

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.file for c in self.calls))


def _at(files: str | tuple[str, ...], *names: str, how: str = IMPORTED, **where: Any) -> tuple[AiterCall, ...]:
    """The same aiter call (``names``, reached as ``how``; ``where``: its scope) in each of ``files``."""
    return tuple(AiterCall(f, names, how, **where) for f in ((files,) if isinstance(files, str) else files))


def _site(
    site: str,
    calls: tuple[AiterCall, ...],
    since: str,
    switch: str,
    *,
    kernel: str = "",
    until: str | None = None,
    guards: tuple[str, ...] = (),
    why: str = "",
    status: str = "",
    note: str = "",
) -> CallSite:
    """A row; ``kernel``: by default the aiter names its calls reach; ``status``: by default guarded where the row
    has ``guards``, else checked by sglang itself."""
    kernel = kernel or ", ".join(dict.fromkeys(n for c in calls for n in c.names))
    status = status or (GUARDED if guards else RELEASE_CHECKS)
    return CallSite(site, calls, since, until, kernel, switch, status, guards, why, note)


_LN = "srt/layers/layernorm.py"
_COMM, _ADD_NORM = "srt/layers/communicator.py", "srt/layers/layer_boundary/residual/add_norm.py"
_FWD = "srt/models/deepseek_common/attention_forward_methods/"
_DSV4 = "srt/models/deepseek_v4.py"
_QUANTS = ("fused_rms_fp8_group_quant", "fused_rms_mxfp4_quant")
_AR = ("custom_fused_ar_rms", "fused_ar_rms", "custom_fused_ar_rms_per_group_quant", "fused_ar_rms_per_group_quant")
_BOUNDARY = ("communicator", "add_norm", "forward_mha", "forward_mha_rocm", "forward_mla", "forward_mla_rocm")
_MHC = ("srt/models/deepseek_common/amd/deepseek_v4_fused_mhc.py", "srt/models/deepseek_v4_mhc.py")
_QWEN3 = ("fused_qk_norm_mrope_3d_cache_pts_quant_shuffle", "fused_qk_norm_rope_cache_pts_quant_shuffle")

CALL_SITES: tuple[CallSite, ...] = (
    _site(
        "RMSNorm.forward_aiter (and its x_pad path)",
        _at(_LN, "rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add", "rms_norm", scope="RMSNorm.forward_aiter")
        + _at(_LN, "fused_add_rmsnorm_pad", scope="RMSNorm"),
        "0.4.7",
        "SGLANG_USE_AITER=1",
        kernel="rmsnorm2d_fwd(_with_add); Triton fused_add_rmsnorm_pad; gfx1250: Triton rms_norm",
        guards=("RMSNorm.forward_aiter",),
        note="x_pad path from 0.5.13",
    ),
    _site(
        "GemmaRMSNorm.forward_hip, aiter branch",
        _at(_LN, "rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add", scope="GemmaRMSNorm.forward_hip", aiter_branch=True),
        "0.5.10",
        "SGLANG_USE_AITER=1",
        kernel="rmsnorm2d_fwd(_with_add) on weight + 1",
        until="0.5.15",
        guards=("GemmaRMSNorm.forward_hip",),
    ),
    _site(
        "LayerNorm.forward_hip",
        _at(_LN, "layernorm2d_fwd", scope="LayerNorm.forward_hip"),
        "0.5.11",
        "SGLANG_USE_AITER=1",
        guards=("LayerNorm.forward_hip",),
    ),
    _site(
        "_fused_rmsnorm_fp8_per_token_quant",
        _at((_COMM, _ADD_NORM), "rmsnorm_quant", "add_rmsnorm_quant"),
        "0.5.11",
        "fp8 per-token W8A8 (GLM-4-MoE)",
        kernel="rmsnorm_quant / add_rmsnorm_quant; gfx1250: Triton group quant",
        guards=("communicator._fused_rmsnorm_fp8_per_token_quant", "add_norm._fused_rmsnorm_fp8_per_token_quant"),
        note="add_norm.py from 0.5.21",
    ),
    _site(
        "all-reduce + RMSNorm: GroupCoordinator.fused_allreduce_rmsnorm(_quant_per_group)",
        _at("srt/distributed/parallel_state.py", *_AR, how=METHOD),
        "0.5.10",
        "--enable-aiter-allreduce-fusion, TP > 1 (GLM-5: on by itself from 0.5.21)",
        kernel="custom all-reduce fused_allreduce_rmsnorm",
        guards=("GroupCoordinator.fused_allreduce_rmsnorm", "GroupCoordinator.fused_allreduce_rmsnorm_quant_per_group"),
        note="per-group quant 0.5.17+",
    ),
    _site(
        "MLA fused q / k RMSNorm: fused_qk_rmsnorm_bf16",
        _at((_FWD + "forward_mla.py", _FWD + "forward_mla_rocm.py"), "fused_qk_rmsnorm"),
        "0.5.11",
        "SGLANG_USE_AITER=1, any MLA model (DeepSeek, Kimi, GLM-4.7-Flash, GLM-5)",
        guards=("forward_mla.fused_qk_rmsnorm_bf16", "forward_mla_rocm.fused_qk_rmsnorm_bf16"),
        note="forward_mla_rocm.py from 0.5.18",
    ),
    _site(
        "Triton fused (add +) RMSNorm + quant at the layer boundary and in MLA / MHA prepare",
        _at((_COMM, _ADD_NORM, *(f"{_FWD}{m}.py" for m in _BOUNDARY[2:])), *_QUANTS),
        "0.5.10",
        "gfx95 with fp8 or mxfp4 weights",
        guards=tuple(f"{m}.{a}" for m in _BOUNDARY for a in _QUANTS),
        note="add_norm.py from 0.5.21, *_rocm.py from 0.5.18",
    ),
    _site(
        "DeepSeek-V4 _fused_rmsnorm_fp8_quant",
        _at(_DSV4, "fused_rms_fp8_group_quant"),
        "0.5.13",
        "DeepSeek-V4 on gfx95 / gfx1250",
        guards=("deepseek_v4.fused_rms_fp8_group_quant",),
    ),
    _site(
        "diffusion runtime RMSNorm.forward_aiter",
        _at(
            "multimodal_gen/runtime/layers/layernorm.py",
            "rmsnorm2d_fwd",
            "rmsnorm2d_fwd_with_add",
            scope="RMSNorm.forward_aiter",
        ),
        "0.5.12",
        "SGLANG_USE_AITER=1 (diffusion models)",
        kernel="rmsnorm2d_fwd(_with_add)",
        guards=("multimodal_gen RMSNorm.forward_aiter",),
    ),
    _site(
        "Qwen3 fused qk-norm + RoPE + KV write",
        _at("srt/models/qwen3.py", *_QWEN3),
        "0.5.10",
        "SGLANG_USE_AITER=1, decode, no rl_on_policy_target: mrope models (0.5.23 also plain RoPE, and only "
        "with a 3-D KV cache of the activations' dtype)",
        kernel="fused_qk_norm_(m)rope_..._cache_pts_quant_shuffle",
        guards=(
            "Qwen3Attention.forward_prepare_aiter_fused_mrope",
            "Qwen3Attention.forward_prepare_aiter_fused",
            *(f"qwen3.{k}" for k in _QWEN3),
        ),
        note="plain-RoPE kernel 0.5.23",
    ),
    _site(
        "DSA indexer fused k-LayerNorm writer",
        _at("kernels/ops/attention/dsa/fp8_fused_writer_hip.py", "indexer_qk_rope_quant_and_cache"),
        "0.5.21",
        "gfx950, on by default",
        why="sglang requires fp32 norm weight and bias (TypeError) and checks the geometry; inactive, it "
        "falls back to the guarded LayerNorm",
    ),
    _site(
        "DeepSeek-V4 mHC (hc_pre / hc_post / fused post-pre)",
        _at(
            (_DSV4, *_MHC, "kernels/ops/layernorm/mhc.py"), "mhc_pre", "mhc_post", "mhc_fused_post_pre", "mhc_post_pre"
        ),
        "0.5.13",
        "DeepSeek-V4 on HIP",
        kernel="mhc_pre, mhc_post, mhc_fused_post_pre; Triton mhc_post_pre",
        why="returns early on zero rows and checks ranks before the kernel",
    ),
    _site(
        "DeepSeek-V4 fp4 indexer k write",
        _at("kernels/ops/attention/dsv4/fp4_indexer_hip.py", "rmsnorm_rope_rotate_activation_fp4quant_kvcache"),
        "0.5.20",
        "DeepSeek-V4 on HIP",
        why="returns on zero rows and casts the weight contiguous before the kernel",
    ),
    _site(
        "DeepSeek-V4 two-pool fp8 qk-norm store",
        _at("kernels/ops/attention/fused_qk_norm_rope_store.py", "fused_qk_norm_rope_group_quant"),
        "0.5.20",
        "gfx95, fp8 two-pool KV",
        guards=("fused_qk_norm_rope_store.fused_qk_norm_rope_group_quant",),
    ),
    _site(
        "MiniMax-M3 fused qk-norm",
        _at("srt/models/minimax_m3.py", "fused_qknorm_idxrqknorm"),
        "0.5.22",
        "SGLANG_M3_USE_AITER_FUSED_QKNORM",
        why="makes the packed qkv contiguous and checks widths, ranks and dtypes",
    ),
    _site(
        "Qwen3-Next fused Gemma qk-norm + RoPE",
        _at("srt/models/qwen3_next.py", "fused_attention_qk_norm_rope"),
        "0.5.23",
        "gfx95",
        why="asks aiter's own fused_attention_qk_norm_rope_supported() first",
    ),
    _site(
        "Kimi-K3 KDA fused decode",
        _at("kernels/ops/attention/kda_fused_decode_aiter_hip.py", "flydsl_kimi_k3_kda_decode_with_f_b", how=ATTRIBUTE),
        "0.5.20",
        "SGLANG_ROCM_K3_KDA_FUSED_BACKEND=aiter (0.5.20 - 0.5.21: SGLANG_K3_KDA_FUSED_BACKEND)",
        kernel="flydsl KDA decode (gated RMSNorm)",
        why="covered() checks the batch, every shape and dtype and the last strides",
    ),
    _site(
        "VAE GroupNorm",
        _at("multimodal_gen/runtime/platforms/rocm.py", "GroupNorm"),
        "0.5.10",
        "SGLANG_USE_ROCM_VAE",
        kernel="aiter.ops.groupnorm",
        why="aiter's wrapper makes input, weight and bias contiguous",
    ),
    _site(
        "fused-op registry RMSNormOp.forward_aiter",
        _at("kernels/ops/layernorm/__init__.py", "rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add"),
        "0.5.16",
        "SGLANG_FORCE_FUSED_OP_BACKEND only",
        kernel="rmsnorm2d_fwd(_with_add)",
        until="0.5.22",
        why="no runtime code calls it (and it passes aiter's arguments in the wrong order)",
        status=NOT_GUARDED,
    ),
)


def guarded_targets() -> set[str]:
    """Every target name a call site lists as its guard."""
    return {name for site in CALL_SITES for name in site.guards}


def _is_aiter(module: str | None) -> bool:
    return module is not None and (module == "aiter" or module.startswith("aiter."))


def _scoped(tree: ast.Module, call: AiterCall) -> ast.AST | None:
    """The part of ``tree`` the call must be in: the module, a function, a class (its aiter branch)."""
    if not call.scope:
        return tree
    node = source_scan.lookup(tree.body, call.scope, source_scan.DEFS)
    if node is not None and call.aiter_branch and isinstance(node, ast.FunctionDef):
        return source_scan.aiter_branch(node)
    return node


def makes(tree: ast.Module, call: AiterCall) -> bool:
    """Whether the module ``tree`` makes ``call`` (read from its source, nothing imported)."""
    scope = _scoped(tree, call)
    if scope is None:
        return False
    names = set(call.names)
    nodes = list(ast.walk(scope))
    if call.how == METHOD:
        return any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in names for n in nodes
        )
    if call.how == ATTRIBUTE:
        return any(isinstance(n, ast.Attribute) and n.attr in names for n in nodes)
    aliases: set[str] = set()  # what the module binds aiter's kernels to, anywhere (lazy imports too)
    modules: set[str] = set()  # what it binds aiter modules to
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and _is_aiter(n.module) and not n.level:
            aliases |= {a.asname or a.name for a in n.names if a.name in names}
        elif isinstance(n, ast.Import):
            modules |= {a.asname or a.name.split(".")[0] for a in n.names if _is_aiter(a.name)}
    used = (n for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in aliases)
    via_module = (
        n
        for n in nodes
        if isinstance(n, ast.Attribute) and n.attr in names and isinstance(n.value, ast.Name) and n.value.id in modules
    )
    return any(used) or any(via_module)


def present(root: Path, site: CallSite, cache: dict[str, ast.Module | None] | None = None) -> bool:
    """Whether the sglang whose package directory is ``root`` makes ``site``'s aiter call (a file
    it cannot read or parse does not count)."""
    cache = {} if cache is None else cache
    for call in site.calls:
        if call.file not in cache:
            tree = source_scan.read(root / call.file, "utf-8-sig")
            cache[call.file] = tree if isinstance(tree, ast.Module) else None
        tree = cache[call.file]
        if tree is not None and makes(tree, call):
            return True
    return False


def present_sites(root: Path) -> list[bool]:
    """:func:`present` for every row of :data:`CALL_SITES`, in order (each file read once)."""
    cache: dict[str, ast.Module | None] = {}
    return [present(root, site, cache) for site in CALL_SITES]


def module_name(file: str) -> str:
    """``srt/layers/layernorm.py`` -> ``sglang.srt.layers.layernorm``."""
    parts = ["sglang", *Path(file).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def markdown() -> str:
    """The call-site table as the README shows it."""
    rows = [
        "| call site (sglang) | releases | aiter kernel | switched on by | guard |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in CALL_SITES:
        verdict = s.status if s.status == GUARDED else f"{s.status}: {s.why}"
        rows.append(f"| {s.site} | {s.releases} | {s.kernel} | {s.switch} | {verdict} |")
    return "\n".join(rows) + "\n"
