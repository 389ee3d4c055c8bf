"""main_cityscapes.py's flags: the parser, the checks of their values, and the settings of a
run that --resume continues (docs/design.md, "Run folder")."""
import argparse
import functools
import math
import os
import re
import sys
import textwrap
from pathlib import Path

from data import source as data_source
from data import synthcity, validation_split
from data.augment import DEPTH_RULES, RESAMPLINGS
from data.layout import CLASS_COUNTS, SIZE_MULTIPLE
from evaluation import run_config, run_record, selection
from models import MODELS
from optim import OPTIMIZERS
from optim.weighting import WEIGHTINGS
from optim.weighting.base import HEAD_GRADS, RECORDED_SINCE_ADDED
from optim.weighting.cli import add_weighting_flags, flag_dest
from tasks import DEFAULT_TASKS, TASKS, canonical

AT_LEAST_ONE = ("epochs", "batch_size", "lr_step", "synthcity_train", "synthcity_val", "diagnostics_every")
POSITIVE = ("lr", "lr_gamma", "width_mult", "clip_grad_norm")
SEED_RANGE = 2 ** 32  # numpy's
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=,@-]{0,199}")  # one path component, printable in any shell

class HelpFormatter(argparse.HelpFormatter):
    """Each default shown once: appended to the help unless the help states it already, and
    not for None (the help says what happens then) nor for switches, which are off unless given."""

    def _get_help_string(self, action):
        text = action.help or ""
        switch_off = action.nargs == 0 and action.default is False
        if action.default is None or action.default == argparse.SUPPRESS or switch_off or "(default" in text:
            return text
        return f"{text} (default: %(default)s)"

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)  # flags in a help stay whole


def legacy(action, value):
    """Marks a flag added after config.json's first version: `value` reproduces the behaviour
    from before it, and a config.json without the flag reads as it (docs/design.md, "Settings
    and their legacy values"). A flag without a mark has been recorded by every version."""
    action.legacy = value
    return action


