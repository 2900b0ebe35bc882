"""Presets and overrides: YAML presets fill the typed schema (``sscl.config``), ``--set a.b=v``
overrides a field, and a resolved config goes back to plain data.

Presets in ``sscl/configs/*.yaml`` are data (read with ``yaml.safe_load``); an override must name
an existing field and is coerced to its type (nanoGPT's configurator guard: an unknown key fails
with the list of valid ones). A resolved config is a plain dict of JSON-able values
(:func:`to_dict`), written into the run directory and into every checkpoint.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sscl.config import Config
from sscl.errors import ConfigError


def preset_names() -> dict[str, str]:
    """Preset name -> its first comment line (the description), from ``sscl/configs``."""
    out = {}
    for entry in sorted(resources.files("sscl.configs").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            first = entry.read_text().splitlines()[:1]
            out[entry.name[:-5]] = first[0].lstrip("# ").strip() if first else ""
    return out


def load_preset(name_or_path: str) -> dict:
    """The raw mapping of a preset name or a YAML path (data only: ``yaml.safe_load``)."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {name_or_path} does not exist")
        text, origin = path.read_text(), str(path)
    else:
        known = preset_names()
        if name_or_path not in known:
            raise ConfigError(
                f"unknown preset {name_or_path!r}; presets: {', '.join(known)} (or a .yaml path)"
            )
        text = (resources.files("sscl.configs") / f"{name_or_path}.yaml").read_text()
        origin = f"preset {name_or_path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(data).__name__}")
    return data


def build(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping, strictly (unknown keys fail)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                f"unknown config key {where + key!r}; valid keys of {where or 'the config'}"
                f"{'' if not where else ''}: {', '.join(names)}"
            )
        f = next(f for f in fields(cls) if f.name == key)
        if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
            # A partial section overrides the field's own default (finetune.optim is Adam),
            # not the section class's defaults.
            default = f.default_factory()
            if is_dataclass(default):
                value = _deep_merge(to_dict(default), value)
        kwargs[key] = _coerce(hints[key], value, where + key)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where or 'config'}: {e}") from None


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if is_dataclass(tp):
        if is_dataclass(value):
            return value
        return build(tp, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} fits none of {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; a float field takes it as a number.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Any:
        return value
    raise ConfigError(f"{where}: cannot read a value of type {tp}")


def to_dict(cfg: Any) -> dict:
    """The config as nested plain dicts and lists (JSON/YAML-able)."""

    def conv(v: Any) -> Any:
        if is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in fields(v) if f.init}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        return v

    return conv(cfg)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config mapping as ``{"section.key": value}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def parse_set(item: str) -> tuple[list[str], Any]:
    """``a.b=v`` -> (["a", "b"], v) with ``v`` read as a YAML scalar or list."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.lr=0.05), got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _merge(base: dict, keys: list[str], value: Any) -> None:
    node = base
    for k in keys[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            node[k] = nxt
        node = nxt
    node[keys[-1]] = value


def _check_path(keys: list[str]) -> None:
    """Fail on an unknown ``--set`` key, listing the valid keys at the level it broke."""
    cls: Any = Config
    for depth, k in enumerate(keys):
        if not is_dataclass(cls):
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[:depth])} is a value, "
                              "not a section")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in fields(cls) if f.init]
        if k not in names:
            where = ".".join(keys[:depth]) or "the config"
            raise ConfigError(
                f"unknown config key {'.'.join(keys)!r}; valid keys of {where}: {', '.join(names)}"
            )
        tp = hints[k]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(tp) if is_dataclass(a)]
            tp = inner[0] if inner else tp
        cls = tp


def resolve(config: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Preset (name or path; None: ``demo``) + ``--set`` overrides -> a validated Config."""
    data = load_preset(config or "demo")
    for item in overrides:
        keys, value = parse_set(item)
        _check_path(keys)
        _merge(data, keys, value)
    return build(Config, data)


def from_dict(data: dict) -> Config:
    """Rebuild a Config from :func:`to_dict`'s output (a checkpoint's or run's config)."""
    return build(Config, data)


def dumps(cfg: Config) -> str:
    """The resolved config as YAML text (what the run directory keeps)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)
