"""Every fenced code block in README.md and docs/*.md is run or checked here, so the docs cannot go stale.

- python: executed in a fresh namespace, in a temporary folder holding the docs' fixtures
  (`my-checkpoint/`, a tiny random BERT classifier; `train.csv`, `validation.csv`, `test.csv`; `model/`,
  an int8 artifact of that checkpoint, unless the block writes `model` itself).
- bash / sh / console: every `optimise ...` line is parsed by the real parser of its subcommand (an
  unknown or renamed option fails), then run for real on the fixtures and must exit 0; `./run.sh X` must
  name a command run.sh accepts; `python -m X` must name a module that exists. Any other line needs the
  block marked as not run.
- json, toml, yaml: parsed; a TOML block with `steps` must also be a valid recipe.
- a block preceded by `<!-- not run: REASON -->` is only checked: python is compiled, shell lines are
  parsed as above but not run. The reason may not be empty.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import random
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py"}
QUIET = {"", "text", "txt", "markdown", "md", "diff", "pbtxt", "protobuf", "ini", "csv"}
WORDS = ["the", "film", "was", "great", "bad", "boring", "fine", "story", "actor", "plot", "music", "long",
         "short", "funny", "sad"]


@dataclass(frozen=True)
class Block:
    page: Path
    index: int
    line: int
    lang: str
    code: str
    not_run: str | None  # the reason, when the block is marked as not run

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}#{self.index}(line {self.line})"


def read_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang, start = opening["indent"], opening["lang"].lower(), i
        body, i = [], i + 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.match(before)
        found.append(Block(page, len(found), start + 1, lang, "\n".join(body) + "\n",
                           marker["reason"].strip() if marker else None))
        i += 1
    return found


BLOCKS = [b for page in PAGES for b in read_blocks(page)]


def test_every_page_has_balanced_fences_and_known_languages():
    for page in PAGES:
        fences = [ln for ln in page.read_text(encoding="utf-8").splitlines() if ln.strip().startswith("```")]
        assert len(fences) % 2 == 0, f"{page.name}: an unclosed code fence"
    unknown = {b.id: b.lang for b in BLOCKS if b.lang not in SHELL | PYTHON | QUIET | {"json", "toml", "yaml", "yml"}}
    assert not unknown, f"code blocks in a language this test does not know: {unknown}"


# -- fixtures: one set of names serves every block --------------------------------------------------

def _write_split(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            w.writerow([" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) + f" {seed}-{i}",
                        rng.randrange(3)])  # label ids: the tiny model's labels are negative, neutral, positive


@pytest.fixture(scope="session")
def doc_fixtures(bert_cls, tmp_path_factory) -> Path:
    from toolchain import optimise

    root = tmp_path_factory.mktemp("doc-fixtures")
    shutil.copytree(bert_cls, root / "my-checkpoint")
    for name, n, seed in (("train", 40, 1), ("validation", 30, 2), ("test", 30, 3)):
        _write_split(root / f"{name}.csv", n, seed)
    optimise(root / "my-checkpoint", root / "model")  # the default recipe: cpu int8
    return root


@pytest.fixture
def doc_cwd(doc_fixtures, tmp_path, tmp_path_factory, monkeypatch):
    """A fresh folder with the fixtures; `model/` is copied in by `place_model`."""
    work = tmp_path / "cwd"
    work.mkdir()
    for name in ("my-checkpoint", "train.csv", "validation.csv", "test.csv"):
        src = doc_fixtures / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    monkeypatch.chdir(work)
    # the step cache and the search's study go here, never into the user's ~/.cache
    monkeypatch.setenv("EDGE_TOOLCHAIN_CACHE", str(tmp_path_factory.getbasetemp() / "doc-cache"))

    def place_model() -> None:
        shutil.copytree(doc_fixtures / "model", work / "model")

    return place_model


# -- shell lines ------------------------------------------------------------------------------------

def logical_lines(code: str) -> list[str]:
    """The block's commands: continuation lines joined, a console's `$ ` prompt dropped, output lines left out."""
    out, pending = [], ""
    for raw in code.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line.startswith("$ "):
            line = line[2:]
        if line and not line.startswith("#"):
            out.append(line)
    if pending.strip():
        out.append(pending.strip())
    return out


def command_words(line: str) -> list[str]:
    return shlex.split(line, comments=True)


def parser_for(argv: list[str]):
    """The parser `optimise ARGV` uses, and the arguments it gets (routed the way bench.cli.main routes them)."""
    from bench import cli

    subcommands = cli.SUBCOMMANDS
    if argv and argv[0] in subcommands:
        name, rest = argv[0], argv[1:]
    elif any(a == "--max-accuracy-drop" or a.startswith("--max-accuracy-drop=") for a in argv):
        name, rest = "search", argv
    else:
        name, rest = "export", argv
    return build_parser(subcommands[name][0], name), rest


def build_parser(target: str, name: str):
    """The subcommand's parser: `build_parser()` of the module its entry point is in (or of bench.cli.NAME)."""
    places = [target.split(":")[0], f"bench.cli.{name}"]
    for place in places:
        try:
            module = importlib.import_module(place)
        except ImportError:
            continue
        if hasattr(module, "build_parser"):
            return module.build_parser()
    pytest.fail(f"`optimise {name}`: no build_parser() in {' or '.join(places)}; tests/test_docs.py must learn "
                "where its parser went")


