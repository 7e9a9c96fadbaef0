"""Warnings about how a definition hands alert data to a shell or a command. No I/O here.

Alert data becomes code when shell text is built from it, and an option
when it is passed where a command reads options. Both can be seen in a
definition before any alert arrives:

- a template pasted into a ``sh -c`` script: inside double or single quotes
  or a comment, ``shell_quote`` protects nothing (``$(...)``, a quote or a
  newline in the label still ends the context); unquoted without
  ``shell_quote`` the value is shell text;
- alert data run again as code: ``eval``, a nested ``sh -c``, a here-document
  fed to a shell, ``source``;
- an alert-derived value expanded without double quotes: word splitting and
  globbing turn one label into several arguments;
- an alert-derived value as a positional argument with no ``--`` before it
  (so ``--all`` is an option), also through ``xargs``, which makes
  arguments of its input.

Alert-derived values are the template actions, the ``OPENFERO_*`` variables,
variables the definition sets from a template, and variables a script
copies them into. The safe way, which the shipped examples follow: alert
values reach a script only as environment variables, double-quoted
(``"$OPENFERO_POD"``), and reach a command as ``--option="$VAR"`` or after
``--``. These are heuristics over a shell's quoting and word rules, enough
for the scripts definitions hold; they never change what is rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dispatcher.naming import ENV_PREFIX

SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh"}
_ACTION = re.compile(r"{{.*?}}", re.S)
_PLACEHOLDER = "\x00{}\x00"
_PLACEHOLDER_RE = re.compile(r"\x00(\d+)\x00")
_SHELL_QUOTED = re.compile(r"\|\s*shell_quote\s*-?}}$", re.S)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
# Words after which a value is not an argument of a command: keywords, and commands whose arguments cannot be options.
_NOT_COMMANDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "in", "case", "esac", "!", "{", "}", "[", "[[", "test", "export", "local", "readonly"}
_RE_EVALUATING = {"eval", "source", "."}


@dataclass(frozen=True)
class Expansion:
    kind: str  # "action" (a template action), "var" (a $NAME or ${NAME...})
    name: str  # the placeholder's number, or the variable's name
    quoting: str  # "", '"', "'" or "#" (in a comment)
    at_start: bool  # whether the word's value starts with it


@dataclass
class Word:
    text: str = ""  # as written, quotes kept, template actions as placeholders
    expansions: list[Expansion] = field(default_factory=list)


def _words(script: str) -> Iterator[Word | str]:
    """The script's words and separators, with each expansion and the quoting it sits in."""
    word = Word()
    quote = ""
    i = 0

    def flush() -> Iterator[Word]:
        nonlocal word
        if word.text or word.expansions:
            yield word
        word = Word()

    def note(kind: str, name: str, quoting: str) -> None:
        word.expansions.append(Expansion(kind, name, quoting, not word.text.strip("'\"")))

    while i < len(script):
        char = script[i]
        placeholder = _PLACEHOLDER_RE.match(script, i)
        if placeholder:
            note("action", placeholder.group(1), quote)
            word.text += placeholder.group(0)
            i = placeholder.end()
            continue
        if char == "$" and quote != "'":
            name = _NAME.match(script, i + 2 if script[i + 1 : i + 2] == "{" else i + 1)
            if name:
                note("var", name.group(0), quote)
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"' and i + 1 < len(script):
                word.text += char
                i += 1
                char = script[i]
            word.text += char
        elif char in "'\"":
            quote = char
            word.text += char
        elif char == "$" and script[i + 1 : i + 2] == "(":
            yield from flush()  # a command substitution: its words are a command of their own
            yield "("
            i += 1
        elif char == "\\" and i + 1 < len(script):
            word.text += script[i : i + 2]
            i += 1
        elif char == "#" and not word.text:
            end = script.find("\n", i)
            end = len(script) if end == -1 else end
            for number in _PLACEHOLDER_RE.findall(script, i, end):
                yield Word("#", [Expansion("action", number, "#", False)])
            i = end
            continue
        elif char in " \t":
            yield from flush()
        elif char in ";&|()\n":
            yield from flush()
            double = script[i : i + 2]
            separator = double if double in ("&&", "||", ";;") else char
            yield separator
            i += len(separator) - 1
        else:
            word.text += char
        i += 1
    yield from flush()


