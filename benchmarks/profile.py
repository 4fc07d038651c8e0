"""Benchmark profiles: every scale knob of one run of Tables 1-3 in one YAML file.

Besides `tasks` (Detectron2 fine-tuning), `linear_eval` configures the `linear_cls` task
(`pretrain.linear_eval`; the `transfer` overrides do not apply to it) and `ablations.<table>.values` the
pretraining values of each DenseCL ablation (defaults: the paper's, `benchmarks.experiments.ABLATIONS`).

A profile is `benchmarks/profiles/<name>.yaml` or any YAML path. It may start with `_BASE_: <name or
path>` to inherit another profile (mappings are merged key by key). `--set key=value` overrides walk the
profile with dotted keys; inside an `overrides` mapping the rest is one yacs key, e.g.
`tasks.voc_det.overrides.SOLVER.MAX_ITER=200` or `pretrain.overrides.SOLVER.BATCH_SIZE=64`. Values are
parsed as YAML (`3` is an int, `[1, 2]` a list, `null` None). `PROFILE_KEYS` lists every key a profile may
hold: a misspelt key, in a file or a `--set`, is refused instead of silently doing nothing; only the
free-form mappings (yacs `overrides`, checked by the configs themselves, and `slurm`, submitit's
parameters) take any key.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.experiments import ABLATIONS_BY_NAME, ROWS_BY_KEY, TASKS, Ablation
from benchmarks.protocol_check import protocol_changes

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

VALUE = "a value"  # a leaf of PROFILE_KEYS: a scalar or a list, type-checked by build_profile
FREE = "free-form"  # a mapping of PROFILE_KEYS whose keys are not ours to check
_RUN_KEYS = {"config": VALUE, "overrides": FREE}
_TASK_KEYS = {"config": VALUE, "seeds": VALUE, "overrides": FREE, "rows": VALUE}
_CALIBRATION_KEYS = dict.fromkeys(
    ["probe_s", "data", "pretrain", "convert", *(f"cell/{task}" for task in TASKS)], VALUE
)
# Every key a profile may hold, nested as in the YAML file.
PROFILE_KEYS: dict[str, Any] = {
    "name": VALUE,
    "scaled": VALUE,
    "description": VALUE,
    "data": {"root": VALUE, "synthetic": VALUE, "seed": VALUE},
    "output_dir": VALUE,
    "results_dir": VALUE,
    "keep_checkpoints": VALUE,
    "num_gpus": VALUE,
    "supervised_checkpoint": VALUE,
    "pretrain": {
        "overrides": FREE,
        "runs": {key: _RUN_KEYS for key, row in ROWS_BY_KEY.items() if row.needs_weights},
    },
    "transfer": {"overrides": FREE},
    "tasks": {name: _TASK_KEYS for name, task in TASKS.items() if task.entry == "transfer"},
    "linear_eval": _TASK_KEYS,
    "ablations": {name: {"values": VALUE} for name in ABLATIONS_BY_NAME},
    "slurm": FREE,  # submitit's AutoExecutor parameters
    "expected_wall_s": {**_CALIBRATION_KEYS, "bfloat16": _CALIBRATION_KEYS},
}
UNKNOWN_KEY_FIX = (
    "Fix the spelling; yacs config keys go under an `overrides` mapping, e.g. "
    "tasks.voc_det.overrides.SOLVER.MAX_ITER=200."
)


class BenchmarkError(Exception):
    """Bad input to the benchmark orchestration (profile, CLI selection, missing dataset or checkpoint).

    The message is one paragraph naming the path or key, what was expected and how to fix it; the CLI
    prints it and exits with status 2.
    """


@dataclass(frozen=True)
class PretrainRun:
    """One pretraining run (shared by every table): `pretrain.train_net` config file plus overrides."""

    key: str  # row key, e.g. "densecl_coco"
    config: str  # pretrain/configs/*.yaml
    overrides: dict[str, Any]  # yacs KEY -> value, common overrides first, run-specific ones win


@dataclass(frozen=True)
class TaskSpec:
    """How one downstream task is fine-tuned in this profile."""

    name: str  # task name from benchmarks.experiments.TASKS
    config: str  # transfer/configs/*_ssl.yaml
    overrides: dict[str, Any]  # yacs KEY -> value, common transfer overrides first
    seeds: tuple[int, ...]  # Detectron2 SEED of each trial
    rows: tuple[str, ...]  # row keys fine-tuned for this task


@dataclass(frozen=True)
class Profile:
    """A loaded, validated profile. `raw` is the merged YAML mapping after `--set` overrides."""

    name: str
    source: str  # file the profile came from
    scaled: bool  # True: numbers are not comparable to the paper's (declared so, or protocol_changes)
    description: str
    data_root_spec: str  # as written, e.g. "$DETECTRON2_DATASETS" or "datasets/synthetic-tiny"
    synthetic: str | None  # benchmarks.synthetic profile generated into the root when missing
    data_seed: int
    num_gpus: int  # GPUs per job (torchrun for pretraining, --num-gpus for transfer)
    supervised_checkpoint: str  # user-supplied torchvision ResNet .pth; "" = pretrain the row ourselves
    keep_checkpoints: bool  # False: delete resumable/intermediate checkpoints once a job is done
    output_dir: Path
    results_dir: Path
    pretrain_runs: dict[str, PretrainRun]
    tasks: dict[str, TaskSpec]
    ablation_values: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # ablation table -> values
    slurm: dict[str, Any] = field(default_factory=dict)
    # duration key -> s and probe_s, measured training in fp32; "bfloat16" -> the same, natively bf16
    expected_wall_s: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    protocol_changes: tuple[str, ...] = ()  # where a profile declared unscaled departs from paper.yaml

    @property
    def backbone_depth(self) -> int:
        """ResNet depth of the fine-tuned backbones: `transfer.overrides` MODEL.RESNETS.DEPTH, else the
        protocol's 50 (the `_ssl` configs are R-50)."""
        overrides = (self.raw.get("transfer") or {}).get("overrides") or {}
        return int(overrides.get("MODEL.RESNETS.DEPTH", 50))

    @property
    def data_root(self) -> Path | None:
        """The dataset root with environment variables expanded; None if a variable is unset."""
        expanded = os.path.expandvars(os.path.expanduser(self.data_root_spec))
        if not expanded or "$" in expanded:
            return None
        return Path(expanded)

    @property
    def supervised_checkpoint_path(self) -> Path | None:
        """The user's supervised checkpoint with variables expanded, None when the row is pretrained."""
        if not self.supervised_checkpoint:
            return None
        return Path(os.path.expandvars(os.path.expanduser(self.supervised_checkpoint)))


