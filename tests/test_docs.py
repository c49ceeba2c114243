"""The README and the documentation site say what is true: their quick commands run as shown,
the README stays a short landing page, and its links lead somewhere."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import xptrain

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 12_000  # characters: a README that reads in five minutes

FENCE = re.compile(r"^```(bash|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)

# What a command may not carry to count as quick here: a GPU, a cluster, a launcher's group,
# data that only exists on the machine of the example, or a folder of checkpoints.
ELSEWHERE = ("cuda", "--scheduler", "--distributed", "--data-parallel", "big", "--checkpoint-dir")
QUICK_COMMANDS = ("train", "explain", "backends", "predict")  # `check` only on the seed problem
# what a command's words need here, as tests/conftest.py's markers declare it
BACKENDS = ("torch", "jax", "array_api_strict", "dask")
PACKAGED_DATA = ("breast_cancer", "digits", "digits10", "diabetes")


@dataclass(frozen=True)
class Command:
    """One documented command: its words (an optional PYTHONPATH first) and the output shown."""

    words: tuple[str, ...]
    shown: tuple[str, ...]

    @property
    def extra_path(self) -> Path | None:
        """The folder a leading ``PYTHONPATH=DIR`` puts on the path, relative to the repository."""
        first = self.words[0]
        return ROOT / first.split("=", 1)[1] if first.startswith("PYTHONPATH=") else None

    @property
    def args(self) -> tuple[str, ...]:
        """The words after ``xptrain``."""
        return self.words[2:] if self.extra_path else self.words[1:]


@dataclass(frozen=True)
class Block:
    """A fenced ``bash`` or ``console`` block: where it is, and its commands in order."""

    where: str
    commands: tuple[Command, ...]


def _joined_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined into one."""
    lines: list[str] = []
    for line in text.splitlines():
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + line.strip()
        else:
            lines.append(line)
    return lines


def _commands(kind: str, text: str) -> tuple[Command, ...]:
    """A block's commands: every line of a bash block; a console block's ``$`` lines, each with
    the output lines below it."""
    commands: list[tuple[str, list[str]]] = []
    for line in _joined_lines(text):
        if kind == "bash" or line.startswith("$ "):
            commands.append((line.removeprefix("$ "), []))
        elif commands:
            commands[-1][1].append(line)
    parsed = [(shlex.split(line, comments=True), shown) for line, shown in commands]
    return tuple(Command(tuple(words), tuple(shown)) for words, shown in parsed if words)


def documented_blocks() -> list[Block]:
    """Every bash and console block of the README and the documentation pages."""
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{page.relative_to(ROOT)}:{line}"
            blocks.append(Block(where, _commands(match.group(1), match.group(2))))
    return blocks


def _values(args: tuple[str, ...], option: str) -> list[str]:
    """The values given to a list option (``--problems seed synthetic``)."""
    if option not in args:
        return []
    rest = args[args.index(option) + 1 :]
    values = []
    for word in rest:
        if word.startswith("--"):
            break
        values.extend(filter(None, word.split(",")))
    return values


def is_quick(command: Command) -> bool:
    """Whether a command is ``xptrain`` on this CPU within seconds: training and predicting on
    small data, ``explain``, ``backends``, and ``check`` on the seed problem alone."""
    words = command.words[1:] if command.extra_path else command.words
    if words[:1] != ("xptrain",) or len(words) < 2 or any(s in w for w in words for s in ELSEWHERE):
        return False
    if words[1] == "check":
        return _values(command.args, "--problems") == ["seed"] and "--model" not in words
    return words[1] in QUICK_COMMANDS


def _needs(command: Command) -> list[pytest.MarkDecorator]:
    """conftest's declarations for what a command's words need here."""
    named = set(command.args)
    for option in ("--backend", "--backends"):
        named.update(_values(command.args, option))
    backends = sorted(named & set(BACKENDS))
    modules = {"sklearn"} if named & set(PACKAGED_DATA) else set()
    if "--plot" in named:
        modules.add("matplotlib")
    if command.extra_path:  # the tests' own array libraries wrap array-api-strict
        modules.add("array_api_strict")
    marks = [pytest.mark.backends(*backends)] if backends else []
    return marks + ([pytest.mark.needs(*sorted(modules))] if modules else [])


