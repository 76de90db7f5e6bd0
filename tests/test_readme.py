"""The README's usage example runs as written, and the documentation stays a reference.

Beside the README's two commands and its Python example: the README stays short, every
relative link of README.md and docs/ points at a file (and heading) that exists, and no
documentation file carries notes about how the project was developed.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_README_LINES = 260
DOC_FILES = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md")],
    key=str,
)
LINKED_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Markdown links and images, [text](target) and ![alt](target), outside code spans.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_usage_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["(2, 7, 64)", "['loss', 'meta_loss']", "(2, 16)", "(2, 1, 3)"]


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; at most {MAX_README_LINES}: move details to docs/."
    )


def _without_code_blocks(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _links(text):
    """The targets of the links of a markdown text, outside code blocks and code spans."""
    return LINK.findall(re.sub(r"`[^`\n]*`", "", _without_code_blocks(text)))


def _anchors(path):
    """GitHub's anchors of the headings of a markdown file."""
    anchors = set()
    for line in _without_code_blocks(path.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-"))
    return anchors


def test_the_link_pattern_finds_links_and_skips_code():
    sample = "See [a](docs/a.md), ![b](b.png#x) and `[c](c.md)`.\n```\n[d](d.md)\n```\n"
    assert _links(sample) == ["docs/a.md", "b.png#x"]


@pytest.mark.parametrize("path", LINKED_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path):
    broken = []
    for target in _links(path.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no file {linked.relative_to(ROOT)})")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"
