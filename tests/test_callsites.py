"""The call-site table, the target table, the README and every pinned release's source agree.

Each row says where its aiter call is (``AiterCall``) and ``present`` finds it by ``ast``.  Here,
per pinned release (``.envs/sglang-*``), the rows' verdicts are checked against the releases
each row claims, against a plain-text search of the whole release tree for the same aiter calls
(so a wrong path or a module left out shows), and against facts read by hand from the wheels
(docs: /work/shared/research/aiter-norm-call-sites-2026-12.md, §2).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from aiter_norm_guard.cli import doctor
from aiter_norm_guard.targets import TARGETS
from aiter_norm_guard.targets.callsites import (
    ATTRIBUTE,
    CALL_SITES,
    GUARDED,
    IMPORTED,
    METHOD,
    guarded_targets,
    markdown,
    present,
    present_sites,
)
from conftest import REPO, version_tuple

#: The pinned releases: the one release list, ``requirements/sglang-X.txt`` (scripts/releases.sh reads it too).
RELEASES = sorted(
    (p.stem.removeprefix("sglang-") for p in (REPO / "requirements").glob("sglang-*.txt")), key=version_tuple
)
SITES = {s.site: s for s in CALL_SITES}


def _root(release: str) -> Path:
    return REPO / ".envs" / f"sglang-{release}" / "sglang"


def test_every_target_is_a_guarded_call_site_and_every_guard_is_a_target() -> None:
    assert guarded_targets() == {t.name for t in TARGETS}
    for site in CALL_SITES:
        assert (site.status == GUARDED) == bool(site.guards), site.site
        assert site.status == GUARDED or site.why, site.site  # a site not guarded says why
        assert site.calls and all(c.names and c.file.endswith(".py") for c in site.calls), site.site


def test_the_readme_shows_the_table_as_it_is() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- callsites:begin -->\n", "<!-- callsites:end -->"
    shown = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert shown == markdown(), "regenerate it: python -P scripts/readme_callsites.py"


def test_the_pinned_releases_are_all_here() -> None:
    missing = [r for r in RELEASES if not (_root(r) / "__init__.py").is_file()]
    assert RELEASES and not missing, f"no overlay for {missing}: run bash scripts/setup.sh"


# -- an independent reading: plain text over the whole release tree --------------------------------

_FROM_AITER = re.compile(r"^[ \t]*from[ \t]+aiter(?:\.[\w.]+)?[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)
_IMPORT_AITER = re.compile(r"^[ \t]*import[ \t]+aiter(?:\.[\w.]+)?(?:[ \t]+as[ \t]+(\w+))?", re.M)
_COMMENT = re.compile(r"#[^\n]*")


class _File:
    """One file as text: where it imports from aiter, and its code without those imports or comments."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.body = _FROM_AITER.sub("", _COMMENT.sub("", text)) if "aiter" in text else ""
        self.aliases: dict[str, list[str]] = {}
        for imp in _FROM_AITER.finditer(text):
            for m in re.finditer(r"\b(\w+)(?:\s+as\s+(\w+))?", imp.group(1).strip("()")):
                self.aliases.setdefault(m.group(1), []).append(m.group(2) or m.group(1))
        self.modules = [m.group(1) or "aiter" for m in _IMPORT_AITER.finditer(text)]

    def reaches(self, name: str, how: str) -> bool:
        """Whether the file reaches aiter's ``name`` the way ``how`` says, by text alone."""
        if name not in self.text:
            return False
        if how == METHOD:
            return re.search(rf"\.{name}\s*\(", self.text) is not None
        if how == ATTRIBUTE:
            loads_aiter = re.search(r"[\"']aiter\.", self.text) is not None  # importlib, by the module's name
            return loads_aiter and re.search(rf"\.{name}\b", self.text) is not None
        if any(re.search(rf"(?<![\w.'\"]){a}(?!\w)", self.body) for a in self.aliases.get(name, ())):
            return True
        return any(re.search(rf"(?<![\w.]){m}\.{name}\b", self.body) for m in self.modules)


@cache
def _texts(release: str) -> dict[str, _File]:
    root = _root(release)
    return {
        p.relative_to(root).as_posix(): _File(p.read_text(encoding="utf-8-sig", errors="replace"))
        for p in root.rglob("*.py")
    }


@cache
def _grep_files(release: str, name: str, how: str) -> frozenset[str]:
    return frozenset(f for f, file in _texts(release).items() if file.reaches(name, how))


@pytest.mark.parametrize("release", RELEASES)
def test_each_row_is_present_exactly_where_its_call_is(release: str) -> None:
    root = _root(release)
    found = dict(zip(SITES, present_sites(root), strict=True))
    assert {c["site"]: c["present"] for c in doctor.call_sites(root)} == found  # what doctor lists
    v = version_tuple(release)
    for site in CALL_SITES:
        claimed = version_tuple(site.since) <= v and (site.until is None or v <= version_tuple(site.until))
        assert found[site.site] == claimed, (release, site.site, site.releases)
        grepped = {c.file for c in site.calls for n in c.names if c.file in _grep_files(release, n, c.how)}
        if all(not c.scope for c in site.calls):  # the whole file is the row's: text decides alone
            assert found[site.site] == bool(grepped), (release, site.site, grepped)
        else:  # a scope narrows it: the call must at least be in the file
            assert not found[site.site] or grepped, (release, site.site)
    # every place in the tree that reaches a row's aiter call the same way is one of the rows' files
    declared: dict[tuple[str, str], set[str]] = {}
    for site in CALL_SITES:
        for c in site.calls:
            for n in c.names:
                declared.setdefault((n, c.how), set()).add(c.file)
    for (name, how), files in declared.items():
        assert _grep_files(release, name, how) <= files, (release, name, _grep_files(release, name, how) - files)