def format_value(value: Any) -> str:
    """A profile value as a yacs command-line value (literal_eval-able; lists become tuples)."""
    if isinstance(value, (list, tuple)):
        return repr(tuple(value))
    if value is None:
        return "None"
    return str(value)


def overrides_argv(overrides: dict[str, Any]) -> list[str]:
    """{KEY: value} -> ["KEY", "value", ...] for the `KEY VALUE` tail of our CLIs."""
    return [item for key, value in overrides.items() for item in (key, format_value(value))]


def resolve_profile_path(name_or_path: str) -> Path:
    """`tiny` -> benchmarks/profiles/tiny.yaml; anything with a suffix or separator is a path."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path)
    else:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise BenchmarkError(
            f"Profile {name_or_path!r} not found (looked for {path}). Expected a built-in profile name "
            f"({known}) or the path of a YAML profile file; copy one of {PROFILES_DIR}/*.yaml to start."
        )
    return path


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Reads a profile file, resolving `_BASE_` (relative to the file, or a built-in name)."""
    if path.resolve() in seen:
        raise BenchmarkError(f"Profile {path} inherits from itself through _BASE_; remove the cycle.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BenchmarkError(f"Profile {path} is not valid YAML ({exc}); fix the syntax.") from exc
    if not isinstance(data, dict):
        raise BenchmarkError(
            f"Profile {path} must be a YAML mapping at top level, got {type(data).__name__}."
        )
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    if (path.parent / str(base)).is_file():
        base_path = path.parent / str(base)
    else:
        try:
            base_path = resolve_profile_path(str(base))
        except BenchmarkError as exc:
            raise BenchmarkError(
                f"Profile {path}: _BASE_ {base!r} is neither a file beside it ({path.parent / str(base)}) "
                f"nor a built-in profile. {exc}"
            ) from exc
    merged = _read_yaml(base_path, (*seen, path.resolve()))
    merged["name"] = path.stem  # an inheriting file is its own profile (own output/ and results/ dirs)
    _deep_merge(merged, data)
    return merged


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_merge(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)


def _split_key(parts: list[str]) -> tuple[str, list[str]]:
    """First key of a dotted path; a yacs key (upper case, e.g. SOLVER.MAX_ITER) is never split."""
    if parts[0][:1].isupper():
        return ".".join(parts), []
    return parts[0], parts[1:]


def _unknown_key(path: list[str], keys: dict[str, Any]) -> str:
    """`path` (whose last part is not among `keys`): what the keys at its level are."""
    level = ".".join(path[:-1]) or "the top level"
    return (
        f"the profile has no key {'.'.join(path)!r}: {path[-1]!r} is not one of {sorted(keys)} (at {level})."
    )


def apply_overrides(raw: dict[str, Any], assignments: list[str], source: str = "--set") -> dict[str, Any]:
    """Returns a copy of `raw` with `key=value` assignments applied (see module docstring). A key may be
    new only where `PROFILE_KEYS` allows it; anything else is refused, naming the known keys."""
    result = copy.deepcopy(raw)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            raise BenchmarkError(
                f"{source} {assignment!r} is not of the form key=value, e.g. "
                "tasks.voc_det.overrides.SOLVER.MAX_ITER=200 or supervised_checkpoint=/path/r50.pth."
            )
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as exc:
            raise BenchmarkError(
                f"{source} {assignment!r}: the value {text!r} is not valid YAML "
                f"({getattr(exc, 'problem', None) or exc}). Quote it to set a "
                "string (--set 'key=\"text\"'), or fix the list or mapping, e.g. ...SOLVER.STEPS=[150,180]."
            ) from exc
        node, keys, parts, path = result, PROFILE_KEYS, key.split("."), []
        while True:
            head, rest = _split_key(parts) if keys is FREE else (parts[0], parts[1:])
            path.append(head)
            if keys is not FREE and head not in keys:
                raise BenchmarkError(f"{source} {assignment!r}: {_unknown_key(path, keys)} {UNKNOWN_KEY_FIX}")
            inner = FREE if keys is FREE else keys[head]
            if not rest:
                node[head] = value
                break
            if inner is VALUE or not isinstance(node.get(head) or {}, dict):
                raise BenchmarkError(
                    f"{source} {assignment!r}: {'.'.join(path)!r} is a value, not a mapping; set it "
                    f"as {'.'.join(path)}=VALUE."
                )
            if node.get(head) is None:
                node[head] = {}  # absent or empty (`overrides:` with nothing under it)
            node, keys, parts = node[head], inner, rest
    return result


def _check_keys(raw: dict[str, Any], keys: dict[str, Any], source: str, path: tuple[str, ...] = ()) -> None:
    """Refuses a key of the profile mapping `raw` that `keys` (PROFILE_KEYS) does not know."""
    for key, value in raw.items():
        if key not in keys:
            raise BenchmarkError(
                f"Profile {source}: {_unknown_key([*path, str(key)], keys)} {UNKNOWN_KEY_FIX}"
            )
        if isinstance(keys[key], dict) and isinstance(value, dict):
            _check_keys(value, keys[key], source, (*path, str(key)))


def _require(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise BenchmarkError(f"Profile {where} lacks the required key {key!r}; add it (see tiny.yaml).")
    return raw[key]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """A profile section: a mapping, or empty (left blank in the YAML)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BenchmarkError(f"Profile {where}: expected a mapping of keys to values, got {value!r}.")
    return value


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    """`seeds: 3` means seeds 0, 1, 2; a list names them explicitly."""
    if isinstance(value, int) and value >= 1:
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise BenchmarkError(f"{where}: seeds must be a positive int or a list of ints, got {value!r}.")


def _task_spec(name: str, spec: Any, common: dict[str, Any], where: str) -> TaskSpec:
    if not isinstance(spec, dict):
        raise BenchmarkError(
            f"{where}: expected a mapping with config, seeds, overrides, rows; got {spec!r}."
        )
    rows = list(ROWS_BY_KEY) if spec.get("rows") is None else spec["rows"]
    if not isinstance(rows, list) or not rows:
        raise BenchmarkError(
            f"{where}.rows: expected a non-empty list of row keys from {list(ROWS_BY_KEY)}, got {rows!r}; "
            "leave the key out (or blank) to fine-tune every row."
        )
    unknown = [r for r in rows if r not in ROWS_BY_KEY]
    if unknown:
        raise BenchmarkError(f"{where}: unknown rows {unknown}; expected keys from {list(ROWS_BY_KEY)}.")
    return TaskSpec(
        name,
        str(_require(spec, "config", where)),
        {**common, **(spec.get("overrides") or {})},
        _seeds(spec.get("seeds", 1), where),
        tuple(rows),
    )


def _ablation_values(ablation: Ablation, spec: Any, where: str) -> tuple[Any, ...]:
    """The profile's values of one ablation (the paper's when not given), type- and range-checked."""
    values = (spec or {}).get("values", list(ablation.paper_values))
    if not isinstance(values, list) or not values:
        raise BenchmarkError(
            f"{where}.values: expected a non-empty list, e.g. {list(ablation.paper_values)}."
        )
    for value in values:
        if ablation.choices:
            ok = value in ablation.choices
        else:
            low, high = ablation.bounds or (-math.inf, math.inf)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
        if not ok:
            allowed = ablation.choices or f"numbers in {list(ablation.bounds or ())}"
            raise BenchmarkError(
                f"{where}.values: {value!r} is not a valid {ablation.parameter}; expected {allowed}."
            )
    if len(set(values)) != len(values):
        raise BenchmarkError(f"{where}.values {values} repeats a value; list each value once.")
    return tuple(values)


def _expected_wall_s(spec: Any, where: str) -> dict[str, Any]:
    """`expected_wall_s`: seconds per job duration key measured on one machine that trains in fp32, with
    its speed probe; optionally `bfloat16:`, the same measured on a machine with native bfloat16 (whose
    jobs train under autocast, so their time relative to the probe differs)."""
    if not spec:
        return {}
    if not isinstance(spec, dict):
        raise BenchmarkError(f"{where}: expected a mapping of seconds per job kind, got {spec!r}.")
    values = _calibration({k: v for k, v in spec.items() if k != "bfloat16"}, where)
    if "bfloat16" in spec:
        values["bfloat16"] = _calibration(spec["bfloat16"], f"{where}.bfloat16")
    return values


def _calibration(spec: Any, where: str) -> dict[str, float]:
    """One machine's `probe_s` and seconds per job kind."""
    known = set(_CALIBRATION_KEYS)
    if not isinstance(spec, dict) or "probe_s" not in spec or set(spec) - known:
        raise BenchmarkError(
            f"{where}: expected a mapping with probe_s (`python -m benchmarks.speed_probe` on the machine "
            f"that measured the jobs) and seconds per job kind from {sorted(known - {'probe_s'})}; "
            f"got {spec!r}."
        )
    values = {}
    for key, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise BenchmarkError(f"{where}.{key}: {value!r} is not a positive number of seconds.")
        values[key] = float(value)
    return values


def build_profile(raw: dict[str, Any], source: str) -> Profile:
    """Validates a merged profile mapping and turns it into a `Profile`."""
    name = str(raw.get("name") or Path(source).stem)
    data = _mapping(_require(raw, "data", source), f"{source} data")
    pretrain = _mapping(_require(raw, "pretrain", source), f"{source} pretrain")
    common_pre = dict(_mapping(pretrain.get("overrides"), f"{source} pretrain.overrides"))
    runs = {}
    for key, spec in _mapping(pretrain.get("runs"), f"{source} pretrain.runs").items():
        if key not in ROWS_BY_KEY or not ROWS_BY_KEY[key].needs_weights:
            raise BenchmarkError(
                f"Profile {source}: pretrain run {key!r} is not a pretrained row; expected one of "
                f"{sorted(k for k, r in ROWS_BY_KEY.items() if r.needs_weights)}."
            )
        where = f"{source} pretrain.runs.{key}"
        spec = _mapping(spec, where)
        runs[key] = PretrainRun(
            key,
            str(_require(spec, "config", where)),
            {**common_pre, **_mapping(spec.get("overrides"), f"{where}.overrides")},
        )
    transfer = _mapping(raw.get("transfer"), f"{source} transfer")
    common_tr = dict(_mapping(transfer.get("overrides"), f"{source} transfer.overrides"))
    tasks = {}
    for task_name, spec in _mapping(_require(raw, "tasks", source), f"{source} tasks").items():
        where = f"{source} tasks.{task_name}"
        if task_name not in TASKS or TASKS[task_name].entry != "transfer":
            raise BenchmarkError(
                f"{where}: unknown fine-tuning task; expected one of "
                f"{sorted(t for t, task in TASKS.items() if task.entry == 'transfer')} (linear_cls is "
                "configured under the top-level key linear_eval)."
            )
        tasks[task_name] = _task_spec(task_name, spec, common_tr, where)
    if raw.get("linear_eval"):
        tasks["linear_cls"] = _task_spec("linear_cls", raw["linear_eval"], {}, f"{source} linear_eval")
    ablations = raw.get("ablations") or {}
    unknown_ablations = sorted(set(ablations) - set(ABLATIONS_BY_NAME))
    if unknown_ablations:
        raise BenchmarkError(
            f"Profile {source} ablations: unknown {unknown_ablations}; expected keys from "
            f"{sorted(ABLATIONS_BY_NAME)}."
        )
    ablation_values = {
        name: _ablation_values(ablation, ablations.get(name), f"{source} ablations.{name}")
        for name, ablation in ABLATIONS_BY_NAME.items()
    }
    expected_wall_s = _expected_wall_s(raw.get("expected_wall_s"), f"Profile {source} expected_wall_s")
    _check_keys(raw, PROFILE_KEYS, source)  # after the checks above, whose messages say more
    declared_scaled = bool(raw.get("scaled", True))
    changes = () if declared_scaled else tuple(protocol_changes(raw, _read_yaml(PROFILES_DIR / "paper.yaml")))
    return Profile(
        name=name,
        source=source,
        scaled=declared_scaled or bool(changes),
        description=str(raw.get("description", "")).strip(),
        data_root_spec=str(_require(data, "root", f"{source} data")),
        synthetic=data.get("synthetic"),
        data_seed=int(data.get("seed", 0)),
        num_gpus=int(raw.get("num_gpus", 1)),
        supervised_checkpoint=str(raw.get("supervised_checkpoint") or ""),
        keep_checkpoints=bool(raw.get("keep_checkpoints", True)),
        output_dir=Path(str(raw.get("output_dir") or "output/{name}").replace("{name}", name)),
        results_dir=Path(str(raw.get("results_dir") or "results/{name}").replace("{name}", name)),
        pretrain_runs=runs,
        tasks=tasks,
        ablation_values=ablation_values,
        slurm=dict(raw.get("slurm") or {}),
        expected_wall_s=expected_wall_s,
        raw=raw,
        protocol_changes=changes,
    )


def load_profile(name_or_path: str, assignments: list[str] | None = None) -> Profile:
    """Loads a profile by name or path, applies `--set` assignments and validates it."""
    path = resolve_profile_path(name_or_path)
    raw = apply_overrides(_read_yaml(path), assignments or [])
    return build_profile(raw, str(path))
