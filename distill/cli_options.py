"""Command-line options built from the settings they fill: a setting is declared once (its type, default and help
text, in a dataclass or a pydantic model) and a command that takes it gets its flag from that declaration."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
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


def flag_type(tp):
    """The one type a flag can take for a field's type: a union of a value and a list of values (a URL or several)
    is a repeatable flag of that value."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) > 1:
        lists = [a for a in args if typing.get_origin(a) is list]
        return (lists[0] if lists else str) | None
    return tp


def flag_names(name: str) -> list[str]:
    """`--some-field`, and `--some_field` as the training commands (TRL's parser) spell the same field."""
    dashed = "--" + name.replace("_", "-")
    return [dashed] if "_" not in name else [dashed, "--" + name]


def setting_params(
    cls, exclude: tuple[str, ...] = (), include: tuple[str, ...] | None = None, overrides: bool | str = False
) -> list[inspect.Parameter]:
    """One typer option per field. `overrides`: every flag defaults to None (not given), for commands whose
    values come from elsewhere (a recipe, or what the string names) that the flags override; the help names the
    field's own default."""
    params = []
    for name, tp, default, help_text in setting_fields(cls):
        if name in exclude or (include is not None and name not in include):
            continue
        if tp is bool or tp == bool | None:  # an on/off setting, or one whose default is decided elsewhere
            names = [f"{flag_names(name)[0]}/--no-{name.replace('_', '-')}"]
        else:
            names = flag_names(name)
        if overrides:
            fallback = f", else {default}" if default is not None else ""
            source = overrides if isinstance(overrides, str) else "the recipe's"
            help_text = f"{help_text} [default: {source}{fallback}]".strip()
            default, tp = None, flag_type(tp) | None
        option = typer.Option(default, *names, help=help_text, show_default=not overrides)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=flag_type(tp)))
    return params


def with_settings(
    cls, arg: str, exclude: tuple[str, ...] = (), include: tuple[str, ...] | None = None, overrides: bool | str = False
):
    """Give a command one flag per field of `cls` (but `exclude`; only `include`, if given); the command receives
    the filled settings as the keyword argument `arg` (with `include` or `overrides`: a dict of the fields given,
    for the caller to complete or to lay over a recipe)."""

    def decorate(fn):
        hints = typing.get_type_hints(fn)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(fn).parameters.values()
            if p.name != arg
        ]
        generated = setting_params(cls, exclude, include, overrides)
        names = {p.name for p in generated}

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            values = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            if overrides:
                return fn(*args, **kwargs, **{arg: {k: v for k, v in values.items() if v is not None}})
            return fn(*args, **kwargs, **{arg: values if include is not None else cls(**values)})

        wrapper.__signature__ = inspect.Signature(own + generated)
        wrapper.__settings__ = [*getattr(fn, "__settings__", []), (cls, sorted(names))]  # what the flags fill
        wrapper.__annotations__ = {p.name: p.annotation for p in own + generated}
        del wrapper.__wrapped__  # typer must read the new signature, not the wrapped function's
        return wrapper

    return decorate
