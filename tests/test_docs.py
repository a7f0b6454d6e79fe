"""The documentation stays true: every command in a `bash` block of README.md, CONTRIBUTING.md and docs/*.md is one
this repository can run, with options its scripts accept; the paths the commands name and the relative links of
every page exist; every file the tests read has a provenance note. What is checked per kind of command is listed in
CONTRIBUTING.md, "Documentation"."""

import configparser
import functools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
PAGE_IDS = [str(page.relative_to(REPO)) for page in PAGES]
# A command-line argument under one of these folders is a repository path, so it must exist.
REPOSITORY_FOLDERS = ("adatad/", "training/", "benchmarks/", "conversion_scripts/", "tests/", "docs/")
PYTHONS = {"python", "python3", ".venv/bin/python"}


def fenced_blocks(text: str, language: str) -> list[tuple[int, str]]:
    """(first line number, body) of every fenced block opened with ```language."""
    blocks, body, start, inside = [], [], 0, False
    for number, line in enumerate(text.splitlines(), 1):
        if not inside and line.strip() == f"```{language}":
            inside, body, start = True, [], number + 1
        elif inside and line.strip().startswith("```"):
            inside = False
            blocks.append((start, "\n".join(body)))
        elif inside:
            body.append(line)
    return blocks


def shell_commands(block: str) -> list[tuple[int, str, list[str] | str]]:
    """The commands of a bash block, each with its line offset in the block: ("argv", tokens) per command
    (continuations joined, comments dropped, leading VAR=value assignments dropped) and ("python-stdin", code) for a
    `python - <<'TAG'` here-document."""
    commands, lines = [], block.splitlines()
    index = 0
    while index < len(lines):
        offset, line = index, lines[index]
        while line.rstrip().endswith("\\") and index + 1 < len(lines):
            index += 1
            line = line.rstrip()[:-1] + " " + lines[index]
        index += 1
        heredoc = re.search(r"<<\s*'?(\w+)'?", line)
        tokens = shlex.split(line[: heredoc.start()] if heredoc else line, comments=True)
        while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
            tokens = tokens[1:]
        if tokens:
            commands.append((offset, "argv", tokens))
        if heredoc:
            end = lines.index(heredoc.group(1), index)
            commands.append((offset, "python-stdin", "\n".join(lines[index:end])))
            index = end + 1
    return commands


def page_commands(page: Path):
    return [(page, start + offset, kind, command)
            for start, block in fenced_blocks(page.read_text(), "bash")
            for offset, kind, command in shell_commands(block)]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z][\w-]*):", (REPO / "Makefile").read_text(), re.M))


def console_scripts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    entries = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(entry.replace(" ", "").split("=") for entry in entries)


def setup_extras() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return set(config["options.extras_require"])


def split_launch(tokens: list[str]) -> tuple[list[str], list[str]]:
    """`accelerate launch [launcher options] script.py|-m module [options]` -> (launcher options, script + options)."""
    for position, token in enumerate(tokens[2:], 2):
        if token.endswith(".py") or token == "-m":
            return tokens[2:position], tokens[position:]
    raise AssertionError(f"`{shlex.join(tokens)}` names no script")


