"""config.json's schema: what a run records, which settings change its results, and how a
file written by an older version reads.

A run's flags split three ways (docs/design.md, "Run folder"):
- environment (device, loader workers, in-memory loading, threads, host, visible GPUs): facts
  about where it ran, recorded under "environment", never compared;
- bookkeeping (epochs, name, out, resume, what diagnostics are logged, the recipe that planned
  it, the validation objective that picks summary.json's best epoch): may change on resume;
- everything else changes results. A resume must agree with all of it, and runs averaged
  into one table row must agree with all of it except the keys that name the row or the
  data (ROW_KEYS), plus the epochs they ran and the data's identity.

A key missing from a file means the behaviour from before that setting existed: its legacy
value, which each flag and each method option declares beside its own definition
(docs/design.md, "Settings and their legacy values"). This module knows no flag and no method:
the readers hand it those declarations as a SettingDefinitions.
"""
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# 3: --diagnostics; 4: --head-grads, 13 more --weighting methods, new method options; 5: --dtype;
# 6: only the chosen --weighting's options are recorded. Adding a flag, a method or an option
# changes nothing here: missing keys read as their legacy values.
SCHEMA_VERSION = 6
ENVIRONMENT_FLAGS = ("device", "num_workers", "in_memory", "threads")
BOOKKEEPING = ("epochs", "name", "out", "resume", "diagnostics_every", "diagnostics", "recipe", "select_by")
FREE_ON_RESUME = frozenset(ENVIRONMENT_FLAGS + BOOKKEEPING) - {"name", "out"}
# The keys that distinguish the runs of a sweep from each other, or say where the data lives
# (its identity is compared instead).
ROW_KEYS = frozenset({"seed", "data_path", "dataset", "baseline", "method", "weighting", "tasks"})
HEAD_GRADS = "head_grads"  # a gradient method's setting whose default is the method's own
# The validation split's settings, the held-out indices' hash among them (data/validation_split.py):
# recorded and compared only when a run holds a split out, so that a run without one writes the
# config.json, and has the setup, of the versions before the split existed.
VAL_FRACTION = "val_fraction"
SPLIT_SETTINGS = frozenset({VAL_FRACTION, "val_seed", "select_by", "val_split_sha256"})


@dataclass(frozen=True)
class SettingDefinitions:
    """Today's flags and method options, as far as reading a config.json needs them.

    legacy: {setting: value before it existed} for flags added after the first version.
    method_settings: {--weighting name: {setting: legacy value, or REQUIRED}}: the method's
        own options under their config.json keys.
    method_defaults: {--weighting name: {setting: default}}, `head_grads` included: what a
        run of the method does unless told otherwise (row labels show only departures).
    """

    legacy: Mapping[str, object]
    method_settings: Mapping[str, Mapping[str, object]]
    method_defaults: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def foreign(self, weighting):
        """The keys of every other method's options: older files recorded them all."""
        own = self.method_settings.get(weighting, {})
        return {key for settings in self.method_settings.values() for key in settings if key not in own}

    def identity_keys(self, weighting):
        """The settings that belong to the method (its options and head_grads): compared
        between runs of that method, not across the rows of a table."""
        return set(self.method_settings.get(weighting, {})) | {HEAD_GRADS}


REQUIRED = object()  # no legacy value: every file that can hold the setting records it


MAX_SETTINGS_LISTED, MAX_RUNS_LISTED = 10, 4  # bounds of a setup-mismatch message
ABSENT = "(absent)"  # a setting a setup does not record


class ConfigError(ValueError):
    """A config.json that cannot be used; the message names the file and the key."""


def read_config(path):
    """config.json as a checked dict; ConfigError naming the file when it is unreadable or malformed."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); expected the config.json main_cityscapes.py writes") from None
    check_structure(config, path)
    return config


def _expect(condition, path, key, what):
    if not condition:
        raise ConfigError(f"{path}: {key} {what}")


def check_structure(config, path):
    """The parts every reader relies on: settings, data, tasks and their types."""
    _expect(isinstance(config, dict), path, "the file", "must hold a JSON object, e.g. {\"settings\": {...}, ...}")
    version = config.get("schema_version", 1)
    _expect(isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= SCHEMA_VERSION,
            path, "schema_version", f"is {version!r}; this version reads 1..{SCHEMA_VERSION}")
    for key in ("settings", "data"):
        _expect(key in config, path, f'"{key}"', "is missing")
        _expect(isinstance(config[key], dict), path, f'"{key}"', f"must be an object, not {type(config[key]).__name__}")
    tasks = config.get("tasks")
    _expect(isinstance(tasks, list) and tasks and all(isinstance(t, str) for t in tasks), path, '"tasks"',
            f"must be a non-empty list of task names, not {tasks!r}")
    data = config["data"]
    for key, kind in (("root", str), ("name", str), ("synthetic", bool), ("image_size", list)):
        _expect(isinstance(data.get(key), kind), path, f'"data.{key}"', f"must be a {kind.__name__}, not {data.get(key)!r}")
    for key in ("method", "weighting", "seed"):
        _expect(key in config["settings"], path, f'"settings.{key}"', "is missing")


def settings(config, definitions):
    """The run's settings as today's code names them: another method's options, which files
    before version 6 recorded, dropped, and every setting the file lacks at its legacy value
    (`definitions`: SettingDefinitions). A setting without one stays missing: check_settings
    names it."""
    recorded = config["settings"]
    weighting = recorded.get("weighting")
    filled = {k: v for k, v in recorded.items() if k not in definitions.foreign(weighting)}
    legacy = {**definitions.legacy, **definitions.method_settings.get(weighting, {})}
    for key, value in legacy.items():
        if value is not REQUIRED:
            filled.setdefault(key, value)
    return filled


def without_unused_split(all_settings):
    """`all_settings` without the validation split's settings when it holds no split out."""
    if all_settings.get(VAL_FRACTION):
        return all_settings
    return {k: v for k, v in all_settings.items() if k not in SPLIT_SETTINGS}


