"""What a container sees of its Job: the kubelet's expansion of ``$(VAR)``, as Kubernetes documents it.

From the API reference (Container.command, args, EnvVar.value): variable
references ``$(VAR_NAME)`` are expanded using the container's previously
defined environment variables; a reference that cannot be resolved is left
unchanged; ``$$`` is reduced to ``$``, which escapes the syntax:
``$$(VAR_NAME)`` produces the literal ``$(VAR_NAME)``. A ``$`` followed by
anything else, and an unclosed ``$(``, stay as they are.
"""

from __future__ import annotations

from typing import Any


def expand(text: str, defined: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "$" and i + 1 < len(text):
            following = text[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                end = text.find(")", i + 2)
                if end == -1:  # an unclosed reference is text, to the end
                    out.append(text[i:])
                    break
                name = text[i + 2 : end]
                out.append(defined[name] if name in defined else text[i : end + 1])
                i = end + 1
                continue
        out.append(char)
        i += 1
    return "".join(out)


def container_view(container: dict[str, Any], secrets: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """(environment, argv) the container's process gets; ``secrets`` stands in for valueFrom."""
    secrets = secrets or {}
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        else:
            env[var["name"]] = secrets.get(var["name"], "")
    argv = [expand(part, env) for part in [*(container.get("command") or []), *(container.get("args") or [])]]
    return env, argv

