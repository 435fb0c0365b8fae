"""The kernels' config, from one source: the dataclass fields of imet_utils.config.

A kernel source's ``CONFIG = dict(...)`` holds only what it overrides; the build merges the command line's
``--set``/``--set-submit`` over it and writes every field into the built kernel (``config_block``). The ``--set``
help (``set_help``) and the README's tables (``config_table``) come from the same fields, and docs/models.md's
table (``models_table``) from the backbone registry, ``imet_utils.models.MODELS``.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imet_utils.config import ConfigError, SubmitConfig, TrainConfig, coerce_value, from_dict, to_dict
from imet_utils.models import MODELS, ThroughputEstimate, get_backbone
from kernel_build.kernel import ROOT, SET_FLAGS, SOURCES, BuildError

CONFIG_CLASSES = {"train": TrainConfig, "submit": SubmitConfig}
CONFIG_START = "# ==== CONFIG"
CONFIG_END = "# ==== END CONFIG ===="
_TABLE_START = "<!-- config table: {} (python build_kernel.py config-table docs/configuration.md writes it) -->"
_TABLE_END = "<!-- end of config table -->"
MODELS_DOC = ROOT / "docs" / "models.md"
_MODELS_START = (
    "<!-- models table: generated from imet_utils.models.MODELS (kernel_build.settings.write_models_doc writes it) -->"
)
_MODELS_END = "<!-- end of models table -->"


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


def field_help(field: dataclasses.Field) -> str:
    """A config field's help line: its ``setting`` help, made now where it lists a registry's names."""
    text = field.metadata.get("help", "")
    return text() if callable(text) else text


def parse_override(cls: type, text: str) -> tuple[str, Any]:
    """Parses one ``key=value`` override; the value is JSON, or a bare string.

    Examples: ``epochs=3``, ``model=tiny-cnn``, ``folds=[0,1]``, ``weights=null``.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    hints = typing.get_type_hints(cls)
    if key not in hints:
        names = [f.name for f in dataclasses.fields(cls)]
        raise ConfigError(f"unknown {cls.__name__} key(s) {[key]}; valid keys: {', '.join(names)}")
    coerce_value(key, hints[key], value)  # the type now; cross-field checks once all overrides are merged
    return key, value


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
        config = from_dict(CONFIG_CLASSES[role], values)
        if role == "train":
            get_backbone(config.model)  # the registry lives outside the config: checked here, at build time
    except ValueError as e:  # a ConfigError, or an unknown model
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


def render_config_block(cls: type, values: dict, *, how_to_change: str) -> str:
    """The ``CONFIG = dict(...)`` block of a built kernel: every field of ``cls`` with its value (``values`` over
    the defaults) and its help; a value that differs from the default says so.

    Args:
        cls: ``TrainConfig`` or ``SubmitConfig``.
        values: the overrides (the kernel source's and the build's).
        how_to_change: the comment line over the block.
    """
    defaults = to_dict(cls())
    chosen = to_dict(from_dict(cls, values))
    lines = [f"{CONFIG_START}: {how_to_change} ====", "CONFIG = dict("]
    for f in dataclasses.fields(cls):
        value, default = chosen[f.name], defaults[f.name]
        note = "" if value == default else f" [default {default!r}]"
        lines.append(f"    {f.name}={value!r},  # {field_help(f)}{note}")
    lines += [")", CONFIG_END]
    return "\n".join(lines) + "\n"


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
        f"| `{f.name}` | `{_cell(_shown(defaults[f.name]))}` | {_cell(field_help(f))} |"
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


def _norm(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def models_table() -> str:
    """docs/models.md's table of the backbones: one row per ``MODELS`` entry, between markers that
    ``replace_models_table`` finds."""
    rows = []
    for name, b in MODELS.items():
        speed = ("{:g} | {:g}".format(*b.throughput)) if b.throughput else "no figure | no figure"
        pip = b.pip or b.weights_pip
        rows.append(
            f"| `{name}` | {f'`{pip}`' if pip else 'none'} | {_cell(b.weights_from)} | {_cell(b.weights_licence)} | "
            f"({_norm(b.mean)}) / ({_norm(b.std)}) | {speed} | {_cell(b.note)} |"
        )
    return "\n".join(
        [
            _MODELS_START,
            "",
            f"Throughput: images per second at {ThroughputEstimate.SIZE} px in float16 on {ThroughputEstimate.CARD}, "
            "training and inference: unmeasured estimates, as `python build_kernel.py plan` prints them. A figure "
            "measured on a card wins there: each kernel's `run_status.json` records its throughput, `pull` brings it "
            "to `runs/<slug>/v<N>/`, and `bench/gpu.py` writes the same record. Normalisation: mean / std on 0..1 "
            "pixels, inside the model.",
            "",
            "| `model` | pip package (train kernel only) | pretrained weights | weights licence | normalisation "
            "| train img/s (est.) | inference img/s (est.) | pick it for |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            _MODELS_END,
        ]
    )


def replace_models_table(text: str) -> str:
    """``text`` (docs/models.md) with its marked models table replaced by the generated one."""
    pattern = re.compile(re.escape(_MODELS_START) + r".*?" + re.escape(_MODELS_END), re.S)
    if not pattern.search(text):
        raise BuildError(f"no models table to replace: mark its place with {_MODELS_START} ... {_MODELS_END}")
    return pattern.sub(lambda _: models_table(), text, count=1)


def write_models_doc() -> None:
    """Regenerates docs/models.md's table from the registry."""
    MODELS_DOC.write_text(replace_models_table(MODELS_DOC.read_text()))