def result_settings(all_settings):
    """The settings that change a run's results: what a resume must agree with."""
    return {k: v for k, v in all_settings.items() if k not in FREE_ON_RESUME | {"name", "out"}}


def setup_of(config, definitions):
    """What must be equal between runs averaged or compared in one table: every result
    setting except the row's own keys and the method's own settings (method_identity), the
    epochs run, and the data (by identity, shape and size)."""
    s = settings(config, definitions)
    own = ROW_KEYS | definitions.identity_keys(s["weighting"])
    setup = {k: v for k, v in result_settings(without_unused_split(s)).items() if k not in own}
    data = config["data"]
    setup.update(epochs=s.get("epochs"), data_identity=data.get("identity"), data_name=data["name"],
                 synthetic=data["synthetic"], image_size=list(data["image_size"]),
                 train_samples=data.get("train_samples"), val_samples=data.get("val_samples"))
    return setup


def method_identity(config, definitions):
    """The method's own settings ({key: value}, head_grads included): runs of one method are
    averaged only when these agree, and runs of different methods never compare them."""
    s = settings(config, definitions)
    return {key: s.get(key, ABSENT) for key in sorted(definitions.identity_keys(s["weighting"]))}


def departures(config, definitions):
    """The method's own settings that depart from its defaults, in key order: what a row label
    shows ("pcgrad (head_grads=weighted)")."""
    weighting = config["settings"]["weighting"]
    defaults = definitions.method_defaults.get(weighting, {})
    return {key: value for key, value in method_identity(config, definitions).items()
            if key not in defaults or defaults[key] != value}


def setting_text(value):
    """A setting's value as messages and tables show it: a string bare, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def run_labels(runs):
    """The runs' folder names, or their paths where two folders share a name."""
    names = [r.path.name for r in runs]
    return names if len(set(names)) == len(names) else [str(r.path) for r in runs]


def setup_differences(setups):
    """{setting: {value text: [labels]}} for every setting whose value differs between the
    setups ({label: setup}), in the order of the settings' names."""
    differences = {}
    for key in sorted(set().union(*setups.values())):
        by_value = {}
        for label, setup in setups.items():
            by_value.setdefault(setting_text(setup[key]) if key in setup else ABSENT, []).append(label)
        if len(by_value) > 1:
            differences[key] = by_value
    return differences


def describe_differences(differences):
    """One line per differing setting, "lr: 0.0001 (adam-ew-s0) vs 0.003 (adam-ew-s1)",
    at most MAX_SETTINGS_LISTED lines of at most MAX_RUNS_LISTED labels per value."""
    def labels(names):
        more = len(names) - MAX_RUNS_LISTED
        return ", ".join(names[:MAX_RUNS_LISTED]) + (f" and {more} more" if more > 0 else "")

    lines = [f"  {key}: " + " vs ".join(f"{value} ({labels(names)})" for value, names in by_value.items())
             for key, by_value in list(differences.items())[:MAX_SETTINGS_LISTED]]
    more = len(differences) - MAX_SETTINGS_LISTED
    return "\n".join(lines + ([f"  and {more} more settings"] if more > 0 else []))


def shared_setup(runs, ignore=()):
    """(the first run's setup without the settings in `ignore`, the differences between the
    runs' setups without them): the setup is the runs' common one when there are none."""
    setups = {label: {k: v for k, v in run.setup.items() if k not in ignore}
              for label, run in zip(run_labels(runs), runs)}
    return next(iter(setups.values())), setup_differences(setups)


def check_settings(config, parser, path, definitions):
    """Every flag's setting is present (environment flags may not be, nor other methods'
    options; legacy values filled in by settings()) and has the type and choices the command
    line would give it; ConfigError naming the key otherwise."""
    filled = settings(config, definitions)
    foreign = definitions.foreign(filled["weighting"])
    for action in parser._actions:
        key = action.dest
        if key == "help" or key in foreign or key in ENVIRONMENT_FLAGS and key not in filled:
            continue
        _expect(key in filled, path, f'"settings.{key}"', "is missing")
        value = filled[key]
        if value is None and action.default is None:
            continue
        many = action.nargs in ("+", "*")
        _expect(not many or isinstance(value, list), path, f'"settings.{key}"', f"must be a list, not {value!r}")
        for item in value if many else [value]:
            _expect(_has_type(item, _kind(action)), path, f'"settings.{key}"', f"is {item!r}; {_WANTED[_kind(action)]}")
            if action.choices is not None:
                _expect(item in action.choices, path, f'"settings.{key}"',
                        f"is {item!r}; expected one of {', '.join(map(str, action.choices))}")
    return filled


def _kind(action):
    if action.type in (int, float):
        return action.type
    return bool if isinstance(action.default, bool) else str


def _has_type(value, kind):
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


_WANTED = {float: "expected a finite number", int: "expected an integer", bool: "expected true or false",
           str: "expected a string"}
