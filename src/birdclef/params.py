"""Parameter values → the type of the :class:`~birdclef.config.Config` field they set.

Every route a parameter takes (a papermill cell, ``-p key=value`` on the command line,
``build_config(**params)``, a saved config.json) ends here, so ``-p denoise=false`` is ``False``
and ``-p epochs=2.5`` is refused. The accepted forms, by the field's type hint:

- ``bool``: ``True``/``False``, 1/0, or the strings true/false/yes/no/1/0 (any case);
- ``int``: a whole number (``3``, ``3.0``, ``"3"``); ``float``: a number or a numeric string;
- ``str`` and ``Literal[...]``: a string (a path is taken as its text; a ``Literal`` one of its choices);
- ``tuple[X, ...]``: a list or tuple, one value, or a string ``"[0.1, 0.2]"``, ``"0.1,0.2"``, ``"0.1"``;
- ``X | None``: also ``None`` or the strings none/null (any case);
- ``dict``: a dict, or its literal as a string.

Anything else raises :class:`~birdclef.errors.ParameterError` with one line naming the field,
the value and the accepted form.
"""
from __future__ import annotations

import ast
import numbers
import os
import types
import typing
from typing import Any, Collection, Literal

import numpy as np

from birdclef.errors import ParameterError

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
_NONE = {"none", "null"}


class _Refused(Exception):
    """A value does not fit a type; the caller names the field."""


def parse_pairs(pairs: list[str], *, text: Collection[str] | None = None) -> dict[str, Any]:
    """``-p key=value`` pairs (the command lines' form) → {key: value}. A key in ``text`` (every key when
    None: e.g. the Config fields, which :func:`convert_params` types later) keeps its value as text;
    any other is read as a Python literal where it is one (a notebook's own parameter), else text.
    A pair without ``=`` or with an empty key is refused by name."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not key:
            raise ParameterError(f"-p expects key=value, got {pair!r}")
        out[key] = value if text is None or key in text else _literal(value)
    return out


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def convert_params(params: dict[str, Any], hints: dict[str, Any]) -> dict[str, Any]:
    """{name: value} → {name: value converted to ``hints[name]``}; names without a hint pass unchanged.

    Every refused value is named in the one-line :class:`ParameterError`.
    """
    out, errors = {}, []
    for name, value in params.items():
        try:
            out[name] = convert(name, value, hints[name]) if name in hints else value
        except ParameterError as err:
            errors.append(str(err))
    if errors:
        raise ParameterError("; ".join(errors))
    return out


def convert(name: str, value: Any, hint: Any) -> Any:
    """One value → ``hint``'s type, or :class:`ParameterError` naming ``name``, ``value`` and the accepted form."""
    try:
        return _convert(value, hint)
    except _Refused:
        raise ParameterError(f"{name}={value!r} is not valid: expected {accepted_form(hint)}") from None


def accepted_form(hint: Any) -> str:
    """What a value of ``hint`` may look like, in words (for error messages and help)."""
    inner, optional = _optional(hint)
    text = _form(inner)
    return f"{text}, or none" if optional else text


def _optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != len(typing.get_args(hint)):
            return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True
    return hint, False


def _form(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is bool:
        return "true/false/yes/no/1/0"
    if hint is int:
        return "a whole number, e.g. 30"
    if hint is float:
        return "a number, e.g. 0.5"
    if hint is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if item is int:
            return "a list of whole numbers, e.g. [512, 256] or 512,256"
        if item is float:
            return "a list of numbers, e.g. [0.25, 0.5, 0.25] or 0.25,0.5,0.25"
        return "a list of strings, e.g. [runs/a/model, runs/b/model] or runs/a/model,runs/b/model"
    if origin is dict or hint is dict:
        return "a dict, e.g. {'key': 1}"
    return str(hint)


def _convert(value: Any, hint: Any) -> Any:
    inner, optional = _optional(hint)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    if value is None or hint is Any:
        if hint is Any:
            return value
        raise _Refused
    origin = typing.get_origin(inner)
    if inner is bool:
        return _bool(value)
    if inner is int:
        return _int(value)
    if inner is float:
        return _float(value)
    if inner is str:
        return _str(value)
    if origin is Literal:
        text = _str(value)
        if text not in typing.get_args(inner):
            raise _Refused
        return text
    if origin is tuple:
        return _tuple(value, typing.get_args(inner)[0])
    if origin is dict or inner is dict:
        return _dict(value)
    raise _Refused


def _bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Refused


def _int(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise _Refused
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise _Refused from None
            if number.is_integer():
                return int(number)
    raise _Refused


def _float(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise _Refused
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _Refused from None
    raise _Refused


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return str(value)  # e.g. papermill's -p run_name 2024
    raise _Refused


def _tuple(value: Any, item: Any) -> tuple:
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[(" and text[-1:] in "])":
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed = None
            items = list(parsed) if isinstance(parsed, (list, tuple)) else text[1:-1].split(",")
        else:
            items = text.split(",") if text else []
        items = [v.strip() if isinstance(v, str) else v for v in items]
        if any(v == "" for v in items):
            raise _Refused  # "0.1,,0.2" or a trailing comma
    elif isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    elif isinstance(value, (numbers.Real, os.PathLike)):
        items = [value]
    else:
        raise _Refused
    return tuple(_convert(v, item) for v in items)


def _dict(value: Any) -> dict:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise _Refused from None
    if not isinstance(value, dict):
        raise _Refused
    return dict(value)
