"""The call-site table, the target table and the README agree."""

from __future__ import annotations

from aiter_norm_guard.targets import TARGETS
from aiter_norm_guard.targets.callsites import CALL_SITES, GUARDED, guarded_targets, markdown
from conftest import REPO


def test_every_target_is_a_guarded_call_site_and_every_guard_is_a_target() -> None:
    assert guarded_targets() == {t.name for t in TARGETS}
    for site in CALL_SITES:
        assert (site.status == GUARDED) == bool(site.guards), site.site
        assert site.status == GUARDED or site.why, site.site  # a site not guarded says why


def test_the_readme_shows_the_table_as_it_is() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- callsites:begin -->\n", "<!-- callsites:end -->"
    assert readme[readme.index(begin) + len(begin) : readme.index(end)] == markdown()
