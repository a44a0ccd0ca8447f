"""The docs hold together: the README is a map with a working table of contents, the Japanese README gives the
same commands, no page reads as a changelog, every benchmark table names its machine, and every relative link
lands on a file (and a heading, where it names one).

Markdown is read with a few regular expressions (GitHub's rules for heading anchors), not rendered: what is
checked is what a reader clicking through on GitHub would hit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_JA = ROOT / "README.ja.md"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
MAX_README_LINES = 200

#: Wording that narrates the project's history instead of describing what is (history lives in the git log).
CHANGELOG_PHRASES = (
    "this round", "last round", "previous round", "the run before", "before this session", "this session",
    "earlier figures", "before these changes", "before this change", "the last changes", "as of today",
    "no longer", "used to be", "until now", "newly added",
)
#: "now ... instead of" within one sentence: a before-and-after told as news.
NOW_INSTEAD = re.compile(r"\bnow\b[^.\n]*\binstead of\b", re.IGNORECASE)
#: How many lines above a benchmark table its machine must be named.
MACHINE_LOOKBACK = 3
SHELL_FENCES = ("bash", "sh", "shell", "console")
#: A measured figure in prose: a time, a speed-up or a ratio ("55.8 s", "1.86x", "5,500 times", "20秒", "1.01倍").
FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?\s?(?:x|s|ms|times|秒|倍)(?![A-Za-z0-9])")
BENCHMARK_LINK = re.compile(r"\[[^\]]*\]\(docs/benchmarks\.md#[^)]+\)")


@dataclass(frozen=True)
class Page:
    """One Markdown file, with its fenced code blocks taken out of the prose."""

    path: Path
    prose: list[str]  # the lines outside fences (fenced lines replaced by "")
    blocks: list[tuple[str, list[str]]]  # (info string, lines) of each fenced block

    @classmethod
    def read(cls, path: Path) -> Page:
        prose: list[str] = []
        blocks: list[tuple[str, list[str]]] = []
        fence: tuple[str, list[str]] | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("```"):
                if fence is None:
                    fence = (line.strip().strip("`").strip(), [])
                else:
                    blocks.append(fence)
                    fence = None
                prose.append("")
            elif fence is not None:
                fence[1].append(line)
                prose.append("")
            else:
                prose.append(line)
        assert fence is None, f"{path.name}: a code fence is never closed"
        return cls(path, prose, blocks)

    def headings(self) -> list[tuple[int, str]]:
        """(level, text) of every heading outside code blocks."""
        found = (re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line) for line in self.prose)
        return [(len(m.group(1)), m.group(2)) for m in found if m]

    def anchors(self) -> set[str]:
        """The anchors GitHub gives the headings (a repeated one gets -1, -2, ...)."""
        seen: dict[str, int] = {}
        anchors = set()
        for _, text in self.headings():
            slug = github_slug(text)
            count = seen.get(slug, 0)
            anchors.add(slug if count == 0 else f"{slug}-{count}")
            seen[slug] = count + 1
        return anchors

    def links(self) -> list[str]:
        """Targets of inline links and images in the prose, inline code left out."""
        text = re.sub(r"`[^`\n]*`", "", "\n".join(self.prose))
        return re.findall(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)

    def shell_commands(self) -> set[str]:
        """Each line of the shell code blocks, its trailing comment and spacing removed."""
        commands = set()
        for info, lines in self.blocks:
            if info.split(" ")[0] not in SHELL_FENCES:
                continue
            for line in lines:
                command = re.sub(r"(^|\s)#.*$", "", line).strip()
                if command:
                    commands.add(" ".join(command.split()))
        return commands

    def tables(self) -> list[int]:
        """Index (in `prose`) of the first line of each table."""
        return [i for i, line in enumerate(self.prose)
                if is_table_line(line) and (i == 0 or not is_table_line(self.prose[i - 1]))]


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def is_table_line(line: str) -> bool:
    return line.lstrip().startswith("|")


def doc_pages() -> list[Path]:
    return sorted([*ROOT.glob("README*.md"), *(ROOT / "docs").glob("*.md")])


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_github_slug_follows_githubs_rules() -> None:
    assert github_slug("The book's run") == "the-books-run"
    assert github_slug("Threads, memory, interruption") == "threads-memory-interruption"
    assert github_slug("`zdl cluster up`") == "zdl-cluster-up"
    assert github_slug("学習者の道順: ノートブック") == "学習者の道順-ノートブック"


def test_readme_is_a_map_of_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("path", [README, README_JA], ids=page_id)
def test_readme_table_of_contents_lists_every_section_and_resolves(path: Path) -> None:
    page = Page.read(path)
    sections = [text for level, text in page.headings() if level == 2]
    contents = sections[0]
    start = page.prose.index(f"## {contents}")
    end = next(i for i in range(start + 1, len(page.prose)) if page.prose[i].startswith("## "))
    targets = re.findall(r"^\s*- \[[^\]]+\]\(#([^)]+)\)", "\n".join(page.prose[start:end]), re.MULTILINE)
    assert targets, f"{path.name}: its first section ({contents}) should be the table of contents"
    assert set(targets) <= page.anchors(), f"{path.name}: contents entries without a heading"
    listed = {github_slug(text) for text in sections[1:]}
    assert listed == set(targets), f"{path.name}: sections missing from the contents: {listed - set(targets)}"


def test_readme_ja_gives_the_same_commands_as_the_readme() -> None:
    english, japanese = Page.read(README).shell_commands(), Page.read(README_JA).shell_commands()
    for command in ("./scripts/main-job", "./scripts/test", "ZDL_DATA_DIR=path/to/mnist ./scripts/notebook"):
        assert command in english, f"README.md lacks {command!r}"
        assert command in japanese, f"README.ja.md lacks {command!r}"
    assert japanese <= english, f"commands only in README.ja.md: {sorted(japanese - english)}"


def test_each_readme_links_to_the_other_at_the_top() -> None:
    for path, other in ((README, "README.ja.md"), (README_JA, "README.md")):
        top = Page.read(path).prose[:5]
        assert any(f"]({other})" in line for line in top), f"{path.name} should link to {other} at the top"


@pytest.mark.parametrize("path", [README, README_JA], ids=page_id)
def test_every_figure_in_a_readme_links_to_its_benchmark(path: Path) -> None:
    prose = re.sub(r"`[^`\n]*`", "", "\n".join(Page.read(path).prose))
    linked = BENCHMARK_LINK.findall(prose)
    assert linked, f"{path.name} links to no benchmark"
    unlinked = FIGURE.findall(BENCHMARK_LINK.sub("", prose))
    assert not unlinked, f"{path.name}: figures outside a link to docs/benchmarks.md: {unlinked}"


def test_the_figure_check_sees_a_bare_figure() -> None:
    assert FIGURE.findall("takes 55.8 s, 1.86x as fast, 5,500 times, 20秒, 1.01倍速く; 784-50-10, 11 MB") == [
        "55.8 s", "1.86x", "5,500 times", "20秒", "1.01倍"]
    assert not FIGURE.findall(BENCHMARK_LINK.sub("", "[55.8 s](docs/benchmarks.md#the-books-run)"))


@pytest.mark.parametrize("path", doc_pages(), ids=page_id)
def test_no_page_reads_as_a_changelog(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lowered = text.lower()
    found = [phrase for phrase in CHANGELOG_PHRASES if phrase in lowered]
    found += [m.group(0) for m in NOW_INSTEAD.finditer(text)]
    assert not found, f"{page_id(path)} narrates history (the git log keeps it): {found}"


def benchmark_machines(page: Page) -> list[str]:
    """The machines named in bold in the "The machines" section."""
    start = page.prose.index("## The machines")
    end = next(i for i in range(start + 1, len(page.prose)) if page.prose[i].startswith("## "))
    return re.findall(r"^\* \*\*([^*]+)\*\*", "\n".join(page.prose[start:end]), re.MULTILINE)


def test_every_benchmark_table_names_its_one_machine() -> None:
    page = Page.read(BENCHMARKS)
    machines = benchmark_machines(page)
    assert len(machines) >= 1, "docs/benchmarks.md should describe its machines under '## The machines'"
    tables = page.tables()
    assert tables, "docs/benchmarks.md has no tables"
    for start in tables:
        above = " ".join(page.prose[max(0, start - MACHINE_LOOKBACK):start])
        named = [machine for machine in machines if machine in above]
        assert len(named) == 1, (f"docs/benchmarks.md line {start + 1}: a table should name exactly one machine "
                                 f"of {machines} in the {MACHINE_LOOKBACK} lines above it; found {named}")


def test_the_table_check_sees_a_table_without_a_machine(tmp_path: Path) -> None:
    bad = tmp_path / "bench.md"
    bad.write_text("## The machines\n\n* **Box A**: one.\n\n## Figures\n\nSome text.\n\n| a | b |\n|---|---|\n")
    page = Page.read(bad)
    (start,) = page.tables()
    assert benchmark_machines(page) == ["Box A"]
    assert "Box A" not in " ".join(page.prose[max(0, start - MACHINE_LOOKBACK):start])


def test_configuration_lists_every_setting() -> None:
    from worker.settings import Settings

    text = CONFIGURATION.read_text(encoding="utf-8")
    missing = [f"ZDL_{name.upper()}" for name in Settings.model_fields if f"`ZDL_{name.upper()}`" not in text]
    assert not missing, f"docs/configuration.md does not describe {missing}"


@pytest.mark.parametrize("path", doc_pages(), ids=page_id)
def test_every_relative_link_resolves(path: Path) -> None:
    page = Page.read(path)
    broken = []
    for target in page.links():
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in Page.read(linked).anchors():
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page_id(path)}: broken links: {broken}"
