"""Detector state to compact bytes and back: zlib'd JSON of the state dataclasses, versioned."""

from __future__ import annotations

import dataclasses
import json
import types
import zlib
from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

FORMAT_VERSION = 1


def dumps(states: dict[str, Any]) -> bytes:
    """All residents' states; fields marked `snapshot: False` (sample buffers) are left out."""
    doc = {"v": FORMAT_VERSION, "residents": {rid: _dump(st) for rid, st in states.items()}}
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)


def loads(blob: bytes, state_type: type[Any]) -> dict[str, Any]:
    try:
        doc = json.loads(zlib.decompress(blob))
    except (zlib.error, ValueError) as exc:
        raise ValueError(f"not a detector snapshot: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
        version = doc.get("v") if isinstance(doc, dict) else None
        raise ValueError(f"detector snapshot version {version!r}, expected {FORMAT_VERSION}")
    return {rid: _load(state_type, data) for rid, data in doc["residents"].items()}


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _dump(getattr(value, name)) for name in _kept_fields(type(value))}
    if isinstance(value, dict):
        return {key: _dump(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_dump(item) for item in value]
    return value


@cache
def _kept_fields(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("snapshot", True))


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls)


def _load(tp: Any, data: Any) -> Any:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        # Fields a newer state added (and the buffers) take their defaults.
        kwargs = {name: _load(hints[name], data[name]) for name in _kept_fields(tp) if name in data}
        return tp(**kwargs)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if data is None:
            return None
        options = [arg for arg in get_args(tp) if arg is not type(None)]
        return _load(options[0], data)
    if origin is dict:
        _, item_type = get_args(tp)
        return {key: _load(item_type, item) for key, item in data.items()}
    if origin is list:
        (item_type,) = get_args(tp)
        return [_load(item_type, item) for item in data]
    if tp is float and data is not None:
        return float(data)
    return data
