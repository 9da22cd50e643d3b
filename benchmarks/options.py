"""Declared options of suites (``--set``) and models (``--model-set``), checked before any work.

Suite options are declared here, in :data:`SUITE_OPTIONS` — one table for every built-in suite
(name, type, allowed range or values, meaning). A suite registered by a third party declares
its own with a class attribute ``option_specs`` of the same shape. Model options are the
keyword parameters of the adapter's constructor (its ``__init__`` and those of its parent
adapters), typed by their annotations; a numeric parameter whose default is positive must
stay positive for integers (≥ 1) and non-negative for floats.

Values may arrive as the strings of the command line or as Python values from the API;
:func:`coerce` converts both to the declared type or raises a one-line
:class:`~benchmarks.errors.InputError` naming the flag, the key and the fix.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from benchmarks.errors import InputError


@dataclass(frozen=True)
class Option:
    """One declared option: its type, what values are allowed and what it does."""

    type: str
    """``int``, ``float``, ``bool``, ``str`` or ``list`` (a comma-separated list of strings)."""
    help: str
    low: float | None = None
    """Smallest allowed value (numbers)."""
    high: float | None = None
    """Largest allowed value (numbers)."""
    low_open: bool = False
    """``low`` itself is not allowed."""
    high_open: bool = False
    """``high`` itself is not allowed."""
    choices: tuple[str, ...] = ()
    """Allowed values (strings)."""

    def describe(self) -> str:
        """The rule in words, e.g. ``a float in (0, 1)``."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        rule = f"a{'n' if self.type == 'int' else ''} {self.type}"
        if self.low is not None and self.high is not None:
            lo, hi = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{rule} in {lo}{self.low:g}, {self.high:g}{hi}"
        if self.low is not None:
            return f"{rule} {'>' if self.low_open else '≥'} {self.low:g}"
        return rule


_FRACTION = {"low": 0.0, "high": 1.0, "low_open": True, "high_open": True}

SUITE_OPTIONS: dict[str, dict[str, Option]] = {
    "annotation": {
        "query_fraction": Option("float", "share of cells held out as the query", **_FRACTION),
        "min_genes": Option("int", "QC: drop cells with fewer detected genes", low=0),
        "unseen_labels": Option("list", "labels held out of the reference (also --unseen-label)"),
    },
    "clustering": {
        "min_genes": Option("int", "QC: drop cells with fewer detected genes", low=0),
        "n_neighbors": Option("int", "neighbours of the kNN graph for the metrics", low=2),
    },
    "gene-classification": {
        "n_folds": Option("int", "folds of the stratified cross-validation", low=2),
        "n_estimators": Option("int", "trees of the random forest", low=1),
    },
    "grn": {
        "program_resolution": Option("float", "Leiden resolution of gene programs", low=0, low_open=True),
        "program_neighbors": Option("int", "neighbours of the gene kNN graph", low=1),
        "min_program_size": Option("int", "smallest gene program scored", low=1),
    },
    "perturbation": {
        "train_gene_set_size": Option(
            "float", "GEARS simulation split: share of genes in training", low=0.0, high=1.0, low_open=True
        ),
        "combo_seen2_train_frac": Option(
            "float", "GEARS simulation split: seen-2 combos in training", low=0.0, high=1.0
        ),
        "split": Option("str", "how conditions are split", choices=("auto", "declared", "gears_simulation")),
        "condition_key": Option("str", "obs column with conditions (also --condition-key)"),
    },
    "bulk-knockout": {
        "split": Option(
            "str", "how knockouts are split", choices=("auto", "by_ko_gene", "leave_one_pair_out")
        ),
        "test_fraction": Option("float", "share of knockout genes held out", **_FRACTION),
        "nan_policy": Option("str", "missing values in the profiles", choices=("error", "drop_genes")),
        "knockout": Option("dict", "knockout design (API only; cards declare it)"),
    },
}
"""Every built-in suite's ``--set`` keys."""


def suite_option_specs(suite: str, suite_cls: type | None = None) -> dict[str, Option] | None:
    """The declared options of ``suite`` (``None`` when a third-party suite declares none)."""
    if suite in SUITE_OPTIONS:
        return SUITE_OPTIONS[suite]
    specs = getattr(suite_cls, "option_specs", None)
    return dict(specs) if isinstance(specs, Mapping) else None


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _fail(flag: str, key: str, value: Any, rule: str) -> InputError:
    return InputError(f"{flag} {key}={value!r}: expected {rule}")


def _to_int(value: Any, flag: str, key: str, rule: str) -> int:
    if isinstance(value, bool):
        raise _fail(flag, key, value, rule)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _fail(flag, key, value, rule)


def _to_float(value: Any, flag: str, key: str, rule: str) -> float:
    if isinstance(value, bool):
        raise _fail(flag, key, value, rule)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _fail(flag, key, value, rule) from None
    if not math.isfinite(out):
        raise _fail(flag, key, value, rule)
    return out


def coerce(value: Any, typ: str, flag: str, key: str, rule: str | None = None) -> Any:
    """Convert ``value`` (a command-line string or a Python value) to ``typ``.

    Raises
    ------
    InputError
        If the value cannot be read as ``typ``.

    """
    rule = rule or f"a{'n' if typ == 'int' else ''} {typ}"
    if typ == "int":
        return _to_int(value, flag, key, rule)
    if typ == "float":
        return _to_float(value, flag, key, rule)
    if typ == "bool":
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in _TRUE:
            return True
        if str(value).strip().lower() in _FALSE:
            return False
        raise _fail(flag, key, value, "true or false")
    if typ == "str":
        if isinstance(value, (dict, list, tuple, set)):
            raise _fail(flag, key, value, rule)
        return str(value)
    if typ == "list":
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        raise _fail(flag, key, value, "a comma-separated list")
    if typ == "dict":
        if not isinstance(value, Mapping):
            raise _fail(flag, key, value, "a table (set it in the card or through the API)")
        return dict(value)
    return value


