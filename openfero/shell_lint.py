"""Warnings about how a definition hands alert data to a shell or a command. No I/O here.

Two mistakes turn a label into code or into an option, and both can be seen
in a definition before any alert arrives:

- a template interpolated into a ``sh -c`` script: inside double quotes,
  ``shell_quote`` protects nothing (``$(...)`` still runs), and without
  ``shell_quote`` the value is shell text;
- an alert-derived value passed to a command as a positional argument with
  no ``--`` before it: a label such as ``--all`` becomes an option.

The safe way, which the shipped examples follow: alert values reach a
script only as environment variables, double-quoted (``"$OPENFERO_POD"``),
and reach a command as ``--option="$VAR"`` or after ``--``. These are
heuristics over a shell's quoting and word rules, enough for the scripts
definitions hold; they never change what is rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh"}
_ACTION = re.compile(r"{{.*?}}", re.S)
_PLACEHOLDER = "\x00{}\x00"
_PLACEHOLDER_RE = re.compile(r"\x00(\d+)\x00")
_SHELL_QUOTED = re.compile(r"\|\s*shell_quote\s*-?}}$", re.S)
_VARIABLE = r"\$(?:{{({names})}}|({names})\b)"
# Words after which a value is not an argument of a command: keywords, and commands whose arguments cannot be options.
_NOT_COMMANDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "in", "case", "esac", "!", "{", "}", "[", "[[", "test", "export", "local", "readonly"}
_SEPARATORS = {";", "&", "|", "&&", "||", "\n", "(", ")", ";;"}


@dataclass(frozen=True)
class Word:
    text: str  # as written, quotes kept, template actions as placeholders
    quoted_actions: tuple[int, ...]  # placeholders inside double quotes
    bare_actions: tuple[int, ...]  # placeholders outside any quotes


def _words(script: str) -> Iterator[Word | str]:
    """The script's words and separators, with where each template action sits in the quoting."""
    word: list[str] = []
    quoted: list[int] = []
    bare: list[int] = []
    quote = ""
    i = 0

    def flush() -> Iterator[Word]:
        if word:
            yield Word("".join(word), tuple(quoted), tuple(bare))
        word.clear()
        quoted.clear()
        bare.clear()

    while i < len(script):
        char = script[i]
        placeholder = _PLACEHOLDER_RE.match(script, i)
        if placeholder:
            (quoted if quote == '"' else bare if not quote else []).append(int(placeholder.group(1)))
            word.append(placeholder.group(0))
            i = placeholder.end()
            continue
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"' and i + 1 < len(script):
                word.append(char)
                i += 1
                char = script[i]
            word.append(char)
        elif char in "'\"":
            quote = char
            word.append(char)
        elif char == "$" and script[i + 1 : i + 2] == "(":
            yield from flush()  # a command substitution: its words are a command of their own
            yield "("
            i += 1
        elif char == "\\" and i + 1 < len(script):
            word.append(script[i : i + 2])
            i += 1
        elif char == "#" and not word:
            end = script.find("\n", i)
            i = len(script) if end == -1 else end
            continue
        elif char in " \t":
            yield from flush()
        elif char in ";&|()\n":
            yield from flush()
            double = script[i : i + 2]
            yield double if double in ("&&", "||", ";;") else char
            i += len(double) - 1 if double in ("&&", "||", ";;") else 0
        else:
            word.append(char)
        i += 1
    yield from flush()


def _commands(script: str) -> Iterator[list[Word]]:
    command: list[Word] = []
    for item in _words(script):
        if isinstance(item, str):
            if command:
                yield command
            command = []
        else:
            command.append(item)
    if command:
        yield command


def _script(container: dict[str, Any]) -> tuple[str, str] | None:
    """(field, script) when the container runs ``<shell> -c <script>``."""
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    fields = [f"command[{i}]" for i in range(len(container.get("command") or []))] + [f"args[{i}]" for i in range(len(container.get("args") or []))]
    if len(argv) >= 3 and isinstance(argv[0], str) and argv[0].rsplit("/", 1)[-1] in SHELLS:
        for index in range(1, len(argv) - 1):
            if argv[index] == "-c" or (isinstance(argv[index], str) and re.fullmatch(r"-[a-z]*c", argv[index] or "")):
                script = argv[index + 1]
                return (fields[index + 1], script) if isinstance(script, str) else None
    return None


def _alert_variables(container: dict[str, Any]) -> set[str]:
    """Env vars of the container that hold alert data: the injected ones and those the definition templates."""
    names = {"OPENFERO_[A-Z0-9_]+"}
    for var in container.get("env") or []:
        if isinstance(var, dict) and "{{" in str(var.get("value", "")):
            names.add(re.escape(str(var.get("name"))))
    return names


def container_warnings(container: dict[str, Any], where: str) -> list[str]:
    """Warnings for one container of a definition (unrendered); ``where`` names the container."""
    warnings: list[str] = []
    found = _script(container)
    variables = re.compile(_VARIABLE.format(names="|".join(sorted(_alert_variables(container)))))
    if found is None:
        argv = [str(part) for part in [*(container.get("command") or []), *(container.get("args") or [])]]
        for position, part in enumerate(argv[1:], 1):
            if part == "--":
                break
            if part.lstrip().startswith("{{"):
                warnings.append(f"{where}: argument {position} starts with alert data and no `--` comes before it: a label such as --all becomes an option")
        return warnings
    field, script = found
    actions = _ACTION.findall(script)
    marked = _ACTION.sub(lambda m, n=iter(range(len(actions))): _PLACEHOLDER.format(next(n)), script)
    for command in _commands(marked):
        for word in command:
            for n in word.quoted_actions:
                warnings.append(
                    f"{where}.{field}: {actions[n]} is inside double quotes in a shell script, where shell_quote protects nothing; "
                    "pass the value as an environment variable and write \"$VAR\""
                )
            for n in word.bare_actions:
                if not _SHELL_QUOTED.search(actions[n]):
                    warnings.append(f"{where}.{field}: {actions[n]} is pasted into a shell script unquoted; pass it as an environment variable and write \"$VAR\"")
        warnings += _positional_warnings(command, variables, f"{where}.{field}", actions)
    return warnings


def _positional_warnings(command: list[Word], variables: re.Pattern[str], where: str, actions: list[str]) -> list[str]:
    name = command[0].text.strip("'\"")
    if name in _NOT_COMMANDS or "=" in name.split("/")[0]:
        return []
    warnings = []
    for position, word in enumerate(command[1:], 1):
        text = word.text.lstrip("'\"")
        if text == "--":
            break
        if name == "printf" and position >= 2:
            continue  # printf's arguments after the format are values, never options
        starts_with_action = _PLACEHOLDER_RE.match(text)
        starts_with_variable = variables.match(text)
        if starts_with_action or starts_with_variable:
            shown = actions[int(starts_with_action.group(1))] if starts_with_action else starts_with_variable.group(0)  # type: ignore[union-attr]
            warnings.append(
                f"{where}: {shown} is passed to {name} as a positional argument with no `--` before it: "
                f"a label such as --all becomes an option; write -- before it, or --option=\"$VAR\""
            )
    return warnings
