"""Configuration: a YAML file -> validated, frozen `Settings`.

Rules:
- The seed prototype's `config.example.yaml` loads unchanged.
- Unknown keys, wrong types, duplicate keys, bad base32 secrets and duplicate
  technician IDs are errors that name the key (`ConfigError`, exit code 2);
  so is a file that is not YAML, or not a mapping.
- `reference_table()` is the README's configuration reference, made from the
  settings table itself (`make readme`).
- Secrets written in the file load, with a warning naming the technician; the
  well-known demo secret gets a loud one. Warnings are returned, not logged,
  so the caller decides where they go and they never contain a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from shimmfa.core.totp import decode_secret
from shimmfa.errors import ConfigError
from shimmfa.shim.settings import Settings, TechnicianEntry

WELL_KNOWN_SECRETS = frozenset({"JBSWY3DPEHPK3PXP", "JFAVAU2GMUKDOMRX"})
MIN_SECRET_BITS = 128


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    settings: Settings
    path: Path
    warnings: tuple[str, ...]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            hash(key)
        except TypeError:  # e.g. `? [a]`: SafeLoader's own check comes too late for us
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in keys:
            line = key_node.start_mark.line + 1
            raise ConfigError(f"line {line}: key {key!r} appears twice")
        keys.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def parse_settings(data: Any, source: str = "config") -> Settings:
    if data is None:
        raise ConfigError(f"{source}: the file is empty; `shimmfa config reference` lists the keys")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must be a YAML mapping of sections")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_location(e['loc'])}: {_describe(e)}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def secret_warnings(settings: Settings) -> list[str]:
    warnings = []
    for entry in settings.technicians:
        tid = entry.technician_id
        normalised = "".join(entry.totp_secret.split()).upper().rstrip("=")
        if normalised in WELL_KNOWN_SECRETS:
            warnings.append(
                f"DANGER: technician {tid!r} uses a published example TOTP secret: anyone can "
                "log in as them. Enrol a new secret with `shimmfa technician add` and remove "
                "it from the file."
            )
        bits = len(decode_secret(entry.totp_secret)) * 8
        if bits < MIN_SECRET_BITS:
            warnings.append(
                f"technician {tid!r} has a {bits}-bit TOTP secret (fewer than "
                f"{MIN_SECRET_BITS}); re-enrol with a 160-bit secret."
            )
        warnings.append(
            f"technician {tid!r} has a plaintext TOTP secret in the config file; move it to "
            "the sealed state DB with `shimmfa technician add`."
        )
    return warnings


def load_config(path: str | Path) -> LoadedConfig:
    """Read, validate and return the configuration at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: {where}{problem}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # PyYAML's constructors raise these for values such as `!!int 0x` or
        # `!!timestamp 2020-13-45`, and its composer recurses once per level.
        raise ConfigError(f"{path}: not a valid YAML value ({type(exc).__name__}: {exc})") from None
    settings = parse_settings(data, str(path))
    return LoadedConfig(settings, path, tuple(secret_warnings(settings)))


def reference_table() -> str:
    """The configuration reference, as a Markdown table (nested sections and
    lists of entries are spelt `gate.policy.mode`, `technicians[].factors[].label`)."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for section_name, section_field in Settings.model_fields.items():
        model = section_field.annotation
        if section_name == "technicians":
            model = TechnicianEntry
            section_name = "technicians[]"
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"settings section {section_name} is not a model")
        rows += _rows(section_name, model)
    return "\n".join(rows)


def _nested(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model inside `Model | None` or `list[Model]`, and the key suffix."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _nested(args[0])
    if origin in (Union, UnionType):
        models = [arg for arg in args if isinstance(arg, type) and issubclass(arg, BaseModel)]
        return (models[0], "") if len(models) == 1 else None
    if origin is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0], "[]"
    return None


def _rows(prefix: str, model: type[BaseModel]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        default = "required" if info.is_required() else f"`{info.default!r}`"
        kind = type_name(info.annotation)
        rows.append(f"| `{prefix}.{name}` | {kind} | {default} | {info.description} |")
        inner = _nested(info.annotation)
        if inner is not None:
            rows += _rows(f"{prefix}.{name}{inner[1]}", inner[0])
    return rows


def type_name(annotation: Any) -> str:
    """A setting's type as the reference shows it: `int or None`,
    `one of 'N', 'E', 'O'`, `list of str`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        values = ", ".join(repr(value) for value in args)
        return values if len(args) == 1 else f"one of {values}"
    if origin in (Union, UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if origin is list:
        inner = type_name(args[0])
        return f"list of ({inner})" if " or " in inner else f"list of {inner}"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")
