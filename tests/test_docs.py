"""The README and the pages under docs/ stay true: every relative link (and its #anchor)
resolves, every setting is in the configuration table, and the README's first screen is
the quickstart with the two newcomer commands right after it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks (links in code are not links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", _prose(page.read_text()), flags=re.M)}


def _links() -> list[tuple[Path, str]]:
    return [(page, m.group(1)) for page in PAGES for m in LINK.finditer(_prose(page.read_text()))
            if not re.match(r"[a-z]+:", m.group(1))]


def test_the_slug_rule_matches_githubs():
    assert _slug("Simulated traffic: `vigil simulate`") == "simulated-traffic-vigil-simulate"
    assert _slug("No drift yet: how long until I see drift?") == "no-drift-yet-how-long-until-i-see-drift"


@pytest.mark.parametrize("page, link", _links(), ids=lambda x: x.name if isinstance(x, Path) else x)
def test_every_relative_link_resolves(page, link):
    path, _, anchor = link.partition("#")
    target = (page.parent / path).resolve() if path else page
    assert target.exists(), f"{page.name}: {link} points at nothing"
    if anchor:
        assert target.suffix == ".md", f"{page.name}: {link}: an anchor into a file that is not Markdown"
        assert anchor in _anchors(target), f"{page.name}: {link}: no heading #{anchor} in {target.name}"


def test_every_setting_is_in_the_configuration_table():
    from monitoring.config import env_vars
    from service.settings import ServerSettings

    table = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(VIGIL_[A-Z_]+)` \|", table, flags=re.M))
    missing = set(env_vars(ServerSettings).values()) - documented
    assert not missing, f"docs/configuration.md lacks {sorted(missing)}"
    assert documented - set(env_vars(ServerSettings).values()) <= {"VIGIL_CONFIG"}, "a row for a setting that is gone"


def test_the_readme_opens_with_the_quickstart_and_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:20])
    assert "## Quickstart: your own model" in first_screen
    assert "<!-- quickstart -->" in readme
    two = readme.index("## The two commands")
    assert readme.index("make serve", two) < readme.index("make test", two) < readme.index("## ", two + 3)
    assert ".venv/bin/vigil" in readme and "source .venv/bin/activate" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^serve: ", makefile, flags=re.M) and re.search(r"^test: ", makefile, flags=re.M)
