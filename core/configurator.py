"""
Typed configuration from config files and --key=value, the nanoGPT habit without its exec.

    python train.py config/swiglu.py config/long.py --batch_size=32 --compile=False

Every script's command line follows this one convention: its options are the fields of a
dataclass, given as --key=value (a bare --key sets a bool field), and -h lists them with their
defaults and comments. train.py and sample.py read config files too (load_config); bench.py,
compare.py and data/prepare.py take paths as positional arguments (load_options).

Precedence: the dataclass defaults < config files (left to right) < command line. A config file is
a Python file of plain assignments; it runs in its own namespace (runpy), and every name it binds
must be a field. Being Python, it can do anything a script can: `-h` says so.
Command-line values are read with ast.literal_eval (a bare word is a string) and converted to
the field's type. Mistakes raise ConfigError with one line that names the key and the closest
valid keys; `-h` lists every key with its default and comment.
"""

import ast
import dataclasses
import difflib
import inspect
import io
import runpy
import sys
import tokenize
import types
import typing

from core.entry import HelpRequested, UserError


class ConfigError(UserError, ValueError):
    """A user's configuration mistake; its message is one line meant for the user."""


def field_comments(cls):
    """The `# comment` written after each field of dataclass `cls` (or of a base it redeclares), by field name."""
    comments = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):  # a subclass's comment wins
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        current = None
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names:
                current = (tok.string, tok.start[0])
            elif tok.type == tokenize.COMMENT and current and tok.start[0] == current[1]:
                comments[current[0]] = tok.string.lstrip("# ").strip()
    return comments


def help_order(cls):
    """cls's fields, its own first (a script's data keys), then those of the config it extends (the keys every trainer shares)."""
    inherited = {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in dataclasses.fields(base)}
    every = dataclasses.fields(cls)
    return [f for f in every if f.name not in inherited] + [f for f in every if f.name in inherited]


def help_text(cls, prog, description="", usage=None):
    """Usage line plus every field with its default and comment.

    Without `usage` the script reads config files (load_config) and the text says what they are.
    """
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    lines = [f"usage: {usage or prog + ' [CONFIG_FILE.py ...] [--key=value ...]'}", ""]
    if description:
        lines += [description, ""]
    if usage:
        lines.append("options (default), given as --key=value:")
    else:
        lines.append("Config files are Python run in their own namespace (like nanoGPT's): run only ones you trust as code.")
        lines.append("keys (default) — config files set them as `key = value`, the command line as --key=value:")
    for f in help_order(cls):
        hint = hints[f.name]
        type_name = "a,b,..." if is_tuple(hint) else getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
        lines.append(f"  --{f.name}={f.default!r}  ({type_name}) {comments.get(f.name, '')}".rstrip())
    return "\n".join(lines)


def _unknown_key(key, cls, where):
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; run with -h to list the {len(names)} keys"
    return ConfigError(f"unknown config key {key!r} {where}{hint}")


def type_options(annotation):
    """The types a field admits: (int, NoneType) for `int | None`."""
    return typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)


def accepts(annotation, kind):
    return kind in type_options(annotation)


def is_tuple(annotation):
    """True for a `tuple[str, ...]` field: several values, given as a,b,c on the command line."""
    return typing.get_origin(annotation) is tuple


def convert(value, annotation, key, where):
    """`value` as the field type `annotation` (int -> float allowed, None for optional fields)."""
    if is_tuple(annotation):
        parts = value.split(",") if isinstance(value, str) else value
        if isinstance(parts, (list, tuple)) and all(isinstance(p, str) for p in parts):
            return tuple(p for p in parts if p)
        raise ConfigError(f"{key} {where} must be text or a list of texts, got {value!r}")
    options = type_options(annotation)
    if value is None:
        if type(None) in options:
            return None
    else:
        for option in options:
            if option is type(None):
                continue
            if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if option is bool and isinstance(value, bool):
                return value
            if option is int and isinstance(value, int) and not isinstance(value, bool):
                return value
            if option is str and isinstance(value, str):
                return value
    expected = " or ".join("None" if o is type(None) else o.__name__ for o in options)
    raise ConfigError(f"{key} {where} must be {expected}, got {value!r}")


