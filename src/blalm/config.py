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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar, Union

from blalm.errors import ConfigError

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                options: Mapping[str, tuple[str, Any]] | None = None,
                prepare: Callable[[dict[str, Any], "Origin"], dict[str, Any]] | None = None) -> T:
    """Load ``cls`` from the TOML file at ``path`` (or its defaults), then apply ``key=value`` overrides.

    The one loader of every stage's settings. ``options``: a verb's own command-line options as
    ``{key: (as typed, value)}`` (``{"batch_size": ("--batch-size 8", 8)}``), applied after the
    overrides (an option wins over ``--set``).
    ``prepare(data, origin)``: a stage's own step between the overrides and the typed build (the
    training config merges its model file there). An error names the ``--set`` item that caused
    it, or the file.
    """
    data: dict[str, Any] = read_toml(Path(path)) if path is not None else {}
    origin = apply_overrides(data, overrides, source=str(path) if path is not None else "config")
    for key, (typed, value) in (options or {}).items():
        set_dotted(data, key, value)
        origin.overrides[key] = typed
        origin.values[key] = value
    if prepare is not None:
        data = prepare(data, origin)
    return from_dict(cls, data, where=origin)


@dataclass
class Origin:
    """Where a config's values come from: a file (or the defaults: ``"config"``) and the ``--set``
    overrides and command-line options, by dotted key, as typed (``""`` for a positional argument,
    which errors do not quote). Errors about a key that an override set name that override."""

    source: str = "config"
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)   # "lr" -> "--set lr=fast"
    values: dict[str, Any] = dataclasses.field(default_factory=dict)      # "lr" -> "fast"

    def override_of(self, key: str) -> str | None:
        """The override that set ``key`` or a table above it (``a.b[2]`` -> ``a.b``, ``a``), if any."""
        candidate = key
        while candidate:
            if self.overrides.get(candidate):
                return self.overrides[candidate]
            cut = max(candidate.rfind("."), candidate.rfind("["))
            candidate = candidate[:cut] if cut > 0 else ""
        return None

    def error(self, key: str, problem: str, fix: str = "") -> ConfigError:
        """A ConfigError about ``key``, told as the override's error when an override set it."""
        item = self.override_of(key)
        if item is None:
            return ConfigError(f"{self.source}: {problem}")
        return ConfigError(f"{item}: {problem}{'; ' + fix if fix else ''}")

    def under(self, prefix: str) -> str:
        """The source, with the overrides of keys under ``prefix`` ("" = all) named beside it."""
        items = [item for key, item in self.overrides.items()
                 if item and (not prefix or key == prefix or key.startswith(prefix + "."))]
        if not items:
            return self.source
        return ", ".join(items) if self.source == "config" else f"{self.source} with {', '.join(items)}"


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], source: str = "config") -> Origin:
    """Apply ``key=value`` overrides to ``data`` in place; the :class:`Origin` remembers which key each set."""
    origin = Origin(source)
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value)
        origin.overrides[key] = f"--set {item}"
        origin.values[key] = value
    return origin


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


def from_dict(cls: type[T], data: Any, where: str | Origin = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and values of the wrong type.
    ``where``: the file (or "config") the values come from, or an :class:`Origin` that also knows
    which keys ``--set`` overrides gave."""
    origin = where if isinstance(where, Origin) else Origin(str(where))
    if not isinstance(data, dict):
        raise origin.error(prefix, f"'{prefix or '<root>'}' must be a table, got {_show(data)}",
                           f"give dotted keys instead, e.g. --set {prefix}.KEY=VALUE")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise origin.error(name, f"unknown key '{name}'; allowed keys{' in ' + prefix if prefix else ''}: "
                                 f"{', '.join(sorted(fields))}", "check the key's spelling")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(hints[name], value, origin, key)
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        name = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise ConfigError(f"{origin.under(prefix)}: required key '{name}' is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{origin.under(prefix)}: {prefix + ': ' if prefix else ''}{exc}") from None
    return obj


# what each kind of field expects, and an example of an override that gives it
_EXAMPLES = {"true or false": "true", "an integer": "3", "a number": "0.001", "a list": "[...]",
             "a table": None}


def _bad(origin: Origin, key: str, value: Any, expected: str) -> ConfigError:
    """The error for a value of the wrong type, with the override that fixes it when one set it."""
    if expected in ("a string", "a path string"):
        example = f'"{value}"'                       # a number or boolean given where text was meant
    else:
        example = _EXAMPLES.get(expected)
    item = f"{key}={example}"
    shown = f"'{item}'" if any(ch in item for ch in "\"[] ") else item     # quoted for the shell
    fix = f"write {expected} (TOML), e.g. --set {shown}" if example and "[" not in key else ""
    return origin.error(key, f"bad value for '{key}': expected {expected}, got {_show(value)}", fix)


def _coerce(tp: Any, value: Any, where: Origin, key: str) -> Any:
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
                errors.append(exc)
        raise errors[-1] if errors else where.error(key, f"bad value for '{key}'")
    if origin is Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise where.error(key, f"bad value for '{key}': {_show(value)}; allowed values: {allowed}",
                          f"e.g. --set {key}={args[0]}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, key)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, list):
            raise _bad(where, key, value, "a list")
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _bad(where, key, value, "a table")
        val_tp = args[1] if args else Any
        return {k: _coerce(val_tp, v, where, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(where, key, value, "true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _bad(where, key, value, "an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _bad(where, key, value, "a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad(where, key, value, "a string")
    if tp is Path:
        if isinstance(value, str):
            return Path(value)
        raise _bad(where, key, value, "a path string")
    raise TypeError(f"config field '{key}' has unsupported type {tp!r}")


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check(condition: bool, message: str) -> None:
    """For ``validate()`` methods: raise ConfigError(message) unless ``condition``."""
    if not condition:
        raise ConfigError(message)
