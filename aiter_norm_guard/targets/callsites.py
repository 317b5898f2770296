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
from typing import NamedTuple

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


_LN = "srt/layers/layernorm.py"
_COMM = "srt/layers/communicator.py"
_ADD_NORM = "srt/layers/layer_boundary/residual/add_norm.py"
_FWD = "srt/models/deepseek_common/attention_forward_methods/"
_DSV4 = "srt/models/deepseek_v4.py"
_QUANTS = ("fused_rms_fp8_group_quant", "fused_rms_mxfp4_quant")
_QWEN3_TARGETS = (
    "Qwen3Attention.forward_prepare_aiter_fused_mrope",
    "Qwen3Attention.forward_prepare_aiter_fused",
    "qwen3.fused_qk_norm_mrope_3d_cache_pts_quant_shuffle",
    "qwen3.fused_qk_norm_rope_cache_pts_quant_shuffle",
)

CALL_SITES: tuple[CallSite, ...] = (
    CallSite(
        "RMSNorm.forward_aiter (and its x_pad path)",
        (
            AiterCall(_LN, ("rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add", "rms_norm"), scope="RMSNorm.forward_aiter"),
            AiterCall(_LN, ("fused_add_rmsnorm_pad",), scope="RMSNorm"),
        ),
        "0.4.7",
        None,
        "rmsnorm2d_fwd(_with_add); Triton fused_add_rmsnorm_pad; gfx1250: Triton rms_norm",
        "SGLANG_USE_AITER=1",
        GUARDED,
        ("RMSNorm.forward_aiter",),
        note="x_pad path from 0.5.13",
    ),
    CallSite(
        "GemmaRMSNorm.forward_hip, aiter branch",
        (
            AiterCall(
                _LN, ("rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add"), scope="GemmaRMSNorm.forward_hip", aiter_branch=True
            ),
        ),
        "0.5.10",
        "0.5.15",
        "rmsnorm2d_fwd(_with_add) on weight + 1",
        "SGLANG_USE_AITER=1",
        GUARDED,
        ("GemmaRMSNorm.forward_hip",),
    ),
    CallSite(
        "LayerNorm.forward_hip",
        (AiterCall(_LN, ("layernorm2d_fwd",), scope="LayerNorm.forward_hip"),),
        "0.5.11",
        None,
        "layernorm2d_fwd",
        "SGLANG_USE_AITER=1",
        GUARDED,
        ("LayerNorm.forward_hip",),
    ),
    CallSite(
        "_fused_rmsnorm_fp8_per_token_quant",
        tuple(AiterCall(f, ("rmsnorm_quant", "add_rmsnorm_quant")) for f in (_COMM, _ADD_NORM)),
        "0.5.11",
        None,
        "rmsnorm_quant / add_rmsnorm_quant; gfx1250: Triton group quant",
        "fp8 per-token W8A8 (GLM-4-MoE)",
        GUARDED,
        ("communicator._fused_rmsnorm_fp8_per_token_quant", "add_norm._fused_rmsnorm_fp8_per_token_quant"),
        note="add_norm.py from 0.5.21",
    ),
    CallSite(
        "all-reduce + RMSNorm: GroupCoordinator.fused_allreduce_rmsnorm(_quant_per_group)",
        (
            AiterCall(
                "srt/distributed/parallel_state.py",
                (
                    "custom_fused_ar_rms",
                    "fused_ar_rms",
                    "custom_fused_ar_rms_per_group_quant",
                    "fused_ar_rms_per_group_quant",
                ),
                METHOD,
            ),
        ),
        "0.5.10",
        None,
        "custom all-reduce fused_allreduce_rmsnorm",
        "--enable-aiter-allreduce-fusion, TP > 1 (GLM-5: on by itself from 0.5.21)",
        GUARDED,
        ("GroupCoordinator.fused_allreduce_rmsnorm", "GroupCoordinator.fused_allreduce_rmsnorm_quant_per_group"),
        note="per-group quant 0.5.17+",
    ),
    CallSite(
        "MLA fused q / k RMSNorm: fused_qk_rmsnorm_bf16",
        tuple(AiterCall(_FWD + f, ("fused_qk_rmsnorm",)) for f in ("forward_mla.py", "forward_mla_rocm.py")),
        "0.5.11",
        None,
        "fused_qk_rmsnorm",
        "SGLANG_USE_AITER=1, any MLA model (DeepSeek, Kimi, GLM-4.7-Flash, GLM-5)",
        GUARDED,
        ("forward_mla.fused_qk_rmsnorm_bf16", "forward_mla_rocm.fused_qk_rmsnorm_bf16"),
        note="forward_mla_rocm.py from 0.5.18",
    ),
    CallSite(
        "Triton fused (add +) RMSNorm + quant at the layer boundary and in MLA / MHA prepare",
        tuple(
            AiterCall(f, _QUANTS)
            for f in (
                _COMM,
                _ADD_NORM,
                *(_FWD + m for m in ("forward_mha.py", "forward_mha_rocm.py", "forward_mla.py", "forward_mla_rocm.py")),
            )
        ),
        "0.5.10",
        None,
        "fused_rms_fp8_group_quant, fused_rms_mxfp4_quant",
        "gfx95 with fp8 or mxfp4 weights",
        GUARDED,
        tuple(
            f"{m}.{a}"
            for m in ("communicator", "add_norm", "forward_mha", "forward_mha_rocm", "forward_mla", "forward_mla_rocm")
            for a in _QUANTS
        ),
        note="add_norm.py from 0.5.21, *_rocm.py from 0.5.18",
    ),
    CallSite(
        "DeepSeek-V4 _fused_rmsnorm_fp8_quant",
        (AiterCall(_DSV4, ("fused_rms_fp8_group_quant",)),),
        "0.5.13",
        None,
        "fused_rms_fp8_group_quant",
        "DeepSeek-V4 on gfx95 / gfx1250",
        GUARDED,
        ("deepseek_v4.fused_rms_fp8_group_quant",),
    ),
    CallSite(
        "diffusion runtime RMSNorm.forward_aiter",
        (
            AiterCall(
                "multimodal_gen/runtime/layers/layernorm.py",
                ("rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add"),
                scope="RMSNorm.forward_aiter",
            ),
        ),
        "0.5.12",
        None,
        "rmsnorm2d_fwd(_with_add)",
        "SGLANG_USE_AITER=1 (diffusion models)",
        GUARDED,
        ("multimodal_gen RMSNorm.forward_aiter",),
    ),
    CallSite(
        "Qwen3 fused qk-norm + RoPE + KV write",
        (
            AiterCall(
                "srt/models/qwen3.py",
                ("fused_qk_norm_mrope_3d_cache_pts_quant_shuffle", "fused_qk_norm_rope_cache_pts_quant_shuffle"),
            ),
        ),
        "0.5.10",
        None,
        "fused_qk_norm_(m)rope_..._cache_pts_quant_shuffle",
        "SGLANG_USE_AITER=1, decode, no rl_on_policy_target: mrope models (0.5.23 also plain RoPE, and only "
        "with a 3-D KV cache of the activations' dtype)",
        GUARDED,
        _QWEN3_TARGETS,
        note="plain-RoPE kernel 0.5.23",
    ),
    CallSite(
        "DSA indexer fused k-LayerNorm writer",
        (AiterCall("kernels/ops/attention/dsa/fp8_fused_writer_hip.py", ("indexer_qk_rope_quant_and_cache",)),),
        "0.5.21",
        None,
        "indexer_qk_rope_quant_and_cache",
        "gfx950, on by default",
        RELEASE_CHECKS,
        why="sglang requires fp32 norm weight and bias (TypeError) and checks the geometry; inactive, it "
        "falls back to the guarded LayerNorm",
    ),
    CallSite(
        "DeepSeek-V4 mHC (hc_pre / hc_post / fused post-pre)",
        tuple(
            AiterCall(f, ("mhc_pre", "mhc_post", "mhc_fused_post_pre", "mhc_post_pre"))
            for f in (
                _DSV4,
                "srt/models/deepseek_common/amd/deepseek_v4_fused_mhc.py",
                "srt/models/deepseek_v4_mhc.py",
                "kernels/ops/layernorm/mhc.py",
            )
        ),
        "0.5.13",
        None,
        "mhc_pre, mhc_post, mhc_fused_post_pre; Triton mhc_post_pre",
        "DeepSeek-V4 on HIP",
        RELEASE_CHECKS,
        why="returns early on zero rows and checks ranks before the kernel",
    ),
    CallSite(
        "DeepSeek-V4 fp4 indexer k write",
        (
            AiterCall(
                "kernels/ops/attention/dsv4/fp4_indexer_hip.py", ("rmsnorm_rope_rotate_activation_fp4quant_kvcache",)
            ),
        ),
        "0.5.20",
        None,
        "rmsnorm_rope_rotate_activation_fp4quant_kvcache",
        "DeepSeek-V4 on HIP",
        RELEASE_CHECKS,
        why="returns on zero rows and casts the weight contiguous before the kernel",
    ),
    CallSite(
        "DeepSeek-V4 two-pool fp8 qk-norm store",
        (AiterCall("kernels/ops/attention/fused_qk_norm_rope_store.py", ("fused_qk_norm_rope_group_quant",)),),
        "0.5.20",
        None,
        "fused_qk_norm_rope_group_quant",
        "gfx95, fp8 two-pool KV",
        GUARDED,
        ("fused_qk_norm_rope_store.fused_qk_norm_rope_group_quant",),
    ),
    CallSite(
        "MiniMax-M3 fused qk-norm",
        (AiterCall("srt/models/minimax_m3.py", ("fused_qknorm_idxrqknorm",)),),
        "0.5.22",
        None,
        "fused_qknorm_idxrqknorm",
        "SGLANG_M3_USE_AITER_FUSED_QKNORM",
        RELEASE_CHECKS,
        why="makes the packed qkv contiguous and checks widths, ranks and dtypes",
    ),
    CallSite(
        "Qwen3-Next fused Gemma qk-norm + RoPE",
        (AiterCall("srt/models/qwen3_next.py", ("fused_attention_qk_norm_rope",)),),
        "0.5.23",
        None,
        "fused_attention_qk_norm_rope",
        "gfx95",
        RELEASE_CHECKS,
        why="asks aiter's own fused_attention_qk_norm_rope_supported() first",
    ),
    CallSite(
        "Kimi-K3 KDA fused decode",
        (
            AiterCall(
                "kernels/ops/attention/kda_fused_decode_aiter_hip.py",
                ("flydsl_kimi_k3_kda_decode_with_f_b",),
                ATTRIBUTE,
            ),
        ),
        "0.5.20",
        None,
        "flydsl KDA decode (gated RMSNorm)",
        "SGLANG_ROCM_K3_KDA_FUSED_BACKEND=aiter (0.5.20 - 0.5.21: SGLANG_K3_KDA_FUSED_BACKEND)",
        RELEASE_CHECKS,
        why="covered() checks the batch, every shape and dtype and the last strides",
    ),
    CallSite(
        "VAE GroupNorm",
        (AiterCall("multimodal_gen/runtime/platforms/rocm.py", ("GroupNorm",)),),
        "0.5.10",
        None,
        "aiter.ops.groupnorm",
        "SGLANG_USE_ROCM_VAE",
        RELEASE_CHECKS,
        why="aiter's wrapper makes input, weight and bias contiguous",
    ),
    CallSite(
        "fused-op registry RMSNormOp.forward_aiter",
        (AiterCall("kernels/ops/layernorm/__init__.py", ("rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add")),),
        "0.5.16",
        "0.5.22",
        "rmsnorm2d_fwd(_with_add)",
        "SGLANG_FORCE_FUSED_OP_BACKEND only",
        NOT_GUARDED,
        why="no runtime code calls it (and it passes aiter's arguments in the wrong order)",
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
    *path, name = call.scope.split(".")
    body: list[ast.stmt] = tree.body
    for part in path:
        cls = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if cls is None:
            return None
        body = cls.body
    node = next(
        (n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name),
        None,
    )
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
            try:
                cache[call.file] = ast.parse((root / call.file).read_text(encoding="utf-8-sig"))
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
                cache[call.file] = None
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