def build_parser():
    p = argparse.ArgumentParser(allow_abbrev=False,
        usage="%(prog)s [options]", formatter_class=HelpFormatter,
        description="Multi-task SegNet on CityScapes (segmentation, depth and instance) with AdaTask and friends. "
                    "Switches (flags without a value) are off unless given.",
    )
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=data_source.DATASETS, default=None,
                      help="default: cityscapes if dataset/cityscapes holds the release, else synthcity")
    data.add_argument("--data-path", default=None, metavar="DIR",
                      help="a dataset root in the release layout (real or SynthCity)")
    data.add_argument("--image-size", default=None, metavar="HxW",
                      help=f"SynthCity only: the size it generates, multiples of {SIZE_MULTIPLE} (default 128x256)")
    data.add_argument("--synthcity-train", type=int, default=synthcity.DEFAULT_N_TRAIN, metavar="N",
                      help="SynthCity only: generated training samples")
    data.add_argument("--synthcity-val", type=int, default=synthcity.DEFAULT_N_VAL, metavar="N",
                      help="SynthCity only: generated validation samples")
    legacy(data.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                             help="hold out this fraction of train/ as the validation split (metrics key val; the "
                                  "release's val/ folder stays the test split): per-epoch val metrics and summary.json's "
                                  "best_val_epoch; 0: no validation split, the published protocol"), 0.0)
    legacy(data.add_argument("--val-seed", type=int, default=validation_split.DEFAULT_SEED, metavar="N",
                             help="seed of the held-out samples; not --seed, so every method and seed holds out "
                                  "the same ones"), validation_split.DEFAULT_SEED)
    data.add_argument("--classes", type=int, default=7, choices=CLASS_COUNTS, help="segmentation classes")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                      help="random scale-crop and flip of the reference protocol")
    data.add_argument("--depth-rule", default="divide", choices=DEPTH_RULES,
                      help="depth under zoom: divide by the scale (reference code) or multiply (inverse depth)")
    legacy(data.add_argument("--image-resampling", default="align_corners", choices=RESAMPLINGS,
                             help="how the augmentation resizes the image's window back: bilinear with "
                                  "align_corners=True (the reference code's torch interpolate) or opencv "
                                  "(cv2.resize, half-pixel centres; runs before this flag)"), "opencv")

    model = p.add_argument_group("model")
    model.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=list(TASKS),
                       help=f"tasks to train (default: {' '.join(DEFAULT_TASKS)}); one task: a single-task baseline "
                            f"(the same network minus the other branches); instance needs instance/ targets "
                            f"(SynthCity or a release built from raw CityScapes)")
    model.add_argument("--arch", default="mtan", choices=list(MODELS), help="network")
    model.add_argument("--width-mult", type=float, default=1.0, metavar="X", help="channel multiplier")

    optimisation = p.add_argument_group("optimisation")
    optimisation.add_argument("--method", default="adam_with_adatask", choices=list(OPTIMIZERS), help="optimizer")
    optimisation.add_argument("--epochs", type=int, default=200, metavar="N", help="training epochs")
    optimisation.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per step")
    optimisation.add_argument("--lr", type=float, default=1e-4, metavar="X", help="learning rate")
    optimisation.add_argument("--lr-step", type=int, default=100, metavar="N",
                              help="StepLR: epochs between learning-rate decays")
    optimisation.add_argument("--lr-gamma", type=float, default=0.5, metavar="X",
                              help="StepLR: factor applied every --lr-step epochs")
    optimisation.add_argument("--seed", type=int, default=42, metavar="N",
                              help="seed of the initialisation, the augmentation and the data order")
    optimisation.add_argument("--clip-grad-norm", type=float, default=None, metavar="X",
                              help="clip the total norm of the final update gradient to X (every method alike)")

    methods = p.add_argument_group("methods", "--<method>-<option> flags apply only to that --weighting method")
    methods.add_argument("--weighting", default="ew", choices=list(WEIGHTINGS), help="multi-task gradient method")
    legacy(methods.add_argument("--head-grads", default=None, choices=HEAD_GRADS,
                         help="gradient methods: each task head gets its own ∇L_k (own) or α_k ∇L_k with the "
                              "method's weights α (weighted); default: what the published code does, weighted for "
                              f"{', '.join(n for n, c in WEIGHTINGS.items() if c.default_head_grads == 'weighted')}, "
                              "own for the others"), "own")  # before it: every head its own ∇L_k
    add_weighting_flags(methods, TASKS, DEFAULT_TASKS[0])

    run_folder = p.add_argument_group("run folder and logging")
    run_folder.add_argument("--out", default="runs", metavar="DIR", help="parent folder of run folders")
    run_folder.add_argument("--name", default=None,
                            help="run folder name (default <method>-<weighting>-s<seed>-<timestamp>)")
    run_folder.add_argument("--resume", default=None, metavar="RUN_DIR",
                            help="continue an interrupted run from its last good checkpoint")
    run_folder.add_argument("--baseline", default=None, metavar="FILE",
                            help="JSON of single-task miou, pix_acc, abs_err, rel_err for Δm (default: the "
                                 "published 7-class row, for the real 7-class 128x256 release only)")
    legacy(run_folder.add_argument("--recipe", default=None, metavar="NAME@VERSION",
                                   help="bookkeeping: the recipe (recipes/NAME.toml) that planned this run; set by "
                                        "python -m sweeps reproduce; recorded, never compared, so recipes sharing "
                                        "a configuration may share its runs"), None)
    legacy(run_folder.add_argument("--select-by", default=selection.AUTO, metavar="OBJECTIVE",
                                   help=f"bookkeeping: the validation objective that picks summary.json's "
                                        f"best_val_epoch with --val-fraction: {selection.CHOICES} (never test/...); "
                                        f"auto is delta_m when --baseline gives val metrics, else normalized_mean "
                                        f"(docs/fair_comparisons.md)"), selection.AUTO)
    run_folder.add_argument("--diagnostics-every", type=int, default=50, metavar="N",
                            help="log task-gradient cosine, norm ratio and method weights every N steps (runs "
                                 "that compute per-task gradients; others with --diagnostics)")
    legacy(run_folder.add_argument("--diagnostics", action="store_true", default=False,
                            help="also log the diagnostics for runs that do not compute per-task gradients (a "
                                 "plain optimizer with a loss-only weighting): the K per-task gradients are "
                                 "computed on the diagnostic steps only; the update still comes from the summed "
                                 "backward, so results do not change; costs about K extra backward passes every "
                                 "--diagnostics-every steps"), False)
    run_folder.add_argument("--track-au", action="store_true",
                            help="track per-task update dominance (AU/rAU) of every shared layer: au.csv and "
                                 "TensorBoard; under a plain optimizer it costs about what AdaTask costs")

    performance = p.add_argument_group("performance")
    performance.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    performance.add_argument("--threads", type=int, default=None, metavar="N",
                             help="torch threads (default: torch's, one per core); OMP_NUM_THREADS, when set, "
                                  "overrides it. Give 1 when several processes share the CPU")
    performance.add_argument("--num-workers", type=int, default=min(4, (os.cpu_count() or 2) // 2), metavar="N",
                             help="DataLoader worker processes (0: load in the main process)")
    performance.add_argument("--in-memory", action="store_true",
                             help="load the whole training and test sets into RAM once (small machines, fast GPUs)")
    performance.add_argument("--amp", action="store_true", help="bf16 autocast for forward and losses")
    legacy(performance.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                             help="the network's and the data's floating-point type; float64 for exactness checks "
                                  "(a torchrun run against one process: in float32 SegNet's max-pool indices let "
                                  "two runs that differ only by rounding drift apart)"), "float32")
    performance.add_argument("--channels-last", action="store_true",
                             help="channels-last memory format for model and inputs")
    performance.add_argument("--compile", action="store_true", help="torch.compile the model (slow first step)")
    return p


