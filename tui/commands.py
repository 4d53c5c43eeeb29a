"""Command palette provider: every action of the current screen and of the app, from the
one registry, plus theme switches and, in the editor, its parameter groups and every
parameter by name (ranked like the editor's ctrl+f search)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from textual import on
from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.widgets import Input

from tunedeck.tui import actions


def escape(text: str) -> str:
    """Plain text for the palette, which reads markup: "[S]" or "[/]" (the keys) are tags there
    (textual.markup.escape leaves "[S]" alone, and the palette then drops it)."""
    return text.replace("[", "\\[")


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
                            partial(screen.go_to_group, gid)))
        return out

    async def discover(self) -> Hits:
        # Entries are markup for the palette: "[/]" (the filter key) is a closing tag there.
        for text, help_text, cb in self._commands():
            yield DiscoveryHit(escape(text), cb, help=escape(help_text))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, help_text, cb in self._commands():
            score = matcher.match(escape(text))
            if score > 0:
                yield Hit(score, matcher.highlight(escape(text)), cb, help=escape(help_text))
        for hit in self._param_hits(query):
            yield hit

    def _param_hits(self, query: str) -> list[Hit]:
        """``per_dev`` -> "param: per_device_train_batch_size"; enter shows and focuses it."""
        from tunedeck.tui.screens.param_search import name_score

        screen: Any = self.screen
        params = getattr(screen, "palette_params", None)
        if not callable(params) or len(query.strip()) < 2:
            return []
        scored = []
        for i, (name, group, help_text) in enumerate(params()):
            s = name_score(query.strip(), name, help_text)
            if s >= 0.5:  # name matches only: the palette has enough other entries
                scored.append((s, i, name, group, help_text))
        scored.sort(key=lambda t: (-t[0], t[1]))
        hits = []
        for rank, (s, _i, name, group, help_text) in enumerate(scored[:20]):
            # Ties keep the schema's order (per_device_train before per_device_eval).
            hits.append(Hit(min(1.0, s + 0.05) - rank * 1e-4, f"param: {name}  ({group})",
                            partial(screen.go_to, name), text=f"param: {name}",
                            help=help_text or f"Go to {name} in {group}."))
        return hits


class TunedeckPalette(CommandPalette):
    """Textual's command palette, except that Enter runs the best match for what was
    typed: typed fast, Enter used to pick from the list of an earlier, shorter query
    (the search for the last keys was still running)."""

    SEARCH_WAIT = 5.0  # seconds Enter waits for the search of what was typed, at most

    @on(Input.Submitted)
    async def _submit_after_search(self, event: Input.Submitted) -> None:
        import asyncio
        import contextlib

        event.stop()
        event.prevent_default()  # CommandPalette's own handler would pick from a stale list
        group = self._GATHER_COMMANDS_GROUP
        pending = [w for w in self.workers if w.group == group and w.node is self and not w.is_finished]
        for worker in pending:
            # Cancelled by a newer search, failed, or slow: pick from what the list holds then.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.wait(), self.SEARCH_WAIT)
        self._select_or_command()