def _quick_blocks() -> list:
    """Blocks holding a quick command, as pytest parameters with what they need."""
    params = []
    for block in documented_blocks():
        quick = tuple(c for c in block.commands if is_quick(c))
        if quick:
            marks = [mark for command in quick for mark in _needs(command)]
            params.append(pytest.param(quick, marks=marks, id=block.where))
    return params


def expected_status(command: Command) -> int:
    """The exit status the shown output implies: 2 after an error line, 1 after a FAIL."""
    if any(": error:" in line for line in command.shown):
        return 2
    return (
        1 if any(line.startswith(("FAIL", "xptrain check: FAIL")) for line in command.shown) else 0
    )


def _same_words(shown: str, printed: str) -> bool:
    """The same line, whatever its column widths, numbers equal to 4 significant digits (the
    last digits of a loss may depend on the machine's summation order)."""
    a, b = shown.split(), printed.split()
    return len(a) == len(b) and all(_same_word(x, y) for x, y in zip(a, b, strict=True))


def _same_word(shown: str, printed: str) -> bool:
    try:
        return math.isclose(float(shown.strip(",;")), float(printed.strip(",;")), rel_tol=1e-4)
    except ValueError:
        return shown == printed


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder where the documented relative paths (examples/, tests/) lead where they do in
    the repository, and the commands' own files land."""
    for name in ("examples", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("commands", _quick_blocks())
def test_documented_commands_run_as_shown(commands: tuple[Command, ...], workdir: Path):
    """Each quick command of a block, in order, exits as documented; where the block shows the
    command's output, the first line printed is the one shown."""
    for command in commands:
        done = xptrain(*command.args, cwd=workdir, extra_path=command.extra_path, timeout=60)
        said = f"{shlex.join(command.words)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        assert done.returncode == expected_status(command), said
        if command.shown and command.shown[0] != "...":
            first = [text.splitlines()[0] for text in (done.stdout, done.stderr) if text]
            assert any(_same_words(command.shown[0], line) for line in first[:1]), said


def test_the_quick_commands_are_found():
    """The selection above is not empty by accident: the README's first command is in it."""
    quick = [c.words for b in documented_blocks() for c in b.commands if is_quick(c)]
    assert ("xptrain", "train") in quick
    assert any(w[:2] == ("xptrain", "predict") for w in quick)


def test_readme_reads_in_five_minutes():
    size = len((ROOT / "README.md").read_text(encoding="utf-8"))
    assert size <= README_LIMIT, f"README.md has {size} characters, more than {README_LIMIT}"


def _slug(heading: str) -> str:
    """A heading's anchor as MkDocs (and GitHub, for these headings) make it."""
    text = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _leads_somewhere(target: str) -> bool:
    """A relative link names a repository file and, with #anchor, one of its headings."""
    path, _, anchor = target.partition("#")
    file = ROOT / path
    if not file.is_file():
        return False
    return not anchor or anchor in map(_slug, HEADING.findall(file.read_text("utf-8")))


def test_readme_links_lead_to_files_and_headings():
    """Every relative link of the README leads somewhere (the site's own links are checked by
    `mkdocs build --strict`)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    relative = [t for t in LINK.findall(readme) if not re.match(r"[a-z]+:", t)]
    broken = [target for target in relative if not _leads_somewhere(target)]
    assert not broken, f"README.md links to nothing: {broken}"


def test_no_issue_numbers_for_newcomers():
    """The pages speak to someone who never saw the project's issue tracker."""
    for page in PAGES:
        found = re.findall(r"\bissues? \d+", page.read_text(encoding="utf-8"))
        assert not found, f"{page.relative_to(ROOT)}: {found}"
