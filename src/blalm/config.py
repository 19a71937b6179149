"""Typed configs: dataclasses loaded from TOML files with ``--set key=value`` overrides.

Every stage has one config dataclass. ``load_config(Cls, path, overrides)`` reads the TOML file
(which may ``extends = "other.toml"``, resolved relative to it), applies the overrides, and
builds the dataclass, checking every key and value against the field types. Unknown keys and
bad values raise :class:`ConfigError` naming the key (``sources.childes.share``) and what is
allowed. A dataclass may define ``validate(self)`` for range checks; it is called after
construction, nested ones first.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar, Union

from blalm.errors import ConfigError

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from the TOML file at ``path`` (or its defaults), then apply ``key=value`` overrides."""
    data: dict[str, Any] = read_toml(Path(path)) if path is not None else {}
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value)
    where = str(path) if path is not None else "config"
    return from_dict(cls, data, where=where)


def read_toml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a TOML config, resolving ``extends = "base.toml"`` (relative to the file) by deep merge."""
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'extends' forms a cycle ({' -> '.join(map(str, _seen))})")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'extends' must be a path string, got {base!r}")
    parent = read_toml((path.parent / base), _seen + (path.resolve(),))
    return deep_merge(parent, data)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Merge ``top`` into a copy of ``base``; tables merge key by key, other values replace."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``. The value is read as TOML (numbers, booleans, lists,
    quoted strings); anything that is not valid TOML is taken as a plain string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. --set budget_words=200000)")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: '{'.'.join(parts[: i + 1])}' is a value, not a table")
        node = child
    node[parts[-1]] = value


def to_dict(cfg: Any) -> Any:
    """A plain, JSON/TOML-ready view of a config dataclass (for manifests and run logs)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def from_dict(cls: type[T], data: Any, where: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and values of the wrong type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: '{prefix or '<root>'}' must be a table, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{where}: unknown key '{name}'; allowed keys{' in ' + prefix if prefix else ''}: "
                          f"{', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(hints[name], value, where, key)
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        name = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise ConfigError(f"{where}: required key '{name}' is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {prefix + ': ' if prefix else ''}{exc}") from None
    return obj


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{where}: bad value for '{key}'")
    if origin is Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise ConfigError(f"{where}: bad value for '{key}': {_show(value)}; allowed values: {allowed}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, key)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: bad value for '{key}': expected a list, got {_show(value)}")
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: bad value for '{key}': expected a table, got {_show(value)}")
        val_tp = args[1] if args else Any
        return {k: _coerce(val_tp, v, where, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: bad value for '{key}': expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: bad value for '{key}': expected an integer, got {_show(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: bad value for '{key}': expected a number, got {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: bad value for '{key}': expected a string, got {_show(value)}")
    if tp is Path:
        if isinstance(value, str):
            return Path(value)
        raise ConfigError(f"{where}: bad value for '{key}': expected a path string, got {_show(value)}")
    raise TypeError(f"config field '{key}' has unsupported type {tp!r}")


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check(condition: bool, message: str) -> None:
    """For ``validate()`` methods: raise ConfigError(message) unless ``condition``."""
    if not condition:
        raise ConfigError(message)
