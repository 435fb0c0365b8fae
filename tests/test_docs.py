"""The docs stay whole: docs/modules.md names every module, and every relative link in the README and docs/
points at a file that exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_FOLDERS = ("imet_utils", "kernel_build", "synth", "kernels", "bench")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_module_map_names_every_module():
    text = (ROOT / "docs" / "modules.md").read_text()
    modules = [p.relative_to(ROOT).as_posix() for d in MODULE_FOLDERS for p in sorted((ROOT / d).glob("*.py"))]
    assert modules, "no modules found"
    missing = [m for m in modules if f"`{m}`" not in text]
    assert not missing, f"add a line to docs/modules.md for: {missing}"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_relative_links_point_at_existing_files():
    broken = []
    for doc in _docs():
        for target in LINK.findall(doc.read_text()):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # a URL
            path, _, anchor = target.partition("#")
            file = doc.parent / path if path else doc
            if not file.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, f"broken links: {broken}"


def test_the_link_check_catches_a_broken_link(tmp_path):
    """The pattern finds a markdown link's target (so the check above is not vacuous)."""
    assert LINK.findall("see [the docs](docs/nowhere.md#x) and [site](https://kaggle.com)") == [
        "docs/nowhere.md#x",
        "https://kaggle.com",
    ]
    readme_links = LINK.findall((ROOT / "README.md").read_text())
    assert "docs/kaggle.md" in readme_links
