"""Screen base that takes its key bindings from the one action registry."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

from textual.binding import BindingsMap
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen

from tunedeck import themes
from tunedeck.tui import actions

T = TypeVar("T")


def _registry_bindings(cls: type[DOMNode], scope: str, readonly: bool) -> BindingsMap:
    """Textual's own bindings of ``cls`` (Tab / Shift+Tab move the focus, ctrl+c copies)
    plus the registry's for ``scope``; a registry key wins over Textual's.

    Replacing the bindings outright dropped the focus keys: Tab never left the first field.
    """
    merged = cls._merge_bindings()
    ours = BindingsMap(actions.bindings_for(scope, readonly=readonly))
    keys = dict(merged.key_to_bindings)
    keys.update(ours.key_to_bindings)
    return BindingsMap.from_keys(keys)


def _readonly() -> bool:
    from textual._context import active_app

    try:
        return bool(getattr(active_app.get(), "readonly", False))
    except LookupError:
        return False


class RegistryScreen(Screen[T]):
    """A screen whose bindings are :func:`tunedeck.tui.actions.bindings_for` its ``SCOPE``.

    Built per instance so ``--readonly`` leaves mutating actions out entirely.
    """

    SCOPE: ClassVar[str] = ""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.readonly = _readonly()
        self._bindings = _registry_bindings(type(self), self.SCOPE, self.readonly)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Belt and braces: a mutating action can't run read-only even if invoked by name.
        if self.readonly:
            for a in actions.ACTIONS:
                if a.scope == self.SCOPE and a.mutating and a.action == action:
                    return False
        return True


class RunScreen(RegistryScreen[None]):
    """A full screen about one run directory (its log, checkpoints, triage); the screen's id
    is its ``SCOPE``."""

    CSS_PATH = str(themes.SCREENS_TCSS)

    def __init__(self, run_dir: Path) -> None:
        super().__init__(id=self.SCOPE)
        self.run_dir = Path(run_dir)


class RegistryModal(ModalScreen[T]):
    SCOPE: ClassVar[str] = "modal"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._bindings = _registry_bindings(type(self), self.SCOPE, False)
