"""The one declaration of every parameter tunedeck knows.

Form panes, the validator, ``tunedeck validate``, ``tunedeck schema --markdown``
and the runner's argument mapping all read :data:`PARAMS`. Never hand-write a
form field or a check for something declared here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ParamType = Literal["bool", "int", "float", "str", "enum", "list", "json", "path", "number"]
# list   = comma-list string or YAML list (dataset, lora_target, ...)
# json   = nested mapping/list (deepspeed_config inline, fsdp_config ...)
# path   = str that names a file or directory (checked for existence where it matters)
# number = int or float accepted (val_size: fraction or count)

# Where a parameter goes at run time.
Target = Literal["model", "data", "finetuning", "training", "generating", "eval", "env", "tunedeck"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class Group:
    id: str
    title: str
    description: str = ""


@dataclass(frozen=True)
class Param:
    name: str
    group: str                     # Group.id: the form pane
    type: ParamType
    default: Any = None
    help: str = ""                 # one line
    choices: tuple[Any, ...] | None = None
    min: float | None = None       # inclusive bounds
    max: float | None = None
    min_exclusive: bool = False
    advice: str | None = None      # the guide's production advice, in our words
    recommended: Any = UNSET       # value the advice recommends (for advice findings)
    guide: str | None = None       # guide section, e.g. "1.2"
    target: Target = "training"
    secret: bool = False           # redacted everywhere it could be shown or written
    checked: bool = True           # False: a TrainingArguments pass-through tunedeck does not check
    required: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)


GROUPS: tuple[Group, ...] = ()
PARAMS: dict[str, Param] = {}