def explicit_flags(argv):
    """The settings given on the command line (not defaulted): what a --resume must check."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def check_values(parser, args, fail):
    """Values a run accepts, whether from the command line or from a config.json it resumes."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.type is float and value is not None and not math.isfinite(value):
            fail(f"{action.option_strings[0]} {value}: expected a finite number")
    for key in AT_LEAST_ONE:
        if getattr(args, key) < 1:
            fail(f"--{key.replace('_', '-')} {getattr(args, key)}: must be at least 1")
    for key in POSITIVE:
        value = getattr(args, key)
        if value is not None and not value > 0:
            fail(f"--{key.replace('_', '-')} {value}: must be positive")
    if args.num_workers < 0:
        fail(f"--num-workers {args.num_workers}: must be >= 0")
    if args.threads is not None and args.threads < 1:
        fail(f"--threads {args.threads}: must be at least 1")
    if not 0 <= args.seed < SEED_RANGE:
        fail(f"--seed {args.seed}: expected an integer in 0..{SEED_RANGE - 1}")
    if not 0 <= args.val_fraction < 1:
        fail(f"--val-fraction {args.val_fraction}: expected a number in [0, 1) (0: no validation split)")
    if not 0 <= args.val_seed < SEED_RANGE:
        fail(f"--val-seed {args.val_seed}: expected an integer in 0..{SEED_RANGE - 1}")
    try:
        selection.resolve(args.select_by, has_val_baseline=True, tasks=args.tasks)
    except ValueError as e:
        fail(str(e))
    if len(set(args.tasks)) != len(args.tasks):
        fail("--tasks: each task at most once")
    if args.amp and args.dtype != "float32":
        fail(f"--amp with --dtype {args.dtype}: bf16 autocast is for float32 runs")
    if not DEVICE.fullmatch(args.device):
        fail(f"--device {args.device}: expected auto, cpu, cuda or cuda:N (the devices this code trains on)")
    if args.name is not None and not (RUN_NAME.fullmatch(args.name) and args.name not in (".", "..")):
        fail(f"--name {args.name!r}: a run folder's name is one path component of letters, digits and . _ - + = , @, "
             f"starting with a letter or a digit, at most 200 characters")


def warn_ignored(args):
    """Flags that do nothing in this run. Warned about, not refused: sweeps pass one set of
    flags to every run, single-task baselines included."""
    warnings = []
    own = {flag_dest(args.weighting, option) for option in WEIGHTINGS[args.weighting].OPTIONS}
    for method, cls in WEIGHTINGS.items():
        for option in cls.OPTIONS:
            dest = flag_dest(method, option)
            if dest in args.explicit and dest not in own:
                warnings.append(f"--{dest.replace('_', '-')} applies to --weighting {method}; "
                                f"ignored with --weighting {args.weighting}")
    if not args.val_fraction and not args.resume:  # a resumed run's fraction is its config.json's
        warnings += [f"--{dest.replace('_', '-')} applies with --val-fraction above 0; ignored without a validation "
                     f"split" for dest in ("val_seed", "select_by") if dest in args.explicit]
    if len(args.tasks) == 1:
        if args.weighting != "ew":
            warnings.append(f"--weighting {args.weighting} combines several tasks; with the single task "
                            f"{args.tasks[0]} it has nothing to combine")
        if args.baseline is not None:
            warnings.append(f"--baseline {args.baseline} serves Δm, which a single-task run does not report; ignored")
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.explicit = explicit_flags(argv)
    check_values(parser, args, parser.error)
    args.tasks = list(canonical(args.tasks))  # the registry's order: outputs follow it
    if args.head_grads is None:  # recorded as what the run does, so runs group by it
        args.head_grads = WEIGHTINGS[args.weighting].default_head_grads
    warn_ignored(args)
    return args


