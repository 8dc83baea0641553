"""Numbers from outside (a device's MQTT message, a labeling answer, an output manifest) must be finite.

Python's ``json`` reads the non-standard literals ``NaN``, ``Infinity`` and ``-Infinity`` (and an overflowing
``1e999`` becomes infinity), and pydantic accepts them as floats unless told otherwise: a NaN passes every
``<``/``>`` bound check (every comparison with it is false) and an infinity passes one-sided ones. So each boundary
that reads such numbers refuses them by name, with where they were.
"""

from __future__ import annotations

import math
from typing import Any


def non_finite_at(value: Any, path: str = "") -> str | None:
    """The path (``a.b[2]``) of the first NaN or infinite float anywhere in a JSON-like value, else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "value")
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite_at(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = non_finite_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def finite_reason(value: Any) -> str | None:
    """``"<path>: NaN/Infinity is not a number Loupe accepts"`` for a value holding one, else None."""
    where = non_finite_at(value)
    return None if where is None else f"{where}: not a finite number (NaN and Infinity are refused)"


def as_json_safe(value: Any) -> Any:
    """``value`` with each NaN/infinite float replaced by its name as a string (``"NaN"``, ``"Infinity"``), so a
    refused message can be kept as standard JSON (``json.dumps`` would write the non-standard literals)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: as_json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json_safe(item) for item in value]
    return value