@dataclass
class Command:
    words: list[Word]
    piped_from: list[Command] = field(default_factory=list)  # the commands before it in its pipeline

    @property
    def name(self) -> str:
        for w in self.words:
            if not _ASSIGNMENT.match(w.text):
                return w.text.strip("'\"")
        return ""


def _commands(script: str) -> Iterator[Command]:
    words: list[Word] = []
    pipeline: list[Command] = []
    for item in _words(script):
        if isinstance(item, Word):
            words.append(item)
            continue
        if words:
            command = Command(words, list(pipeline))
            yield command
            pipeline = [*pipeline, command] if item == "|" else []
        elif item != "|":
            pipeline = []
        words = []
    if words:
        yield Command(words, list(pipeline))


def _shell_script(container: dict[str, Any]) -> tuple[str, str] | None:
    """(field, script) when the container runs ``[env ...] <shell> [options] -c [--] <script>``."""
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    fields = [f"command[{i}]" for i in range(len(container.get("command") or []))] + [f"args[{i}]" for i in range(len(container.get("args") or []))]
    if not all(isinstance(a, str) for a in argv):
        return None
    i = 0
    if argv and argv[0].rsplit("/", 1)[-1] == "env":
        i = 1
        while i < len(argv) and (argv[i].startswith("-") or "=" in argv[i]):
            i += 1
    if i >= len(argv) or argv[i].rsplit("/", 1)[-1] not in SHELLS:
        return None
    i += 1
    reads_script = False
    while i < len(argv):
        if argv[i] == "--":
            i += 1
            break
        if not argv[i].startswith("-"):
            break
        reads_script = reads_script or (not argv[i].startswith("--") and "c" in argv[i][1:])
        i += 1
    return (fields[i], argv[i]) if reads_script and i < len(argv) else None


def _alert_variables(container: dict[str, Any]) -> set[str]:
    """Env vars of the container that hold alert data: the injected ones are found by prefix; these are the templated ones."""
    return {str(v.get("name")) for v in container.get("env") or [] if isinstance(v, dict) and "{{" in str(v.get("value", ""))}


def container_warnings(container: dict[str, Any], where: str) -> list[str]:
    """Warnings for one container of a definition (unrendered); ``where`` names the container."""
    derived = _alert_variables(container)
    found = _shell_script(container)
    if found is None:
        return _exec_form_warnings(container, derived, where)
    field_, script = found
    actions = _ACTION.findall(script)
    numbers = iter(range(len(actions)))
    marked = _ACTION.sub(lambda m: _PLACEHOLDER.format(next(numbers)), script)
    lint = _Lint(actions, derived, f"{where}.{field_}")
    for command in _commands(marked):
        lint.command(command)
    lint.here_documents(marked)
    return lint.warnings


