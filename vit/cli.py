"""The only seam between Snakemake and Python: typed `--key=value` arguments into a dataclass.

Snakemake owns config.yaml and renders a run's settings as `--key=value`; each stage declares a
`@dataclass Config` with commented defaults. Unknown keys and values of the wrong type stop the run
with the key named, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import shlex
import sys
import typing

from vit.errors import ConfigError, DataError


def _convert(key: str, raw: str, typ):
    if typ is str:
        return raw
    if typ is bool:
        low = raw.lower()
        if low in ("1", "true", "yes"):
            return True
        if low in ("0", "false", "no"):
            return False
        raise ConfigError(f"--{key}={raw!r}: expected a boolean (true/false)")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise ConfigError(f"--{key}={raw!r}: not a valid {getattr(typ, '__name__', typ)} literal") from None
    origin = typing.get_origin(typ) or typ
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if origin is tuple and isinstance(value, list):
        value = tuple(value)
    if origin in (list, tuple) and isinstance(value, (int, float, str)):
        value = origin([value])  # `--seeds=0` means [0]
    if not isinstance(value, origin) or (origin is int and isinstance(value, bool)):
        raise ConfigError(f"--{key}={raw!r}: expected {getattr(origin, '__name__', origin)}, "
                          f"got {type(value).__name__}")
    return value


def parse(cls, argv: list[str] | None = None):
    """Build `cls` (a dataclass) from `--key=value` strings; defaults fill what is not given."""
    argv = sys.argv[1:] if argv is None else argv
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for arg in argv:
        if not arg.startswith("--") and "inputs" in hints:  # positional file arguments
            kwargs.setdefault("inputs", []).append(arg)
            continue
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"argument {arg!r}: expected --key=value")
        key, raw = arg[2:].split("=", 1)
        if key not in hints:
            raise ConfigError(f"unknown setting --{key} for {cls.__module__}.{cls.__name__}; "
                              f"valid settings: {', '.join(names)}")
        kwargs[key] = _convert(key, raw, hints[key])
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without a default was not given
        raise ConfigError(f"{cls.__module__}: {e}") from None


def split_known(cls, argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate the `--key=value` arguments that belong to `cls` from the rest (passed on to another stage)."""
    names = {f.name for f in dataclasses.fields(cls)}
    mine = [a for a in argv if a.startswith("--") and a[2:].split("=", 1)[0] in names]
    return mine, [a for a in argv if a not in mine]


def literal(value) -> str:
    """A Python literal with double-quoted strings, so shell-quoted commands stay readable."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return repr(value)


def render(values: dict) -> str:
    """The inverse of `parse` for a flat dict: what Snakemake rules put on the command line."""
    parts = []
    for k, v in values.items():
        text = str(v).lower() if isinstance(v, bool) else v if isinstance(v, str) else literal(v)
        parts.append(shlex.quote(f"--{k}={text}"))
    return " ".join(parts)


def main_guard(fn, cls):
    """Run `fn(parse(cls))` and turn a ConfigError or a data error into one clear line and exit 2."""
    try:
        return fn(parse(cls))
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except SystemExit as e:  # a stop that says why (vit.train.TimeLimit): say it, keep its exit status
        if getattr(e, "message", ""):
            print(e.message, file=sys.stderr, flush=True)
        raise
