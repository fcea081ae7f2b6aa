"""Threshold and option overrides from a TOML file (``--config qc.toml``).

One table per filter. Keys are the filter's options; the sub-table ``thresholds`` maps
field names to numbers, or to ``false`` to record a field without deciding on it; the
sub-table ``margins`` sets the half-width of a field's review band around its threshold
(0: no band)::

    [resolution]
    expected_scale = 2

    [resolution.thresholds]
    hq_short_side = 512
    aspect_error = false

    [color.margins]
    cast = 1.0
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggtqc.filters import Filter

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(Exception):
    """A bad config file, key or value; the message names it."""


@dataclass
class FilterConfig:
    settings: dict[str, bool | int | float | str] = field(default_factory=dict)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    margins: dict[str, float] = field(default_factory=dict)


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None, filters: Mapping[str, type[Filter]], label: str = "config"
) -> dict[str, FilterConfig]:
    """Overrides for each filter in ``filters``, validated against what it declares.

    ``source`` is a TOML file, or a mapping of the same tables (``{"color": {"thresholds":
    {"cast": 5}}}``), whose errors name ``label`` where a file's would name the file.
    """
    configs = {name: FilterConfig() for name in filters}
    if source is None:
        return configs
    if isinstance(source, Mapping):
        return _apply(label, dict(source), filters, configs)
    path = Path(source)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    return _apply(path, data, filters, configs)


def _apply(path: Path | str, data: dict, filters: Mapping[str, type[Filter]], configs: dict[str, FilterConfig]) -> dict[str, FilterConfig]:
    for name, table in data.items():
        if name not in filters:
            raise ConfigError(f"{path}: {_unknown('filter', name, filters)}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{path}: '{name}' must be a table ([{name}])")
        configs[name] = _filter_config(path, name, table, filters[name])
    return configs


def _filter_config(path: Path | str, name: str, table: dict, cls: type[Filter]) -> FilterConfig:
    config = FilterConfig()
    fields = {f.name: f for f in cls.fields}
    for key, value in table.items():
        if key in ("thresholds", "margins"):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: '{name}.{key}' must be a table ([{name}.{key}])")
            for field_name, number in value.items():
                where = f"{name}.{key}.{field_name}"
                if field_name not in fields:
                    raise ConfigError(f"{path}: {_unknown(f'field of {name}', field_name, fields)}")
                if key == "thresholds" and (number is False or number is None):  # None: from Python
                    config.thresholds[field_name] = None
                elif not (_is_number(number) and math.isfinite(number)):
                    hint = "a number, or false to record only" if key == "thresholds" else "a number >= 0"
                    raise ConfigError(f"{path}: {where} = {number!r}; give {hint}")
                elif key == "thresholds":
                    config.thresholds[field_name] = float(number)
                elif number < 0:
                    raise ConfigError(f"{path}: {where} = {number!r}; a margin is >= 0 (0: no review band)")
                else:
                    config.margins[field_name] = float(number)
            continue
        if key not in cls.options:
            if key in fields:
                raise ConfigError(
                    f"{path}: '{key}' is a field of {name}, not an option; "
                    f"its threshold goes in [{name}.thresholds] as {key} = {value!r}"
                )
            known = dict(cls.options, thresholds=None, margins=None)
            raise ConfigError(f"{path}: {_unknown(f'option of {name}', key, known)}")
        config.settings[key] = _check_option(path, f"{name}.{key}", value, cls.options[key])
    return config


def _check_option(path: Path | str, where: str, value: object, default: object) -> bool | int | float | str:
    expected = type(default)
    if expected is float and _is_number(value):
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected in (bool, str) and isinstance(value, expected):
        return value
    raise ConfigError(f"{path}: {where} = {value!r}; expected {expected.__name__} like the default {default!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unknown(kind: str, name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (known: {', '.join(sorted(known)) or 'none'})"