def help_invocation(tokens: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    """(the argv printing the help that documents the command's options, the options used), or None when the
    command has no options to check."""
    scripts = console_scripts()
    if tokens[0] in scripts:
        module, function = scripts[tokens[0]].split(":")
        code = f"import sys; sys.argv[0] = {tokens[0]!r}; from {module} import {function}; sys.exit({function}())"
        return (sys.executable, "-c", code, "--help"), tokens[1:]
    if tokens[:2] == ["accelerate", "launch"]:
        _, tokens = split_launch(tokens)
        if tokens[0] == "-m":
            return (sys.executable, "-m", tokens[1], "--help"), tokens[2:]
        return (sys.executable, tokens[0], "--help"), tokens[1:]
    if tokens[0] in PYTHONS and tokens[1:2] == ["-m"] and tokens[2] != "pytest":
        # `python -m module [subcommand] ...`: the help of the subcommand when one is given
        subcommand = tokens[3:4] if len(tokens) > 3 and not tokens[3].startswith("-") else []
        return (sys.executable, "-m", tokens[2], *subcommand, "--help"), tokens[3:]
    if tokens[0] in PYTHONS and tokens[1].endswith(".py"):
        return (sys.executable, tokens[1], "--help"), tokens[2:]
    return None


# Runs each `--help` invocation as `python` would (`-c`, `-m`, a script path) in one interpreter, so the imports
# are paid once: [exit status, standard output, standard error] per invocation, as JSON.
HELP_RUNNER = """
import contextlib, io, json, os, runpy, sys, traceback
results = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_path = sys.argv, sys.path[0]
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if argv[0] == "-c":
                sys.argv = ["-c", *argv[2:]]
                exec(argv[1], {"__name__": "__main__"})
            elif argv[0] == "-m":
                sys.argv = argv[1:]
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv, sys.path[0] = list(argv), os.path.dirname(os.path.realpath(argv[0]))
                runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) or exit.code is None else 1
            if not isinstance(exit.code, int) and exit.code is not None:
                print(exit.code, file=sys.stderr)
        except BaseException:
            code = 1
            traceback.print_exc()
        finally:
            sys.argv, sys.path[0] = saved_argv, saved_path
    results.append([code or 0, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


@functools.cache
def help_texts() -> dict[tuple[str, ...], tuple[int, str, str]]:
    """(exit status, stdout, stderr) of every `--help` invocation the pages' commands need, from one fresh
    interpreter started in the repository root."""
    invocations = sorted({invocation[0] for page in PAGES for _, _, kind, command in page_commands(page)
                          if kind == "argv" and (invocation := help_invocation(command)) is not None})
    assert all(argv[0] == sys.executable for argv in invocations)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", HELP_RUNNER], input=json.dumps([argv[1:] for argv in invocations]),
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {argv: tuple(found) for argv, found in zip(invocations, json.loads(result.stdout.splitlines()[-1]))}


def help_text(argv: tuple[str, ...]) -> str:
    code, out, err = help_texts()[argv]
    assert code == 0, f"`{' '.join(argv[1:])}` failed:\n{err[-2000:]}"
    return out


def shipped_preset(name: str) -> Path:
    return REPO / "adatad" / "presets" / f"{name}.json"


def check_command(tokens: list[str]) -> list[str]:
    """Problems of one command that need no subprocess (unknown command, missing file, missing make target)."""
    text = shlex.join(tokens)
    problems = []
    paths = [token.split("=", 1)[-1] for token in tokens if token.split("=", 1)[-1].startswith(REPOSITORY_FOLDERS)]
    problems += [f"`{text}`: {path} does not exist" for path in paths
                 if "*" not in path and "{" not in path and not (REPO / path).exists()]
    for flag, value in zip(tokens, tokens[1:]):
        if flag == "--preset" and not value.endswith(".json") and not shipped_preset(value).is_file():
            problems.append(f"`{text}`: no preset named {value}")
    if tokens[0] == "make":
        problems += [f"`{text}`: no make target {target}" for target in tokens[1:] if target not in makefile_targets()]
    elif tokens[0] == "pip":
        extras = re.findall(r"\[([\w,]+)\]", text)
        problems += [f"`{text}`: no extra {extra}" for group in extras for extra in group.split(",")
                     if extra not in setup_extras()]
    elif tokens[0] in console_scripts():
        pass
    elif tokens[:2] == ["accelerate", "launch"]:
        launcher, script = split_launch(tokens)
        if script[0] == "-m":
            if not (REPO / f"{script[1].replace('.', '/')}.py").is_file():
                problems.append(f"`{text}`: no module {script[1]} in the repository")
        elif not (REPO / script[0]).is_file():
            problems.append(f"`{text}`: no script {script[0]}")
    elif tokens[0] in PYTHONS and tokens[1:3] == ["-m", "pytest"]:
        files = [token.split("::")[0] for token in tokens[3:] if token.split("::")[0].endswith(".py")]
        problems += [f"`{text}`: no test file {name}" for name in files if not (REPO / name).is_file()]
    elif tokens[0] in PYTHONS and tokens[1:2] == ["-m"]:
        module = tokens[2].replace(".", "/")
        if not ((REPO / f"{module}.py").is_file() or (REPO / module / "__main__.py").is_file()):
            problems.append(f"`{text}`: no module {tokens[2]} in the repository")
        if tokens[2] == "adatad.presets" and len(tokens) > 3 and "=" not in tokens[3] \
                and not shipped_preset(tokens[3]).is_file():
            problems.append(f"`{text}`: no preset named {tokens[3]}")
    elif tokens[0] in PYTHONS and len(tokens) > 1 and tokens[1].endswith(".py"):
        if not (REPO / tokens[1]).is_file():
            problems.append(f"`{text}`: no script {tokens[1]}")
    else:
        problems.append(f"`{text}`: no check is defined for this kind of command (add one to tests/test_docs.py)")
    return problems


def test_command_parser_reads_continuations_comments_and_heredocs():
    block = "FOO=1 make test   # comment\npython a.py --x 1 \\\n    --y 2\npython - <<'PY'\nprint(1)\nPY\nmake demo"
    assert shell_commands(block) == [
        (0, "argv", ["make", "test"]), (1, "argv", ["python", "a.py", "--x", "1", "--y", "2"]),
        (3, "argv", ["python", "-"]), (3, "python-stdin", "print(1)"), (6, "argv", ["make", "demo"]),
    ]
    assert check_command(["make", "no-such-target"]) == ["`make no-such-target`: no make target no-such-target"]
    assert "no check is defined" in check_command(["rm", "-rf", "outputs"])[0]
    assert "does not exist" in check_command(["python", "benchmarks/bench_nothing.py"])[0]


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_commands_name_existing_scripts_files_and_targets(page):
    problems = []
    for _, line, kind, command in page_commands(page):
        if kind == "python-stdin":
            try:
                compile(command, f"{page.name}:{line}", "exec")
            except SyntaxError as error:
                problems.append(f"line {line}: the here-document does not compile: {error}")
        elif command != ["python", "-"] and command != [".venv/bin/python", "-"]:
            problems += [f"line {line}: {problem}" for problem in check_command(command)]
    assert not problems, f"{page.relative_to(REPO)}:\n" + "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_command_options_appear_in_their_help(page):
    problems = []
    for _, line, kind, command in page_commands(page):
        invocation = help_invocation(command) if kind == "argv" else None
        if invocation is None:
            continue
        argv, arguments = invocation
        text = help_text(argv)
        for option in {argument.split("=", 1)[0] for argument in arguments if argument.startswith("--")}:
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text):
                program = command[0] if command[0] in console_scripts() else " ".join(argv[1:-1])
                problems.append(f"line {line}: `{shlex.join(command)}`: {option} is not an option of {program}")
    assert not problems, f"{page.relative_to(REPO)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_python_blocks_compile(page):
    for line, block in fenced_blocks(page.read_text(), "python"):
        compile(block, f"{page.relative_to(REPO)}:{line}", "exec")


@pytest.mark.usefixtures("one_torch_thread")
def test_readme_python_runs_on_a_tiny_saved_model(tmp_path, tests_dir):
    from test_pipeline import DURATIONS, save_tiny_model

    # The README's placeholders -> a tiny random model saved here and a 10-second clip.
    stand_ins = {
        '"path/to/adatad-model"': repr(str(save_tiny_model(tmp_path / "model"))),
        '"video.mp4"': repr(str(tests_dir / "data" / "videos" / "demo.mp4")),
    }
    blocks = fenced_blocks((REPO / "README.md").read_text(), "python")
    assert blocks
    for line, block in blocks:
        code = block
        for placeholder, stand_in in stand_ins.items():
            code = code.replace(placeholder, stand_in)
        assert "path/to/" not in code, f"README.md:{line}: a placeholder without a stand-in in this test"
        namespace = {}
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
        for detections in namespace.get("detections", []):
            assert len(detections["scores"]) > 0
            assert 0 <= detections["segments"].min() and detections["segments"].max() <= DURATIONS["demo.mp4"]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation other than - and _ dropped, spaces -> -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {github_anchor(match) for match in re.findall(r"^#+\s+(.*)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_relative_links_and_anchors_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{target}: {resolved} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading with anchor #{anchor} in {resolved.relative_to(REPO)}")
    assert not problems, f"{page.relative_to(REPO)}:\n" + "\n".join(problems)


def test_docs_index_links_every_page():
    index = (REPO / "docs" / "README.md").read_text()
    linked = set(re.findall(r"\]\(([\w-]+\.md)[)#]", index))
    pages = {page.name for page in (REPO / "docs").glob("*.md")} - {"README.md"}
    assert pages <= linked, f"docs/README.md does not link {sorted(pages - linked)}"


def test_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text()
    assert 100 <= len(readme.splitlines()) <= 250
    status = readme[: readme.index("## Install")]
    for promise in ("No trained AdaTAD checkpoint", "make demo", "no GPU run", "no training on a real benchmark"):
        assert promise in status, promise


def provenance_notes(path: Path) -> str:
    """Every note that may describe a file under tests/: the SOURCES files and the READMEs of its folders."""
    notes = [REPO / "tests" / "SOURCES.md", REPO / "tests" / "data" / "SOURCES.md"]
    tests = REPO / "tests"
    notes += [folder / "README.md" for folder in path.parents if tests in folder.parents]
    return "\n".join(note.read_text() for note in notes if note.is_file())


def test_every_test_file_has_a_provenance_note():
    unexplained = []
    for top in ("data", "fixtures", "seed"):
        for path in sorted((REPO / "tests" / top).rglob("*")):
            if path.is_dir() or path.name in ("README.md", "SOURCES.md"):
                continue
            notes = provenance_notes(path)
            if path.name not in notes and f"{path.parent.name}/" not in notes:
                unexplained.append(str(path.relative_to(REPO)))
    assert not unexplained, "files without a provenance note (tests/SOURCES.md):\n" + "\n".join(unexplained)


def recorded_digests() -> dict[Path, str]:
    """{file: first 16 hex digits of its SHA-256} from the tables of tests/data/SOURCES.md."""
    digests, folder = {}, None
    for line in (REPO / "tests" / "data" / "SOURCES.md").read_text().splitlines():
        heading = re.match(r"#+ ([\w/]+/) ", line)
        if heading:
            folder = heading.group(1)
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        digest = next((cell for cell in cells if re.fullmatch(r"[0-9a-f]{16}", cell)), None)
        if digest and folder:
            digests[REPO / "tests" / "data" / folder / re.search(r"`([^`]+)`", cells[0]).group(1)] = digest
    return digests


def test_copied_files_are_unchanged():
    import hashlib

    digests = recorded_digests()
    assert len(digests) >= 18, sorted(digests)
    changed = [f"{path.relative_to(REPO)}: recorded {digest}, now {hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
               for path, digest in digests.items()
               if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest()[:16] != digest]
    assert not changed, "\n".join(changed)