def settings_of(args):
    """config.json's "settings": every flag except the environment's and the options of the
    methods the run does not use."""
    foreign = setting_definitions().foreign(args.weighting)
    return run_config.without_unused_split({k: v for k, v in vars(args).items()
                                            if k != "explicit" and k not in run_config.ENVIRONMENT_FLAGS
                                            and k not in foreign})


@functools.cache
def setting_definitions():
    """What reading a config.json needs to know of today's flags and method options: their
    legacy values, which method owns which option, and each method's defaults."""
    parser = build_parser()
    flag_legacy = {a.dest: a.legacy for a in parser._actions if hasattr(a, "legacy")}
    method_settings, method_defaults = {}, {}
    for name, cls in WEIGHTINGS.items():
        options = {flag_dest(name, option): spec for option, spec in cls.OPTIONS.items()}
        method_settings[name] = {key: run_config.REQUIRED if spec.legacy == RECORDED_SINCE_ADDED else spec.legacy
                                 for key, spec in options.items()}
        # The CLI's defaults: HydaLearn's main task is a task name there, its index in the class.
        method_defaults[name] = {key: parser.get_default(key) for key in options}
        method_defaults[name][run_config.HEAD_GRADS] = cls.default_head_grads
    return run_config.SettingDefinitions(flag_legacy, method_settings, method_defaults)


def resumed_args(args):
    """The settings of the run in --resume, with the flags a resume may change applied and
    the environment of this call. A flag given now that changes results is refused, naming
    the setting; so is a config.json that is malformed or holds values no run accepts."""
    run_dir = Path(args.resume)
    path = run_dir / run_record.CONFIG
    if not path.exists():
        raise run_record.RunFolderError(f"--resume {run_dir}: no {run_record.CONFIG} there; not a run folder")
    config = run_config.read_config(path)
    parser = build_parser()
    definitions = setting_definitions()
    settings = run_config.check_settings(config, parser, path, definitions)
    if (run_dir / run_record.SUMMARY).exists():
        if "epochs" not in args.explicit:
            raise run_record.RunFolderError(
                f"--resume {run_dir}: the run is finished ({run_record.SUMMARY} exists); add --epochs N with N above "
                f"its {settings['epochs']} epochs to extend it")
        if args.epochs <= settings["epochs"]:
            raise run_record.RunFolderError(
                f"--resume {run_dir} --epochs {args.epochs}: the run is finished with {settings['epochs']} epochs; "
                f"--epochs must be larger to extend it")
    # another method's options do nothing in this run (warn_ignored says so)
    for key in sorted(args.explicit - run_config.FREE_ON_RESUME - definitions.foreign(settings["weighting"])):
        if settings.get(key) != getattr(args, key):
            raise run_record.RunFolderError(
                f"--resume {run_dir}: the run was made with --{key.replace('_', '-')} {settings.get(key)}; "
                f"this call gives {getattr(args, key)}, which would change its results")
    for key in (args.explicit & run_config.FREE_ON_RESUME) | set(run_config.ENVIRONMENT_FLAGS):
        settings[key] = getattr(args, key)
    for key in definitions.foreign(settings["weighting"]):  # unused by the run: today's defaults
        settings[key] = parser.get_default(key)
    resumed = argparse.Namespace(**settings)
    resumed.resume, resumed.explicit = str(run_dir), set()

    def fail(message):
        raise run_config.ConfigError(f"{path}: {message}")

    check_values(parser, resumed, fail)
    return resumed, config


def result_settings(args):
    """The settings a checkpoint must agree with to be continued, legacy values filled in as a
    checkpoint's are when read (a run without a validation split records none of its settings)."""
    return run_config.result_settings(run_config.settings({"settings": settings_of(args)}, setting_definitions()))
