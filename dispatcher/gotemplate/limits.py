"""Bounds on what one template may cost, so a careless or hostile definition cannot hang a dispatcher. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Every bound is checked as the work happens; exceeding one is a TemplateError naming the field.

    The defaults leave room for any definition written by a person while
    keeping one execution well under 100 ms on a slow core.
    """

    # Text that one execute may produce (UTF-8 bytes); also the bound on any single string a function builds.
    max_output_bytes: int = 256 * 1024
    # Work of one execute: nodes evaluated, range iterations, template calls, and one step for
    # each 256 bytes a function reads or builds (so a loop copying large strings is bounded too).
    max_steps: int = 100_000
    # Nested template calls ({{template}}/{{block}}). Go allows 100,000; recursion ends here instead.
    max_depth: int = 64
    # Widths and precisions in printf verbs (Go allows up to 1,000,000).
    max_width: int = 1000
    # Length of a template's text at parse (UTF-8 bytes).
    max_text_bytes: int = 64 * 1024
    # Nesting of blocks (if/with/range/define/block) and parentheses at parse, and of blocks
    # being executed at once, across template calls: keeps Python's stack far from its limit.
    max_nesting: int = 100
