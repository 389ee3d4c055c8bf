"""Search spaces of `python -m sweeps tune` (docs/fair_comparisons.md, "Tuning"): a TOML file of
the main_cityscapes.py flags to tune and their ranges, read and checked here without torch.

A file holds up to three kinds of tables; a study tunes the union of those that apply to its
runs' --method and --weighting:

    [all]                              # every method and weighting
    lr = { type = "log", low = 1e-5, high = 1e-2 }
    [method.adam_with_adatask]         # only runs of this --method
    [weighting.cagrad]                 # only runs of this --weighting
    cagrad-c = { type = "linear", low = 0.1, high = 0.9 }

A key is a flag without its leading "--". Types: "log" (low > 0, sampled on a log scale),
"linear" (uniform), both integer when low and high are TOML integers and real when they are
floats; "choice" with `choices = [...]`, values of one TOML type. A flag in two applicable
tables is refused, as a flag that is both tuned and fixed after -- is (sweeps/tune.py).
"""
import tomllib
from dataclasses import dataclass
from pathlib import Path

KINDS = ("all", "method", "weighting")
TYPES = ("log", "linear", "choice")


class SearchSpaceError(ValueError):
    """A search-space file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Range:
    """One tuned flag: `type` one of TYPES; low and high (int or float) for log and linear, the
    values for choice."""
    flag: str  # without "--"
    type: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()

    def distribution(self):
        """The Optuna distribution (optuna imported here only: --help and --status stay light)."""
        import optuna.distributions as d

        if self.type == "choice":
            return d.CategoricalDistribution(list(self.choices))
        kind = d.IntDistribution if isinstance(self.low, int) else d.FloatDistribution
        return kind(self.low, self.high, log=self.type == "log")


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    tables: dict  # {"all": {flag: Range}, "method": {name: {flag: Range}}, "weighting": {name: {...}}}

    def for_run(self, method, weighting):
        """{flag: Range} tuned for runs of --method `method` and --weighting `weighting`."""
        applicable = [("[all]", self.tables["all"]),
                      (f"[method.{method}]", self.tables["method"].get(method, {})),
                      (f"[weighting.{weighting}]", self.tables["weighting"].get(weighting, {}))]
        tuned, where = {}, {}
        for table, ranges in applicable:
            for flag, spec in ranges.items():
                if flag in tuned:
                    raise SearchSpaceError(f"{self.path}: {flag} is tuned in both {where[flag]} and {table}, which "
                                           f"both apply to --method {method} --weighting {weighting}; give it once")
                tuned[flag], where[flag] = spec, table
        if not tuned:
            raise SearchSpaceError(f"{self.path}: no flag to tune for --method {method} --weighting {weighting}; "
                                   f"expected keys in [all], [method.{method}] or [weighting.{weighting}]")
        return tuned


def _fail(path, key, expected, got):
    raise SearchSpaceError(f"{path}: {key}: expected {expected}, got {got!r}")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range(path, key, flag, spec):
    if not isinstance(spec, dict):
        _fail(path, key, '{ type = "log" | "linear" | "choice", ... }', spec)
    kind = spec.get("type")
    if kind not in TYPES:
        _fail(path, f"{key}.type", " or ".join(f'"{t}"' for t in TYPES), kind)
    allowed = {"type", "choices"} if kind == "choice" else {"type", "low", "high"}
    for extra in sorted(set(spec) - allowed):
        _fail(path, f"{key}.{extra}", f"only the keys {', '.join(sorted(allowed))} for type {kind!r}", spec[extra])
    if kind == "choice":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or len({type(c) for c in choices}) > 1 \
                or not all(isinstance(c, (str, int, float, bool)) for c in choices):
            _fail(path, f"{key}.choices", "a non-empty list of values of one type (strings, integers, reals or "
                                          "booleans)", choices)
        if len(set(choices)) < len(choices):
            _fail(path, f"{key}.choices", "each value once", choices)
        return Range(flag, kind, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    for name, value in (("low", low), ("high", high)):
        if not _is_number(value):
            _fail(path, f"{key}.{name}", "a number", value)
    if type(low) is not type(high):
        _fail(path, f"{key}.low/high", "two integers (an integer flag) or two reals, e.g. 1.0 not 1",
              (low, high))
    if not low < high:
        _fail(path, f"{key}.low/high", "low < high", (low, high))
    if kind == "log" and low <= 0:
        _fail(path, f"{key}.low", 'a positive number for type "log"', low)
    return Range(flag, kind, low, high)


def _ranges(path, where, table):
    if not isinstance(table, dict):
        _fail(path, where, "a table of flags", table)
    ranges = {}
    for flag, spec in table.items():
        if flag.startswith("-"):
            _fail(path, f"{where}.{flag}", "a flag without its leading -- (e.g. lr, cagrad-c)", flag)
        ranges[flag] = _range(path, f"{where}.{flag}", flag, spec)
    return ranges


def load_space(path):
    """The SearchSpace of the TOML file at `path`; SearchSpaceError naming the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise SearchSpaceError(f"{path}: cannot be read ({e.strerror}); expected a search-space TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise SearchSpaceError(f"{path}: not TOML ({e})") from None
    for key in data:
        if key not in KINDS:
            _fail(path, key, f"only the tables {', '.join(f'[{k}]' for k in KINDS)}", data[key])
    tables = {"all": _ranges(path, "all", data.get("all", {}))}
    for kind in ("method", "weighting"):
        named = data.get(kind, {})
        if not isinstance(named, dict):
            _fail(path, kind, f"tables [{kind}.NAME]", named)
        tables[kind] = {name: _ranges(path, f"{kind}.{name}", table) for name, table in named.items()}
    return SearchSpace(path, tables)
