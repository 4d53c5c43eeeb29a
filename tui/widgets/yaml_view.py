"""YAML preview and the diff against the file on disk, coloured from the theme."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rich.text import Text

from tunedeck.tui import format as fmt

_KEY = re.compile(r"^(\s*)([^#\s][^:]*)(:)(.*)$")


def render_yaml(text: str, variables: Mapping[str, str]) -> Text:
    muted = fmt.style_for(variables, "muted")
    key_style = fmt.style_for(variables, "status-finished", bold=True)
    out = Text()
    for i, line in enumerate(text.splitlines()):
        if i:
            out.append("\n")
        stripped = line.lstrip()
        if stripped.startswith("#"):
            out.append(line, style=muted)
            continue
        m = _KEY.match(line)
        if m:
            out.append(m.group(1))
            out.append(m.group(2), style=key_style)
            out.append(m.group(3))
            value, _, comment = m.group(4).partition(" #")
            out.append(value)
            if comment:
                out.append(" #" + comment, style=muted)
        else:
            out.append(line)
    return out


def render_diff(lines: Sequence[str], variables: Mapping[str, str]) -> Text:
    if not lines:
        return Text("No changes against the file on disk.", style=fmt.style_for(variables, "muted"))
    out = Text()
    for i, line in enumerate(lines):
        if i:
            out.append("\n")
        if line.startswith(("+++", "---")):
            out.append(line, style="bold")
        elif line.startswith("+"):
            out.append(line, style=fmt.style_for(variables, "diff-added"))
        elif line.startswith("-"):
            out.append(line, style=fmt.style_for(variables, "diff-removed"))
        elif line.startswith("@@"):
            out.append(line, style=fmt.style_for(variables, "muted"))
        else:
            out.append(line)
    return out