def check_option(value: Any, spec: Option, flag: str, key: str) -> Any:
    """``value`` coerced to ``spec``'s type and checked against its range or choices."""
    rule = spec.describe()
    out = coerce(value, spec.type, flag, key, rule)
    if spec.choices and out not in spec.choices:
        raise _fail(flag, key, value, rule)
    if spec.type in ("int", "float"):
        too_low = spec.low is not None and (out <= spec.low if spec.low_open else out < spec.low)
        too_high = spec.high is not None and (out >= spec.high if spec.high_open else out > spec.high)
        if too_low or too_high:
            raise _fail(flag, key, value, rule)
    return out


def check_suite_options(
    suite: str, options: Mapping[str, Any], suite_cls: type | None = None
) -> dict[str, Any]:
    """``options`` of ``suite`` with every key known and every value of its declared type.

    Raises
    ------
    InputError
        An unknown key (the message lists the valid ones) or a value of the wrong type/range.

    """
    specs = suite_option_specs(suite, suite_cls)
    if specs is None:
        return dict(options)
    out = {}
    for key, value in options.items():
        if key not in specs:
            valid = ", ".join(f"{k} ({s.describe()})" for k, s in sorted(specs.items()) if s.type != "dict")
            raise InputError(f"--set {key}: suite {suite} has no option {key!r}; valid: {valid or '(none)'}")
        out[key] = check_option(value, specs[key], "--set", key)
    return out


# -- model parameters ------------------------------------------------------------------------

_SKIP = {"self", "seed", "quick", "variant"}
_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "Path": "str"}


@dataclass(frozen=True)
class ModelParam:
    """A keyword parameter of an adapter's constructor."""

    name: str
    types: tuple[str, ...]
    """Accepted types in order of preference (``any`` when the annotation is not a simple one)."""
    optional: bool
    default: Any

    def describe(self) -> str:
        """The accepted types in words."""
        kinds = " or ".join(self.types)
        return f"{kinds}{' or none' if self.optional else ''}"


def _annotation_types(annotation: Any) -> tuple[tuple[str, ...], bool]:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if annotation is inspect.Parameter.empty:
        return ("any",), True
    types: list[str] = []
    optional = False
    for part in (p.strip() for p in str(text).replace("Optional[", "").rstrip("]").split("|")):
        if part == "None":
            optional = True
        elif part in _TYPES:
            types.append(_TYPES[part])
        elif part.startswith(("Sequence[str]", "list[str]", "tuple[str")):
            types.append("list")
        else:
            return ("any",), True
    if "float" in types and "int" in types:
        types.remove("float")
        types.insert(types.index("int") + 1, "float")
    return tuple(dict.fromkeys(types)) or ("any",), optional


def model_params(cls: type) -> dict[str, ModelParam] | None:
    """The keyword parameters an adapter class accepts (``None`` when it takes any)."""
    out: dict[str, ModelParam] = {}
    for klass in cls.__mro__:
        init: Callable[..., Any] | None = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass.__name__ == "ModelAdapter" or klass is object:
            break
        sig = inspect.signature(init)
        var_kw = False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif p.kind is p.VAR_POSITIONAL or p.name in _SKIP or p.name in out:
                continue
            else:
                types, optional = _annotation_types(p.annotation)
                default = None if p.default is p.empty else p.default
                out[p.name] = ModelParam(p.name, types, optional or p.default is None, default)
        if not var_kw:
            break
    return out


def check_model_param(model: str, param: ModelParam, value: Any) -> Any:
    """``value`` converted to one of ``param``'s types, with positive defaults kept positive."""
    flag, key = "--model-set", f"{model}.{param.name}"
    if param.optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    if "any" in param.types:
        return value
    # a string stays a string where the parameter takes one (``edge_types="tftg,coexpr"``);
    # only numbers and booleans are read out of it first (``pretrain_seed: int | str``)
    order = [t for t in param.types if not (isinstance(value, str) and t == "list" and "str" in param.types)]
    order = [t for t in order if t != "str"] + (["str"] if "str" in order else [])
    for typ in order:
        if typ == "str" and not isinstance(value, str) and len(order) > 1:
            continue
        try:
            out = coerce(value, typ, flag, key)
        except InputError:
            continue
        if typ == "float" and isinstance(value, int) and not isinstance(value, bool):
            out = value  # 1 stays 1: the config hash of earlier runs does not change
        default = param.default
        positive = isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0
        if positive and typ == "int" and out < 1:
            raise _fail(flag, key, value, "an integer ≥ 1")
        if positive and typ == "float" and out < 0:
            raise _fail(flag, key, value, "a number ≥ 0")
        return out
    if "str" in param.types:
        return str(value)
    raise _fail(flag, key, value, param.describe())


def check_model_params(model: str, cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` for adapter ``cls`` with every key a constructor parameter of a valid type.

    Raises
    ------
    InputError
        An unknown key (the message lists the valid ones) or a value of the wrong type.

    """
    declared = model_params(cls)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if declared is not None and key not in declared:
            valid = ", ".join(f"{k} ({p.describe()})" for k, p in sorted(declared.items()))
            raise InputError(
                f"--model-set {model}.{key}: model {model} has no parameter {key!r}; "
                f"valid: {valid or '(it takes none)'}"
            )
        out[key] = check_model_param(model, declared[key], value) if declared is not None else value
    return out
