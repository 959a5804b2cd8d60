"""The only seam between Snakemake and Python: typed `--key=value` (or `--key value`) arguments into a dataclass.

Snakemake owns config.yaml and renders a run's settings as `--key=value`; each stage declares a
`@dataclass Config` with commented defaults, which `--help` lists. Unknown keys and values of the wrong
type stop the run with the key named, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import io
import json
import re
import shlex
import sys
import textwrap
import tokenize
import typing

from vit.errors import ConfigError, DataError

HELP = ("-h", "--help")


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


def _settings(argv: list[str], names):
    """(key, raw value, its words) per setting and (None, word, [word]) per other word. The word after a
    bare `--key` is its value unless it is `--help`/`-h` or names a setting in `names` (so `--lr -1` is -1);
    raw is None when `--key` has no value."""
    i = 0
    while i < len(argv):
        word, nxt = argv[i], argv[i + 1] if i + 1 < len(argv) else None
        key, eq, raw = word[2:].partition("=")
        if not word.startswith("--") or word in HELP:
            yield None, word, [word]
        elif eq or nxt is None or nxt in HELP or nxt.startswith("--") and nxt[2:].split("=", 1)[0] in names:
            yield key, raw if eq else None, [word]
        else:
            yield key, nxt, [word, nxt]
            i += 1
        i += 1


def _where(cls, stage: bool = False) -> str:
    """The module of a Config, also when it runs as `python -m` (as `__main__`); with `stage`, the module
    run as `python -m vit.x` if it is of the same package (the stage whose usage `--help` shows)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    main = spec.name.removesuffix(".__main__") if spec else "__main__"
    if cls.__module__ == "__main__" or stage and main.split(".")[0] == cls.__module__.split(".")[0]:
        return main
    return cls.__module__


def _unknown(cls, key: str) -> str:
    names = [f.name for f in dataclasses.fields(cls)]
    initials = lambda s: "".join(w[:1] for w in s.split("_"))  # noqa: E731  learning_rate -> lr
    close = difflib.get_close_matches(key, names, n=3)
    close += [n for n in names if n not in close and (n == initials(key) or initials(n) == key)]
    hint = f"did you mean {' or '.join('--' + n for n in close[:3])}? " if close else ""
    return f"unknown setting --{key} for {_where(cls)}.{cls.__name__}; {hint}valid settings: {', '.join(names)}"


def parse(cls, argv: list[str] | None = None):
    """Build `cls` (a dataclass) from `--key=value` / `--key value` words; defaults fill what is not given.
    Other words go to an `inputs` field if `cls` has one; `--help` prints `usage(cls)` and exits 0."""
    argv = sys.argv[1:] if argv is None else argv
    if any(word in HELP for word in argv):
        print(usage(cls))
        raise SystemExit(0)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, raw, _ in _settings(argv, hints):
        if key is None:
            if "inputs" not in hints:
                raise ConfigError(f"argument {raw!r}: expected --key=value or --key value (see --help)")
            kwargs.setdefault("inputs", []).append(raw)  # positional file arguments
        elif key not in hints:
            raise ConfigError(_unknown(cls, key))
        elif raw is None:
            raise ConfigError(f"--{key}: no value (give --{key}=VALUE or --{key} VALUE)")
        else:
            kwargs[key] = _convert(key, raw, hints[key])
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without a default was not given
        raise ConfigError(f"{_where(cls)}: {e}") from None


def split_known(cls, argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate the settings of `cls` (`--key=value`, or `--key value` as a pair) from the rest (passed on to
    another stage), keeping their order; `--help` stays with `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    mine, rest = [], []
    for key, _, words in _settings(argv, names):
        (mine if key in names or words[0] in HELP else rest).extend(words)
    return mine, rest


def comments(cls) -> dict[str, str]:
    """Each field's source comment, continuation lines (comment-only lines aligned under it) joined."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, TypeError, tokenize.TokenError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    starts = (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT)
    out, field, last, column = {}, None, None, -1
    for prev, tok, nxt in zip([None] + tokens, tokens, tokens[1:] + [None]):
        if tok.type == tokenize.NAME and tok.string in names and nxt and nxt.string == ":" \
                and (prev is None or prev.type in starts):
            field = last = tok.string
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if field or (last and tok.start[1] == column):
                out[field or last] = f"{out.get(field or last, '')} {text}".strip()
                column = tok.start[1]
            else:
                last = None
        elif tok.type == tokenize.NEWLINE:
            field = None
        elif tok.type == tokenize.NL and prev.type != tokenize.COMMENT:
            last = None  # a blank line ends a comment
    return out


def usage(cls) -> str:
    """`--help`: the module's doc (first two paragraphs), then `--name TYPE (default: VALUE)  comment`."""
    stage = _where(cls, stage=True)
    module = sys.modules.get("__main__" if stage != cls.__module__ else stage)
    doc = inspect.cleandoc(getattr(module, "__doc__", None) or "")
    hints, notes, rows = typing.get_type_hints(cls), comments(cls), []
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        name = typ.__name__ if isinstance(typ, type) else str(typ).replace("typing.", "")
        given = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory() if given else None
        shown = f"default: {str(value).lower() if isinstance(value, bool) else literal(value)}" if given else "required"
        rows.append((f"--{f.name} {name} ({shown})", notes.get(f.name, "")))
    width = min(max((len(r) for r, _ in rows), default=0), 52)
    indent = " " * (width + 4)
    lines = [textwrap.fill(f"  {r:<{width}}  {c}", 110, subsequent_indent=indent, break_on_hyphens=False)
             for r, c in rows]
    return "\n".join([f"usage: python -m {stage} [--key=value | --key value ...]"
                      + (" [inputs ...]" if "inputs" in hints else ""), "",
                      "\n\n".join(re.split(r"\n\s*\n", doc)[:2]), "", "settings:", *(ln.rstrip() for ln in lines)])


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
    except SystemExit as e:  # a stop that says why (vit.stops): say it, keep its exit status
        if getattr(e, "message", ""):
            print(e.message, file=sys.stderr, flush=True)
        raise
