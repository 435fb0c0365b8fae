"""The kernels' config, from one source: the dataclass fields of imet_utils.config.

A kernel source's ``CONFIG = dict(...)`` holds only what it overrides; the build merges the command line's
``--set``/``--set-submit`` over it and writes every field into the built kernel (``config_block``). The ``--set``
help (``set_help``) and the README's tables (``config_table``) come from the same fields.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path

from imet_utils.config import (
    CONFIG_END,
    CONFIG_START,
    ConfigError,
    SubmitConfig,
    TrainConfig,
    from_dict,
    parse_override,
    render_config_block,
    to_dict,
)
from kernel_build.kernel import SET_FLAGS, SOURCES, BuildError

CONFIG_CLASSES = {"train": TrainConfig, "submit": SubmitConfig}
_TABLE_START = "<!-- config table: {} (python build_kernel.py --config-table README.md writes it) -->"
_TABLE_END = "<!-- end of config table -->"


def split_source(source: str, path: Path) -> tuple[str, str, str]:
    """Kernel source -> (docstring, config block, the rest)."""
    start, end = source.find(CONFIG_START), source.find(CONFIG_END)
    if start < 0 or end < 0:
        raise BuildError(f"{path}: no config block between '{CONFIG_START}' and '{CONFIG_END}'")
    end += len(CONFIG_END)
    return source[:start].rstrip() + "\n", source[start:end] + "\n", source[end:].lstrip("\n")


def source_config(role: str) -> dict[str, object]:
    """What the kernel source's ``CONFIG = dict(key=literal, ...)`` block overrides."""
    path = SOURCES[role]
    _, block, _ = split_source(path.read_text(), path)
    body = ast.parse(block).body
    call = body[0].value if len(body) == 1 and isinstance(body[0], ast.Assign) else None
    if not (
        isinstance(call, ast.Call)
        and getattr(call.func, "id", "") == "dict"
        and not call.args
        and all(kw.arg for kw in call.keywords)
    ):
        raise BuildError(f"{path}: the config block must be one CONFIG = dict(key=literal, ...)")
    values = {}
    for kw in call.keywords:
        try:
            values[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise BuildError(
                f"{path}: CONFIG {kw.arg}= must be a literal (a number, string, list, True, "
                f"False or None), got {ast.unparse(kw.value)!r}"
            ) from None
    return values


def parse_overrides(pairs: Sequence[str], role: str) -> dict[str, object]:
    """``key=value`` strings (``--set``) -> dict, each type-checked against the role's config dataclass."""
    out = {}
    for pair in pairs:
        try:
            key, value = parse_override(CONFIG_CLASSES[role], pair)
        except ConfigError as e:
            raise BuildError(f"{SET_FLAGS[role]} {pair}: {e}") from None
        out[key] = value
    return out


def kernel_values(role: str, overrides: dict[str, object]) -> dict[str, object]:
    """The kernel source's CONFIG with ``overrides`` over it, validated as the kernel will at its start.

    Setting ``n_folds`` alone also sets ``folds`` to all of them.
    """
    overrides = dict(overrides)
    if role == "train" and "n_folds" in overrides and "folds" not in overrides:
        overrides["folds"] = list(range(int(overrides["n_folds"])))
    values = {**source_config(role), **overrides}
    try:
        from_dict(CONFIG_CLASSES[role], values)
    except ConfigError as e:
        raise BuildError(f"{role} kernel config: {e}") from None
    return values


def full_config(role: str, values: dict[str, object]) -> dict[str, object]:
    """Every field of the role's config, ``values`` (from ``kernel_values``) over the defaults."""
    return to_dict(from_dict(CONFIG_CLASSES[role], values))


def effective_config(role: str, overrides: dict[str, object]) -> dict[str, object]:
    """Every field of the role's config as the built kernel will see it: source, ``overrides``, defaults."""
    return full_config(role, kernel_values(role, overrides))


def config_block(role: str, values: dict[str, object]) -> str:
    """The built kernel's CONFIG block: every field, its value, its help, and its default where it differs."""
    how = f"on Kaggle, edit here; locally: python build_kernel.py {SET_FLAGS[role]} key=value"
    return render_config_block(CONFIG_CLASSES[role], values, how_to_change=how)


def set_help(role: str) -> str:
    """The ``--set``/``--set-submit`` help: what it does and every valid key."""
    cls = CONFIG_CLASSES[role]
    example = "epochs=4 --set folds=[0,1]" if role == "train" else "tta=4"
    return (
        f"override a {role} config field (a JSON value, or a bare string), e.g. {SET_FLAGS[role]} {example}; "
        f"keys: {', '.join(f.name for f in dataclasses.fields(cls))}"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _shown(value: object) -> str:
    """A default as ``--set`` takes it: JSON, with strings bare."""
    return value if isinstance(value, str) else json.dumps(list(value) if isinstance(value, tuple) else value)


def config_table(role: str) -> str:
    """The README table of the role's config fields, between markers that ``replace_config_tables`` finds."""
    cls = CONFIG_CLASSES[role]
    defaults = to_dict(cls())
    rows = [
        f"| `{f.name}` | `{_cell(_shown(defaults[f.name]))}` | {_cell(f.metadata.get('help', ''))} |"
        for f in dataclasses.fields(cls)
    ]
    return "\n".join(
        [_TABLE_START.format(cls.__name__), "", "| key | default | meaning |", "|---|---|---|", *rows, "", _TABLE_END]
    )


def replace_config_tables(text: str) -> str:
    """``text`` (the README) with each marked config table replaced by the generated one."""
    for role in CONFIG_CLASSES:
        start = re.escape(_TABLE_START.format(CONFIG_CLASSES[role].__name__))
        pattern = re.compile(start + r".*?" + re.escape(_TABLE_END), re.S)
        if not pattern.search(text):
            raise BuildError(
                f"no {CONFIG_CLASSES[role].__name__} table to replace: mark its place with "
                f"{_TABLE_START.format(CONFIG_CLASSES[role].__name__)} ... {_TABLE_END}"
            )
        text = pattern.sub(lambda _, role=role: config_table(role), text, count=1)
    return text
