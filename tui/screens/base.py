"""Screen base that takes its key bindings from the one action registry."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual.binding import BindingsMap
from textual.screen import ModalScreen, Screen

from tunedeck.tui import actions

T = TypeVar("T")


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
        self._bindings = BindingsMap(actions.bindings_for(self.SCOPE, readonly=self.readonly))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Belt and braces: a mutating action can't run read-only even if invoked by name.
        if self.readonly:
            for a in actions.ACTIONS:
                if a.scope == self.SCOPE and a.mutating and a.action == action:
                    return False
        return True


class RegistryModal(ModalScreen[T]):
    SCOPE: ClassVar[str] = "modal"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._bindings = BindingsMap(actions.bindings_for(self.SCOPE, readonly=False))
