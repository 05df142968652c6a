"""What a transaction handler returns: the ``output`` node, a ``warn_msg`` and the journal seq it made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Out:
    output: dict[str, Any] = field(default_factory=dict)
    warn: str | None = None
    seq: int | None = None     # the journal entry this msgid made (2601 reverses it)
