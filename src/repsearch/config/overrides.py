"""Reading a configuration: TOML presets and `--set key=value` overrides onto the dataclasses.

Dotted keys reach into sections and list items by index (`search.alpha.0=0.2`); a value is
brought to the type of the field's default or refused with one line saying what was expected.
"""
from __future__ import annotations

import dataclasses
import difflib
import json

from repsearch.errors import UserError

# Fields renamed in place (old dotted key -> new): configs written before read under the new name,
# and a cache's fingerprint still hashes the old one, so existing caches stay valid.
RENAMED = {"search.patience": "search.extra_generations"}

# Keys that moved to another section: an old command gets told where, not just "unknown".
MOVED = {"search.chunk_images": "engine.chunk_images", "search.memory_gb": "engine.memory_gb",
         "search.compile": "engine.compile", "search.pool_phases": "engine.pool_phases",
         "search.fast": "engine.fast (speed) and search.noise=bank|fresh (the random draws)",
         "search.patience": "search.extra_generations (generations for images still above search.target_ce; "
                            "learn.patience and baseline.patience are early stopping)"}


def _coerce(value, default, key: str):
    """Bring a parsed value to the type of the field's default, or say what was expected."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise UserError(f"{key}: expected true/false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{key}: expected an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{key}: expected a number, got {value!r}")
    if isinstance(default, str):
        if not isinstance(value, str):
            raise UserError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise UserError(f"{key}: expected a list like [1, 2], got {value!r}")
        if default:
            return [_coerce(v, default[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return value
    return value


def apply_key(obj, key_path: list[str], value, full_key: str):
    name = key_path[0]
    if isinstance(obj, list):
        if not name.isdigit() or int(name) >= len(obj):
            raise UserError(f"{full_key}: index {name} out of range (list has {len(obj)} items)")
        i = int(name)
        obj[i] = _coerce(value, obj[i], full_key)
        return
    names = [f.name for f in dataclasses.fields(obj)]
    if full_key in MOVED:
        raise UserError(f"config key '{full_key}' has moved: use {MOVED[full_key]}")
    if name not in names:
        hint = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean '{hint[0]}'?)" if hint else f"; known: {', '.join(names)}"
        raise UserError(f"unknown config key '{full_key}'{hint}")
    current = getattr(obj, name)
    if len(key_path) == 1:
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"{full_key} is a section; set its fields, e.g. {full_key}.<field>=...")
            for k, v in value.items():
                apply_key(current, [k], v, f"{full_key}.{k}")
            return
        setattr(obj, name, _coerce(value, current, full_key))
    else:
        if not (dataclasses.is_dataclass(current) or isinstance(current, list)):
            raise UserError(f"unknown config key '{full_key}': '{name}' has no fields")
        apply_key(current, key_path[1:], value, full_key)


def apply_dict(cfg, d: dict, prefix: str = "") -> None:
    for k, v in d.items():
        key = f"{prefix}{k}"
        apply_key(cfg, key.split("."), v, key)


def parse_value(text: str):
    """`--set` values: JSON/TOML-like literals (numbers, true/false, [lists]) else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise UserError(f"bad override '{item}': expected key=value, e.g. --set data.name=mnist")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"bad override '{item}': empty key")
    return key, parse_value(text.strip())
