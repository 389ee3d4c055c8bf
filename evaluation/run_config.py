"""config.json's schema: what a run records, which settings change its results, and how a
file written by an older version reads.

A run's flags split three ways (docs/design.md, "Run folder"):
- environment (device, loader workers, in-memory loading, threads, host, visible GPUs): facts
  about where it ran, recorded under "environment", never compared;
- bookkeeping (epochs, name, out, resume, what diagnostics are logged): may change on resume;
- everything else changes results. A resume must agree with all of it, and runs averaged
  into one table row must agree with all of it except the keys that name the row or the
  data (ROW_KEYS), plus the epochs they ran and the data's identity.

A key missing from an older file means the behaviour of the version that wrote it
(ADDED_SETTINGS), in resume, grouping and aggregation alike.
"""
import json
import math
from pathlib import Path

SCHEMA_VERSION = 5  # 3: --diagnostics; 4: --head-grads, 13 more --weighting methods, new method options; 5: --dtype
ENVIRONMENT_FLAGS = ("device", "num_workers", "in_memory", "threads")
BOOKKEEPING = ("epochs", "name", "out", "resume", "diagnostics_every", "diagnostics")
FREE_ON_RESUME = frozenset(ENVIRONMENT_FLAGS + BOOKKEEPING) - {"name", "out"}
# The keys that distinguish the runs of a sweep from each other, or say where the data lives
# (its identity is compared instead).
ROW_KEYS = frozenset({"seed", "data_path", "dataset", "baseline", "method", "weighting", "tasks"})
# Version 4's methods, whose options an older run (of another method) never used.
METHODS_ADDED_IN_4 = ("imtl_l", "stch", "gls", "gradnorm", "graddrop", "gradvac", "db_mtl", "fairgrad", "moco",
                      "sdmgrad", "excess_mtl", "config", "dualproj")
# setting → (schema version that added it, the value that reproduces the behaviour before it)
ADDED_SETTINGS: dict[str, tuple[int, object]] = {
    "diagnostics": (3, False),
    # version 3 gave every head its own gradient, MGDA by Frank-Wolfe, DWA per epoch, our
    # scale conventions, and Aligned-MTL torchjd's float64 rank cut-off
    "head_grads": (4, "own"), "dwa_mode": (4, "epoch"), "dwa_window": (4, 25), "mgda_solver": (4, "frank_wolfe"),
    "mgda_convention": (4, "ours"), "cagrad_convention": (4, "ours"), "aligned_mtl_convention": (4, "ours"),
    "aligned_mtl_rank_eps": (4, 2.220446049250313e-16),
    "dtype": (5, "float32"),
}


def _new_method_defaults():
    """The options of the methods added in version 4 at their defaults (the registry imports
    torch: only paid when an older file is read)."""
    from optim.weighting import WEIGHTINGS
    from optim.weighting.cli import flag_dest
    return {flag_dest(m, o): spec.default for m in METHODS_ADDED_IN_4 for o, spec in WEIGHTINGS[m].OPTIONS.items()}
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


def settings(config):
    """The run's settings, with the value that reproduces the older behaviour for every
    setting added after the version that wrote the file."""
    version = config.get("schema_version", 1)
    filled = dict(config["settings"])
    for key, (added_in, before) in ADDED_SETTINGS.items():
        if version < added_in:
            filled.setdefault(key, before)
    if version < 4:
        for key, default in _new_method_defaults().items():
            filled.setdefault(key, default)
    return filled


def result_settings(all_settings):
    """The settings that change a run's results: what a resume must agree with."""
    return {k: v for k, v in all_settings.items() if k not in FREE_ON_RESUME | {"name", "out"}}


def setup_of(config):
    """What must be equal between runs averaged or compared in one table: every result
    setting except the row's own keys, the epochs run, and the data (by identity, shape
    and size)."""
    s = settings(config)
    setup = {k: v for k, v in result_settings(s).items() if k not in ROW_KEYS}
    data = config["data"]
    setup.update(epochs=s.get("epochs"), data_identity=data.get("identity"), data_name=data["name"],
                 synthetic=data["synthetic"], image_size=list(data["image_size"]),
                 train_samples=data.get("train_samples"), val_samples=data.get("val_samples"))
    return setup


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


def check_settings(config, parser, path):
    """Every flag's setting is present (environment flags may not be; older files: filled in
    by settings()) and has the type and choices the command line would give it; ConfigError
    naming the key otherwise."""
    filled = settings(config)
    for action in parser._actions:
        key = action.dest
        if key == "help" or key in ENVIRONMENT_FLAGS and key not in filled:
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