def parse_cli_value(text):
    """A command-line value: a Python literal, else the bare string (so --device=cpu works)."""
    lowered = {"true": True, "false": False, "none": None}
    if text.lower() in lowered:
        return lowered[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def read_config_file(path):
    """The names a config file binds, minus modules, functions and classes it used on the way."""
    try:
        namespace = runpy.run_path(str(path))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except SyntaxError as e:
        raise ConfigError(f"config file {path} line {e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        raise ConfigError(f"config file {path} failed to run: {type(e).__name__}: {e}") from None
    return {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_") and not isinstance(value, (types.ModuleType, types.FunctionType, type))
    }


def parse_value(text, annotation, key, where="on the command line"):
    """A command-line value text as the field type `annotation`."""
    value = text if is_tuple(annotation) else parse_cli_value(text)
    if not isinstance(value, str) and accepts(annotation, str) and not accepts(annotation, type(value)):
        value = text  # --start=1984 or --wandb_run_name=42 mean the text
    return convert(value, annotation, key, where)


def note(prog, message):
    """A one-line note on stderr (deprecated spellings): the run goes on."""
    print(f"{prog}: note: {message}", file=sys.stderr)


def parse_options(cls, argv, prog, description="", passthrough=False, usage=None, more_help=""):
    """(values, rest): the --key=value arguments for `cls`'s fields, typed, and everything else in order.

    One convention for every script: --key=value with the field's name, a bare --key for True.
    `rest` holds the positional arguments (config files, paths) and, with `passthrough`, the
    --key=value arguments for keys that are not fields, which the caller hands on (bench.py to
    TrainConfig, compare.py to train.py); without it such a key is an error naming the closest field.
    The spellings of the argparse days still work, each with a one-line note: --kebab-case names
    and `--key value` (several values for a tuple field, as in `--hf-data-files a.json b.json`).
    """
    hints = typing.get_type_hints(cls)
    values, rest = {}, []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            raise HelpRequested(help_text(cls, prog, description, usage) + more_help)
        if not arg.startswith("--"):
            rest.append(arg)
            continue
        name, sep, text = arg[2:].partition("=")
        key = name.replace("-", "_")
        if key not in hints:
            if passthrough:
                rest.append(arg)
                continue
            raise _unknown_key(name, cls, "on the command line")
        if not sep and not accepts(hints[key], bool):
            if not args or args[0].startswith("-"):
                raise ConfigError(f"expected --{key}=value, got {arg!r} (a value starting with '-' needs the = form)")
            taken = [args.pop(0)]
            while is_tuple(hints[key]) and args and not args[0].startswith("-"):
                taken.append(args.pop(0))
            text = ",".join(taken)
            note(prog, f"`--{name} {' '.join(taken)}` is deprecated, write --{key}={text}")
        else:
            text = text if sep else "True"
            if key != name:
                note(prog, f"--{name} is deprecated, write --{key}")
        values[key] = parse_value(text, hints[key], key)
    return values, rest


def build(cls, values):
    """cls(**values), its own checks of the values raised as ConfigError."""
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def load_options(cls, argv, prog, usage, description="", passthrough=False, more_help=""):
    """(options, rest): a `cls` from argv's --key=value, and the other arguments (see parse_options).

    `usage` is the -h usage line (after "usage: "); `more_help` is appended to -h's text.
    """
    values, rest = parse_options(cls, argv, prog, description, passthrough, usage, more_help)
    return build(cls, values), rest


def load_config(cls, argv, prog="train.py", description=""):
    """Build a `cls` instance from argv: config files and --key=value, applied left to right."""
    hints = typing.get_type_hints(cls)
    values = {}
    for arg in argv:
        if arg.startswith("--") or arg == "-h":
            values.update(parse_options(cls, [arg], prog, description)[0])
            continue
        for key, value in read_config_file(arg).items():
            if key not in hints:
                raise _unknown_key(key, cls, f"in {arg}")
            values[key] = convert(value, hints[key], key, f"in {arg}")
    return build(cls, values)
