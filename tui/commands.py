"""Command palette provider: every action of the current screen and of the app, from the
one registry, plus theme switches and the editor's parameter groups."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tunedeck.tui import actions


class TunedeckCommands(Provider):
    """``ctrl+p``: "dashboard: Stop", "theme: tunedeck-light", "group: LoRA" ..."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Awaitable[Any] | Any]]]:
        app: Any = self.app
        screen: Any = self.screen
        readonly = bool(getattr(app, "readonly", False))
        scope = getattr(screen, "SCOPE", "") or ""
        out: list[tuple[str, str, Callable[[], Awaitable[Any] | Any]]] = []
        for a in actions.actions_for(scope, readonly=readonly) if scope else []:
            if a.builtin or a.scope == "modal":
                continue
            key = f"  [{a.display_key}]" if a.key else ""
            out.append((f"{actions.SCOPES[a.scope].lower()}: {a.label}{key}", a.help,
                        partial(screen.run_action, a.action)))
        for a in actions.actions_for("app", readonly=readonly):
            if a.builtin:
                continue
            key = f"  [{a.display_key}]" if a.key else ""
            out.append((f"app: {a.label}{key}", a.help, partial(app.run_action, a.action)))
        for name in sorted(app.available_themes):
            if name.startswith("tunedeck") or name in getattr(app, "user_theme_names", ()):
                out.append((f"theme: {name}", f"Switch to the {name} theme (remembered).",
                            partial(setattr, app, "theme", name)))
        groups = getattr(screen, "palette_groups", None)
        if callable(groups):
            for gid, title in groups():
                out.append((f"group: {title}", f"Show the {title} parameters.",
                            partial(screen.show_group, gid)))
        return out

    async def discover(self) -> Hits:
        for text, help_text, cb in self._commands():
            yield DiscoveryHit(text, cb, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, help_text, cb in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), cb, help=help_text)