def parse_optimise(argv: list[str], line: str, capsys):
    parser, rest = parser_for(argv)
    try:
        return parser.parse_args(rest)
    except SystemExit as exc:  # toolchain's parser exits 2 with one line
        pytest.fail(f"`{line}` does not parse (exit {exc.code}): {capsys.readouterr().err.strip()}")
    except Exception as exc:  # bench's parsers raise UsageError
        pytest.fail(f"`{line}` does not parse: {exc}")


def run_sh_commands() -> set[str]:
    """The commands run.sh's `case` accepts (`setup) ...`, `demo) ...`)."""
    text = (ROOT / "run.sh").read_text()
    case = text[text.index('case "$cmd" in'):text.index("esac")]
    return {name for m in re.finditer(r"^\s*([a-z][\w|-]*)\)", case, re.M) for name in m[1].split("|")}


def writes_model(block: Block) -> bool:
    """Whether the block writes `model/` itself (then the fixture artifact is not placed there)."""
    if block.lang in PYTHON:
        return bool(re.search(r"""out\s*=\s*["']model/?["']|optimise\([^,()]+,\s*["']model/?["']""", block.code))
    for line in logical_lines(block.code):
        words = command_words(line)
        if words and words[0] in ("optimise", ".venv/bin/optimise"):
            for flag in ("--out", "-o"):
                if flag in words and words.index(flag) + 1 < len(words) and \
                        words[words.index(flag) + 1].rstrip("/") == "model":
                    return True
    return False


def check_shell(block: Block, capsys, place_model) -> None:
    from bench.cli import main as optimise

    if block.not_run is None and not writes_model(block):
        place_model()
    commands = run_sh_commands()
    for line in logical_lines(block.code):
        words = command_words(line)
        if not words:
            continue
        head = words[0]
        if head in ("optimise", ".venv/bin/optimise"):
            parse_optimise(words[1:], line, capsys)
            if block.not_run is None:
                capsys.readouterr()
                rc = optimise(words[1:])
                err = capsys.readouterr().err
                assert rc == 0, f"`{line}` exited {rc}: {err.strip()[-2000:]}"
        elif head == "./run.sh":
            assert len(words) > 1 and words[1] in commands, \
                f"`{line}`: run.sh accepts {sorted(commands)}"
        elif head in ("python", "python3", ".venv/bin/python") and words[1:2] == ["-m"]:
            module = words[2]
            assert importlib.util.find_spec(module) is not None, f"`{line}`: no module {module}"
        elif block.not_run is None:
            pytest.fail(f"`{line}` is neither `optimise`, `./run.sh` nor `python -m`: mark the block "
                        "<!-- not run: REASON --> if it cannot run here")


# -- the test ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_code_block(block: Block, request, capsys):
    if block.not_run is not None:
        assert block.not_run, f"{block.id}: `<!-- not run: -->` needs a reason"
    if block.lang in PYTHON:
        code = compile(block.code, block.id, "exec")
        if block.not_run is None:
            place_model = request.getfixturevalue("doc_cwd")
            if not writes_model(block) and "model" in block.code:
                place_model()
            exec(code, {"__name__": "__docs__"})
    elif block.lang in SHELL:
        place_model = request.getfixturevalue("doc_cwd") if block.not_run is None else (lambda: None)
        check_shell(block, capsys, place_model)
    elif block.lang == "json":
        json.loads(block.code)
    elif block.lang == "toml":
        data = tomllib.loads(block.code)
        if "steps" in data:
            from toolchain import Recipe

            Recipe.from_dict(data)
    elif block.lang in ("yaml", "yml"):
        import yaml

        yaml.safe_load(block.code)


# -- links ------------------------------------------------------------------------------------------

LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
# pages other people are writing at the same time as these docs; once they exist they are checked too
WRITTEN_ELSEWHERE = {"docs/architecture-tasks.md", "docs/development.md"}


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_links_point_to_files_and_headings_that_exist(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for m in LINK.finditer(text):
        target = m["target"]
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            if str(file.relative_to(ROOT)) not in WRITTEN_ELSEWHERE:
                broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"
