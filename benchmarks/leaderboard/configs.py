"""Which records may share a leaderboard row: the configuration hash without the seed.

A record's ``config_hash`` covers its whole cell configuration *including the seed*, so it
cannot group seeds. A row instead groups records whose :func:`row_config` is equal: the
suite settings (``--quick`` and suite options), the dataset (name, version, sha256), the model
string and the user's model parameters. The seed is left out, and so are the task parameters,
which the suite derives from the dataset, its settings and the seed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.interface import config_hash

ROW_CONFIG_FIELDS = ("suite_config", "dataset", "model", "model_params")
"""Fields of a record's ``config`` that identify a row (everything but ``seed``/``task_params``)."""


def row_config(record: Mapping[str, Any]) -> dict[str, Any]:
    """The seed-free configuration of ``record`` (its ``config`` restricted to :data:`ROW_CONFIG_FIELDS`)."""
    config = record.get("config")
    if not isinstance(config, Mapping):  # a record without a config groups with its like
        config = {}
    return {k: config.get(k) for k in ROW_CONFIG_FIELDS}


def row_config_hash(record: Mapping[str, Any]) -> str:
    """Hash of :func:`row_config`: records with equal hashes may be averaged in one row."""
    return config_hash(row_config(record))


def suite_config_hash(record: Mapping[str, Any]) -> str:
    """Hash of the suite settings alone (``--quick`` and options): controls must share it."""
    return config_hash({"suite_config": row_config(record)["suite_config"]})


def is_quick(record: Mapping[str, Any]) -> bool:
    """Whether a record ran with the suite's ``--quick`` settings."""
    suite = row_config(record)["suite_config"]
    return bool(suite.get("quick")) if isinstance(suite, Mapping) else False


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(value, sort_keys=True, default=str)}


def config_tags(configs: Sequence[Mapping[str, Any]], max_len: int = 40) -> list[str]:
    """Short labels telling apart several configurations of one model on one dataset.

    Parameters
    ----------
    configs
        One :func:`row_config` per configuration.
    max_len
        Longer descriptions are replaced by the configuration hash.

    Returns
    -------
    list of str
        ``""`` for each when there is a single configuration; otherwise ``"quick"`` /
        ``"full"`` when only the ``--quick`` flag differs, else the differing settings
        (``model_params.n_pcs=10``), else ``"config <hash>"``.

    """
    if len(configs) < 2:
        return [""] * len(configs)
    flat = [_flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f})
    differing = [k for k in keys if len({f.get(k) for f in flat}) > 1]
    tags = []
    for c, f in zip(configs, flat, strict=True):
        if differing == ["suite_config.quick"]:
            tags.append("quick" if f.get("suite_config.quick") == "true" else "full")
            continue
        quick = "quick" if f.get("suite_config.quick") == "true" else "full"
        parts = [quick] if "suite_config.quick" in differing else []
        others = [k for k in differing if k != "suite_config.quick"]
        parts += [f"{k.removeprefix('suite_config.')}={f.get(k, '∅')}" for k in others]
        text = ", ".join(parts)
        tags.append(text if text and len(text) <= max_len else f"config {config_hash(c)[:8]}")
    return tags
