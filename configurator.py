"""
Typed configuration from config files and --key=value, the nanoGPT habit without its exec.

    python train.py config/swiglu.py config/long.py --batch_size=32 --compile=False

Precedence: the dataclass defaults < config files (left to right) < command line. A config file is
a Python file of plain assignments; it runs in its own namespace (runpy), and every name it binds
must be a field. Being Python, it can do anything a script can: `-h` says so. Command-line values are read with ast.literal_eval (a bare word is a string) and
converted to the field's type. Mistakes raise ConfigError with one line that names the key and
the closest valid keys; `-h` lists every key with its default and comment.
"""

import argparse
import ast
import dataclasses
import difflib
import inspect
import io
import runpy
import tokenize
import types
import typing


class ConfigError(ValueError):
    """A user's configuration mistake; its message is one line meant for the user."""


class HelpRequested(Exception):
    """Raised by load_config for -h/--help; its message is the help text."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse for the CLIs that take flags: a mistake is one `error:` line and exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} -h)\n")


def field_comments(cls):
    """The `# comment` written after each field of dataclass `cls`, by field name."""
    comments = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return comments
    names = {f.name for f in dataclasses.fields(cls)}
    current = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names:
            current = (tok.string, tok.start[0])
        elif tok.type == tokenize.COMMENT and current and tok.start[0] == current[1]:
            comments[current[0]] = tok.string.lstrip("# ").strip()
    return comments


def help_text(cls, prog, description=""):
    """Usage line plus every field with its default and comment."""
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    lines = [f"usage: {prog} [CONFIG_FILE.py ...] [--key=value ...]", ""]
    if description:
        lines += [description, ""]
    lines.append("Config files are Python run in their own namespace (like nanoGPT's): run only ones you trust as code.")
    lines.append("keys (default) — config files set them as `key = value`, the command line as --key=value:")
    for f in dataclasses.fields(cls):
        type_name = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
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


def convert(value, annotation, key, where):
    """`value` as the field type `annotation` (int -> float allowed, None for optional fields)."""
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


def load_config(cls, argv, prog="train.py", description=""):
    """Build a `cls` instance from argv: config files (*.py) and --key=value, left to right."""
    hints = typing.get_type_hints(cls)
    values = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            raise HelpRequested(help_text(cls, prog, description))
        if arg.startswith("--"):
            key, sep, text = arg[2:].partition("=")
            where = "on the command line"
            if not sep:
                raise ConfigError(f"expected --key=value, got {arg!r}")
            if key not in hints:
                raise _unknown_key(key, cls, where)
            value = parse_cli_value(text)
            if not isinstance(value, str) and accepts(hints[key], str) and not accepts(hints[key], type(value)):
                value = text  # --start=1984 or --wandb_run_name=42 mean the text
            values[key] = convert(value, hints[key], key, where)
        else:
            where = f"in {arg}"
            for key, value in read_config_file(arg).items():
                if key not in hints:
                    raise _unknown_key(key, cls, where)
                values[key] = convert(value, hints[key], key, where)
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(str(e)) from None
