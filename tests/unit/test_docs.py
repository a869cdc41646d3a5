"""The docs tell the truth: their links lead somewhere, the tests and files they cite exist,
every `saga` command they show is one, and every setting is documented as the code reads it."""

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import TypeAdapter

from saga.cli.main import app
from saga.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOC_IDS = [str(doc.relative_to(ROOT)) for doc in DOCS]

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)([^`]+?)\1")
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# tests/unit/x.py, unit/x.py, e2e/x.py::test_name, integration/x.py::test_prefix_…
CITED_TEST = re.compile(
    r"(?<![\w/.-])(?:tests/)?((?:unit|e2e|integration)/[\w/]+\.py)(?:::(\w+)(…)?)?"
)
# A file of the project named in the docs: saga/settings.py, examples/fanout/x.yaml, .ci/run.
PROJECT_PATH = re.compile(
    r"(?<![\w/.:-])((?:saga|contracts|services|bench|examples|tests|\.ci)/[\w./-]*[\w])(?![\w/])"
)
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", "(", ")", "$(", ">", "<"}
SETTING = re.compile(r"\bSAGA_[A-Z][A-Z0-9_]*")
# Words that look like a variable and are not: the CLI's placeholder for a saga's id.
NOT_SETTINGS = {"SAGA_ID"}


@dataclass(frozen=True)
class Doc:
    """A markdown file split into what its checks read."""

    path: Path
    prose: str  # every line outside fenced code blocks
    blocks: list[tuple[str, str]]  # (language, text) of each fenced code block

    def inline_code(self) -> list[str]:
        """The text of every inline code span, a table's escaped pipe as a plain one."""
        return [m[2].strip().replace("\\|", "|") for m in INLINE_CODE.finditer(self.prose)]


@cache
def read(path: Path) -> Doc:
    """The file, its prose apart from its fenced code blocks."""
    prose: list[str] = []
    blocks: list[tuple[str, str]] = []
    fence: str | None = None
    language, block = "", list[str]()
    for line in path.read_text(encoding="utf-8").splitlines():
        opening = FENCE.match(line.strip())
        if fence is None and opening:
            fence, language, block = opening[1], opening[2].lower(), []
        elif fence is not None and line.strip().startswith(fence):
            blocks.append((language, "\n".join(block)))
            fence = None
        elif fence is not None:
            block.append(line)
        else:
            prose.append(line)
    return Doc(path, "\n".join(prose), blocks)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: markup and punctuation dropped, spaces as '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link reads as its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every heading's anchor in a markdown file (repeats numbered, as GitHub numbers them)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in read(path).prose.splitlines():
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading[2])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


# -- links -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(path: Path) -> None:
    doc = read(path)
    broken = []
    for target in LINK.findall(doc.prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {file_part}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert broken == []


# -- cited tests and files -------------------------------------------------------------------


@cache
def functions(test_file: Path) -> frozenset[str]:
    """The functions a test file defines, at its top level and in its classes."""
    tree = ast.parse(test_file.read_text(encoding="utf-8"))
    bodies = [tree.body, *(n.body for n in tree.body if isinstance(n, ast.ClassDef))]
    return frozenset(
        node.name
        for body in bodies
        for node in body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    )


def _all_text(doc: Doc) -> str:
    return "\n".join([doc.prose, *(text for _, text in doc.blocks)])


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_every_cited_test_exists(path: Path) -> None:
    missing = []
    for citation in CITED_TEST.finditer(_all_text(read(path))):
        file, name, prefix = citation[1], citation[2], citation[3]
        test_file = TESTS / file
        if not test_file.is_file():
            missing.append(f"{citation[0]}: no file tests/{file}")
        elif name is not None and not (
            any(f.startswith(name) for f in functions(test_file))
            if prefix
            else name in functions(test_file)
        ):
            missing.append(f"{citation[0]}: no test {name}{prefix or ''} in tests/{file}")
    assert missing == []


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_every_project_file_named_exists(path: Path) -> None:
    missing = [
        named
        for named in dict.fromkeys(PROJECT_PATH.findall(_all_text(read(path))))
        if not (ROOT / named).exists()
    ]
    assert missing == []


# -- saga commands ---------------------------------------------------------------------------


def _tokens(line: str) -> list[str]:
    """A shell line's words and operators; a placeholder (<saga_id>) is one word."""
    line = re.sub(r"<[^<>\n]*>", "PLACEHOLDER", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _commands(tokens: list[str]) -> Iterator[list[str]]:
    """The arguments of each `saga` run in a shell line: `saga …`, `X=1 saga …`,
    `.venv/bin/saga …`, `python -m saga …`, `docker compose exec api saga …`."""
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token not in SHELL_OPERATORS:
            segment.append(token)
            continue
        words = [t for t in segment if not re.fullmatch(r"[A-Za-z_]\w*=.*", t)] or [""]
        for i, word in enumerate(words):
            runs_saga = i == 0 or words[i - 1] == "-m" or (i >= 2 and words[i - 2] == "exec")
            if (word == "saga" or word.endswith("/bin/saga")) and runs_saga:
                yield words[i + 1 :]
                break
        segment = []


def _shell_lines(text: str) -> Iterator[str]:
    """A code block's commands: continued lines joined, a quote left open read on."""
    pending = ""
    for line in text.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        try:
            _tokens(pending)
        except ValueError:  # a quote spans lines: read on
            continue
        yield pending
        pending = ""
    if pending:
        yield pending


def shown_commands(doc: Doc) -> Iterator[tuple[str, list[str]]]:
    """Each `saga` command the doc shows, in shell code blocks and in inline code, as
    (what the doc says, its arguments)."""
    for language, text in doc.blocks:
        if language in SHELL_LANGUAGES:
            for line in _shell_lines(text):
                for args in _commands(_tokens(line)):
                    yield line.strip(), args
    for code in doc.inline_code():
        try:
            tokens = _tokens(code.replace("|", "/"))  # `stock|payment|order`: one of
        except ValueError:
            continue  # not shell: an unbalanced quote
        for args in _commands(tokens):
            yield code, args


def _is_option(param: Any) -> bool:
    return any(opt.startswith("-") for opt in param.opts)


def _option(command: Any, name: str) -> Any | None:
    """The command's option of that name (`--json`, `-V`), or None."""
    for param in command.params:
        if _is_option(param) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def problem(args: list[str]) -> str | None:
    """What is wrong with `saga <args>`: a command or option the CLI does not have."""
    command: Any = typer.main.get_command(app)
    path = ["saga"]
    words = iter(arg.strip("[]") for arg in args)
    for word in words:
        if not word:
            continue
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            if name == "--help":
                continue
            option = _option(command, name)
            if option is None:
                return f"`{' '.join(path)}` has no option {name}"
            if not option.is_flag and not option.count and "=" not in word:
                next(words, None)  # the option's value
        elif getattr(command, "commands", None) is not None:
            if word not in command.commands:
                return f"`{' '.join(path)}` has no command {word!r}"
            command = command.commands[word]
            path.append(word)
        # Any other word is an argument or a placeholder (ID, EMAIL, <id>, …).
    return None


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_every_saga_command_shown_exists_with_its_options(path: Path) -> None:
    wrong = [
        f"{shown}: {why}"
        for shown, args in shown_commands(read(path))
        if (why := problem(args)) is not None
    ]
    assert wrong == []


def test_the_command_check_finds_a_renamed_command_or_option() -> None:
    assert problem(["stock", "set", "apple", "--quantity", "10"]) is None
    assert problem(["dlq", "replay", "--all"]) is None
    assert problem(["stock", "put", "apple"]) == "`saga stock` has no command 'put'"
    assert problem(["list", "--state", "failed"]) == "`saga list` has no option --state"
    assert list(_commands(_tokens("SAGA_X=1 .venv/bin/saga demo --json | jq"))) == [
        ["demo", "--json"]
    ]


def test_the_readme_s_test_command_is_the_one_ci_runs() -> None:
    readme = read(ROOT / "README.md")
    shown = {line.split("#")[0].strip() for _, text in readme.blocks for line in text.splitlines()}
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ".venv/bin/saga demo" in shown
    assert ".venv/bin/pytest" in shown
    assert ".venv/bin/pytest" in [line.strip() for line in ci]


# -- settings --------------------------------------------------------------------------------


def configuration_rows() -> dict[str, str]:
    """The configuration table (`| variable | default | meaning |`): variable -> default."""
    rows: dict[str, str] = {}
    for doc in map(read, DOCS):
        lines = doc.prose.splitlines()
        for i, line in enumerate(lines):
            if re.fullmatch(r"\|\s*variable\s*\|\s*default\s*\|\s*meaning\s*\|", line.strip()):
                for row in lines[i + 2 :]:
                    if not row.startswith("|"):
                        break
                    cells = [c.strip() for c in row.strip().strip("|").split("|")]
                    rows[cells[0].strip("`")] = cells[1]
    return rows


def test_every_setting_is_in_the_configuration_table_and_nothing_else_is() -> None:
    documented = {name.removeprefix("SAGA_").lower() for name in configuration_rows()}
    assert documented == set(Settings.model_fields)


@pytest.mark.parametrize("variable", sorted(configuration_rows()))
def test_the_configuration_table_gives_each_setting_s_default(variable: str) -> None:
    field = Settings.model_fields[variable.removeprefix("SAGA_").lower()]
    shown = configuration_rows()[variable]
    value = re.fullmatch(r"`([^`]*)`", shown)
    if value is None:  # in words: unset, or the definition's own
        assert field.default is None
    else:
        assert TypeAdapter(field.rebuild_annotation()).validate_python(value[1]) == field.default


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_every_saga_variable_named_is_one_that_is_read(path: Path) -> None:
    test_settings = set(re.findall(r"\bSAGA_TEST_[A-Z0-9_]+", (TESTS / "servers.py").read_text()))
    named = set(SETTING.findall(_all_text(read(path))))
    unknown = {
        name
        for name in named - test_settings - NOT_SETTINGS
        if name.removeprefix("SAGA_").lower() not in Settings.model_fields
    }
    assert unknown == set()