def test_every_aiter_norm_kernel_a_release_imports_is_a_row() -> None:
    """Missing rows: every name a pinned release imports from aiter and uses, that looks like a norm."""
    rows = {n for s in CALL_SITES for c in s.calls if c.how == IMPORTED for n in c.names}
    norm = re.compile(r"norm|rms|mhc", re.I)
    missing: set[tuple[str, str]] = set()
    for release in RELEASES:
        for file in _texts(release).values():
            for name in file.aliases:
                if norm.search(name) and name not in rows | _NOT_ROWS and file.reaches(name, IMPORTED):
                    missing.add((release, name))
    assert not missing


#: aiter names that look like a norm and that sglang imports and uses, but that launch no norm kernel
_NOT_ROWS = {
    "get_mhc_config",  # the Triton mHC kernel's launch configuration (the row is mhc_post_pre)
    "fused_attention_qk_norm_rope_supported",  # Qwen3-Next's predicate before the kernel (the row is the kernel)
}


# -- facts read by hand from the wheels (research note §2a / §2b), on the releases pinned here ---------

FACTS: dict[str, dict[str, bool]] = {
    # E7: the file is there, the aiter call is not
    "DSA indexer fused k-LayerNorm writer": {"0.5.19": False, "0.5.21": True, "0.5.23": True},
    "MiniMax-M3 fused qk-norm": {"0.5.16": False, "0.5.21": False, "0.5.23": True},
    "Qwen3-Next fused Gemma qk-norm + RoPE": {"0.5.10": False, "0.5.21": False, "0.5.23": True},
    "fused-op registry RMSNormOp.forward_aiter": {"0.5.15": False, "0.5.16": True, "0.5.21": True, "0.5.23": False},
    # E1 - E3: the files are sglang/kernels/ops/..., there from 0.5.20
    "DeepSeek-V4 fp4 indexer k write": {"0.5.19": False, "0.5.21": True, "0.5.23": True},
    "DeepSeek-V4 two-pool fp8 qk-norm store": {"0.5.16": False, "0.5.19": False, "0.5.21": True, "0.5.23": True},
    "Kimi-K3 KDA fused decode": {"0.5.19": False, "0.5.21": True, "0.5.23": True},
    # GemmaRMSNorm's aiter branch 0.5.10 - 0.5.15 (its vLLM-order branch stays, without aiter)
    "GemmaRMSNorm.forward_hip, aiter branch": {"0.5.10": True, "0.5.15": True, "0.5.16": False, "0.5.23": False},
    "RMSNorm.forward_aiter (and its x_pad path)": {"0.4.6": False, "0.4.10": True, "0.5.23": True},
    "LayerNorm.forward_hip": {"0.5.10": False, "0.5.11": True, "0.5.23": True},
    "DeepSeek-V4 mHC (hc_pre / hc_post / fused post-pre)": {"0.5.11": False, "0.5.13": True, "0.5.23": True},
    "Qwen3 fused qk-norm + RoPE + KV write": {"0.4.10": False, "0.5.10": True, "0.5.23": True},
}


@pytest.mark.parametrize("site", sorted(FACTS))
def test_known_facts(site: str) -> None:
    for release, want in FACTS[site].items():
        assert present(_root(release), SITES[site]) is want, (site, release)


def test_mhc_names_its_four_modules_and_each_is_read() -> None:
    """E8: the aiter mHC calls live in four modules; 0.5.23 reaches aiter's mHC from each of them."""
    mhc = SITES["DeepSeek-V4 mHC (hc_pre / hc_post / fused post-pre)"]
    assert len(mhc.files) == 4
    for call in mhc.calls:
        assert present(_root("0.5.23"), mhc._replace(calls=(call,))), call.file


def test_a_missing_or_broken_file_is_not_a_call_site(tmp_path: Path) -> None:
    site = SITES["MiniMax-M3 fused qk-norm"]
    assert present(tmp_path, site) is False
    (tmp_path / "srt" / "models").mkdir(parents=True)
    (tmp_path / "srt" / "models" / "minimax_m3.py").write_text("def broken(:\n")
    assert present(tmp_path, site) is False
    (tmp_path / "srt" / "models" / "minimax_m3.py").write_text(
        "def f(x):\n    from aiter import fused_qknorm_idxrqknorm  # noqa: F401\n    return x\n"
    )
    assert present(tmp_path, site) is False  # imported, never used
    (tmp_path / "srt" / "models" / "minimax_m3.py").write_text(
        "def f(x):\n    import aiter as _a\n    return _a.fused_qknorm_idxrqknorm(x)\n"
    )
    assert present(tmp_path, site) is True
