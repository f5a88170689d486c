"""Command-line options built from the settings they fill: a setting is declared once (its type, default and help
text, in a dataclass or a pydantic model) and a command that takes it gets its flag from that declaration."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing

import typer


def setting_fields(cls) -> list[tuple[str, object, object, str]]:
    """(name, type, default, help) of each field of a dataclass or a pydantic model."""
    hints = typing.get_type_hints(cls)
    if dataclasses.is_dataclass(cls):
        return [
            (f.name, hints[f.name], f.default, f.metadata.get("help", ""))
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING
        ]
    return [
        (name, hints[name], f.get_default(call_default_factory=True), f.description or "")
        for name, f in cls.model_fields.items()
    ]


def flag_names(name: str) -> list[str]:
    """`--some-field`, and `--some_field` as the training commands (TRL's parser) spell the same field."""
    dashed = "--" + name.replace("_", "-")
    return [dashed] if "_" not in name else [dashed, "--" + name]


def setting_params(cls, exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    params = []
    for name, tp, default, help_text in setting_fields(cls):
        if name in exclude:
            continue
        if tp is bool:
            names = [f"{flag_names(name)[0]}/--no-{name.replace('_', '-')}"]
        else:
            names = flag_names(name)
        option = typer.Option(default, *names, help=help_text)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=tp))
    return params


def with_settings(cls, arg: str, exclude: tuple[str, ...] = ()):
    """Give a command one flag per field of `cls` (but `exclude`); the command receives the filled settings as the
    keyword argument `arg`."""

    def decorate(fn):
        hints = typing.get_type_hints(fn)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(fn).parameters.values()
            if p.name != arg
        ]
        generated = setting_params(cls, exclude)
        names = {p.name for p in generated}

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            values = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return fn(*args, **kwargs, **{arg: cls(**values)})

        wrapper.__signature__ = inspect.Signature(own + generated)
        wrapper.__annotations__ = {p.name: p.annotation for p in own + generated}
        del wrapper.__wrapped__  # typer must read the new signature, not the wrapped function's
        return wrapper

    return decorate
