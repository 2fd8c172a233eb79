"""The recipes in README.md and docs/*.md, read from their marked code blocks (see docs/development.md, "Recipes
in the docs"), and the comparison of what a command printed with what the docs show.

A fence's info string is the language, then `recipe` (run it) or `no-run` (do not), then for a file `file=NAME`:

- ```` ```console recipe ````: a transcript. `$ ` starts a command (a line ending in `\\` continues it), the
  lines up to the next `$ ` are what it prints. Lines that start with a prompt (`you> `, `email: `, `code: `,
  `Email: `, `Code: `), or that hold a yes/no question's `[y/N] `, show what the person types after it.
- ```` ```sh recipe ````: a script run as it is; it must exit 0, its output is not compared.
- ```` ```python recipe file=example.py ````: a file that a later command uses, saved under that name.
- ```` ```text recipe gateway-console ````: what the gateway (`make run`) prints on its console at start.

In the output shown, `<name>` stands for a value that changes from run to run (an id, a token, a time): it
matches any text on one line, the same text wherever the name comes back in that output, and later commands
and typed lines get the value where they say `<name>`. `<code>` in a command or a typed line is the newest
one-time code on the gateway's console. A line `...` stands for any number of lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Languages whose blocks are commands or programs: each such block says `recipe` or `no-run`.
RUNNABLE_LANGUAGES = {"sh", "shell", "bash", "console", "python", "ts", "typescript", "js", "javascript"}
PROMPTS = ("you> ", "email: ", "code: ", "Email: ", "Code: ")
QUESTION = "[y/N] "
PLACEHOLDER = re.compile(r"<([A-Za-z][\w-]*|\.\.\.)>")
FENCE = re.compile(r"^```(\S*)[ \t]*(.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    marks: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_recipe(self) -> bool:
        return "recipe" in self.marks

    @property
    def file_name(self) -> str | None:
        return next((mark.removeprefix("file=") for mark in self.marks if mark.startswith("file=")), None)


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end] != "```":
            end += 1
        language, marks = opening.group(1), tuple(opening.group(2).split())
        found.append(Block(path, index + 1, language, marks, "\n".join(lines[index + 1 : end]) + "\n"))
        index = end + 1
    return found


@dataclass
class Step:
    """One `$ ` command of a console block and the output the docs show for it."""

    command: str
    expected: list[str] = field(default_factory=list)

    @property
    def typed(self) -> list[tuple[str, str]]:
        """(prompt, what the person types) for each prompt line of the expected output, in order."""
        found: list[tuple[str, str]] = []
        for line in self.expected:
            for prompt in PROMPTS:
                if line.startswith(prompt):
                    found.append((prompt, line[len(prompt) :]))
            # A question whose words change with the data (booking-chat's approval: "Book …? [y/N] y").
            if QUESTION in line:
                found.append((QUESTION, line.split(QUESTION, 1)[1]))
        return found


def steps(block: Block) -> list[Step]:
    """The commands of a console block with their expected output."""
    found: list[Step] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("$ "):
            command = [line[2:]]
            while command[-1].endswith("\\") and index + 1 < len(lines):
                index += 1
                command.append(lines[index])
            found.append(Step("\n".join(command)))
        elif found:
            found[-1].expected.append(line)
        else:
            raise AssertionError(f"{block.where}: output before the first `$ ` command: {line!r}")
        index += 1
    return found


def render_terminal(text: str) -> str:
    """What a terminal shows for `text`: CR returns to the line's start, ESC[K erases to its end, other escape
    sequences are dropped, and each line loses its trailing spaces."""
    text = text.replace("\r\n", "\n")
    shown: list[str] = []
    for raw in text.split("\n"):
        line: list[str] = []
        column = 0
        position = 0
        while position < len(raw):
            char = raw[position]
            if char == "\r":
                column = 0
            elif char == "\x1b":
                sequence = re.match(r"\x1b\[[0-9;?]*([A-Za-z])", raw[position:])
                if sequence is not None:
                    if sequence.group(1) == "K":
                        del line[column:]
                    position += len(sequence.group(0))
                    continue
            else:
                if column < len(line):
                    line[column] = char
                else:
                    line.append(char)
                column += 1
            position += 1
        shown.append("".join(line).rstrip())
    return "\n".join(shown)


def output_pattern(expected: list[str]) -> tuple[re.Pattern[str], dict[str, str]]:
    """A regex for the expected lines (placeholders and `...` lines as described above) and its group names."""
    groups: dict[str, str] = {}  # placeholder name -> regex group name
    parts: list[str] = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        position = 0
        for match in PLACEHOLDER.finditer(line):
            parts.append(re.escape(line[position : match.start()]))
            name = match.group(1)
            if name == "...":
                parts.append(r"[^\n]*?")
            elif name in groups:
                parts.append(f"(?P={groups[name]})")
            else:
                groups[name] = f"g{len(groups)}"
                parts.append(f"(?P<{groups[name]}>[^\n]+?)")
            position = match.end()
        parts.append(re.escape(line[position:].rstrip()) + r"\n")
    return re.compile("".join(parts)), groups


def compare(expected: list[str], printed: str) -> dict[str, str] | None:
    """The placeholders' values when `printed` is what the docs show, else None."""
    pattern, groups = output_pattern(expected)
    text = "\n".join(line.rstrip() for line in printed.rstrip("\n").split("\n")) + "\n" if printed.strip() else ""
    match = pattern.fullmatch(text)
    if match is None:
        return None
    return {name: match.group(group) for name, group in groups.items()}


def fill(text: str, values: dict[str, str], where: str) -> str:
    """`text` with each `<name>` replaced by its value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise AssertionError(f"{where}: <{name}> has no value yet (no output before it showed it)")
        return values[name]

    return PLACEHOLDER.sub(value, text)