class _Lint:
    def __init__(self, actions: list[str], derived: set[str], where: str):
        self.actions = actions
        self.derived = set(derived)
        self.where = where
        self.warnings: list[str] = []

    def _alert(self, e: Expansion) -> bool:
        return e.kind == "action" or e.name.startswith(ENV_PREFIX) or e.name in self.derived

    def _shown(self, e: Expansion) -> str:
        return self.actions[int(e.name)] if e.kind == "action" else f"${e.name}"

    def _warn(self, text: str) -> None:
        warning = f"{self.where}: {text}"
        if warning not in self.warnings:
            self.warnings.append(warning)

    def command(self, command: Command) -> None:
        for word in command.words:
            self._quoting(word)
        # Assignments at the start carry alert data into new names.
        for word in command.words:
            assigned = _ASSIGNMENT.match(word.text)
            if not assigned:
                break
            if any(self._alert(e) for e in word.expansions):
                self.derived.add(assigned.group(1))
        name = command.name
        alert_words = [w for w in command.words if any(self._alert(e) for e in w.expansions)]
        if name in _RE_EVALUATING or name.rsplit("/", 1)[-1] in SHELLS:
            for word in alert_words:
                if word is not command.words[0]:
                    self._warn(f"{self._shown(next(e for e in word.expansions if self._alert(e)))} is run again as shell code by {name}: a label such as $(id) runs")
            return
        if name == "xargs" and any(any(self._alert(e) for w in c.words for e in w.expansions) for c in command.piped_from):
            self._warn("xargs makes arguments of alert data piped into it: a label such as --all becomes an option, a space splits it")
            return
        self._positional(command)

    def _quoting(self, word: Word) -> None:
        assignment = _ASSIGNMENT.match(word.text) is not None
        for e in word.expansions:
            if e.kind == "action":
                shown = self.actions[int(e.name)]
                if e.quoting == '"':
                    self._warn(f"{shown} is inside double quotes in a shell script, where shell_quote protects nothing; pass the value as an environment variable and write \"$VAR\"")
                elif e.quoting == "'":
                    self._warn(f"{shown} is inside single quotes in a shell script: a label with a ' ends them; pass the value as an environment variable and write \"$VAR\"")
                elif e.quoting == "#":
                    self._warn(f"{shown} is in a comment of a shell script: a label with a line feed ends it; pass the value as an environment variable")
                elif not _SHELL_QUOTED.search(shown):
                    self._warn(f"{shown} is pasted into a shell script unquoted; pass it as an environment variable and write \"$VAR\"")
            elif e.quoting == "" and not assignment and self._alert(e):
                self._warn(f"${e.name} is expanded without double quotes: a label with a space or * becomes several arguments; write \"${e.name}\"")

    def _positional(self, command: Command) -> None:
        name = command.name
        if not name or name in _NOT_COMMANDS or _ASSIGNMENT.match(command.words[0].text) and len(command.words) == 1:
            return
        start = next((i for i, w in enumerate(command.words) if not _ASSIGNMENT.match(w.text)), len(command.words))
        for position, word in enumerate(command.words[start + 1 :], 1):
            if word.text.strip("'\"") == "--":
                return
            if name == "printf" and position >= 2:
                continue  # printf's arguments after the format are values, never options
            first = next((e for e in word.expansions if e.at_start), None)
            if first is not None and self._alert(first):
                self._warn(
                    f"{self._shown(first)} is passed to {name} as a positional argument with no `--` before it: "
                    "a label such as --all becomes an option; write -- before it, or --option=\"$VAR\""
                )

    def here_documents(self, script: str) -> None:
        """A here-document given to a shell is a script: alert data expanded in it runs."""
        for match in re.finditer(r"(?m)^[^\n]*?\b(?:sh|bash|dash|ash|zsh|ksh)\b[^\n]*<<-?\s*(['\"]?)(\w+)\1[^\n]*\n", script):
            if match.group(1):
                continue  # a quoted delimiter: the body is not expanded
            end = re.compile(rf"(?m)^\t*{re.escape(match.group(2))}$").search(script, match.end())
            body = script[match.end() : end.start() if end else len(script)]
            for word in (w for w in _words(body) if isinstance(w, Word)):
                for e in word.expansions:
                    if self._alert(e):
                        self._warn(f"{self._shown(e)} is expanded in a here-document fed to a shell, which runs it as code")


def _exec_form_warnings(container: dict[str, Any], derived: set[str], where: str) -> list[str]:
    """A command run without a shell: alert data is one argument, but may still be an option."""
    argv = [str(part) for part in [*(container.get("command") or []), *(container.get("args") or [])]]
    warnings = []
    alert_reference = re.compile(r"\$\((" + ENV_PREFIX + r"[A-Za-z0-9_]+|" + "|".join(map(re.escape, sorted(derived)) or ["(?!)"]) + r")\)")
    for position, part in enumerate(argv[1:], 1):
        if part == "--":
            break
        if part.lstrip().startswith("{{") or alert_reference.match(part):
            warnings.append(f"{where}: argument {position} starts with alert data and no `--` comes before it: a label such as --all becomes an option")
    return warnings
