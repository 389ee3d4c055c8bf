"""--weighting's per-method options as command-line flags, generated from the registry.

Each method class declares OPTIONS = {option: Option(type, default, help, choices)}; option
`x` of method `m` becomes the flag --m-x (HydaLearn's main task is --main-task, a task name). The
chosen method is built from the parsed flags, and config.json records its options.
"""
from . import WEIGHTINGS

MAIN_TASK_FLAG = ("hydalearn", "main_task")
METAVARS = {int: "N", float: "X"}  # str options list their choices


def flag_dest(method, option):
    return "main_task" if (method, option) == MAIN_TASK_FLAG else f"{method}_{option}"


def add_weighting_flags(group, task_names, default_main_task):
    """The --<method>-<option> flags, into `group` (a parser or an argument group); a task option
    (HydaLearn's main task) takes one of `task_names`. A flag named after its method needs no
    "method:" prefix in its help; numbers show as N or X."""
    for method, cls in WEIGHTINGS.items():
        for option, spec in cls.OPTIONS.items():
            dest = flag_dest(method, option)
            flag = "--" + dest.replace("_", "-")
            if (method, option) == MAIN_TASK_FLAG:
                group.add_argument(flag, dest=dest, default=default_main_task, choices=list(task_names),
                                   help=f"{method}: the main task")
            elif spec.type is bool:
                group.add_argument(flag, dest=dest, default=spec.default, type=_boolean, metavar="{true,false}",
                                   help=spec.help)
            else:
                group.add_argument(flag, dest=dest, default=spec.default, type=spec.type, choices=spec.choices,
                                   metavar=METAVARS.get(spec.type), help=spec.help)


def _boolean(text):
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def build_weighting_from_args(args, tasks):
    cls = WEIGHTINGS[args.weighting]
    options = {}
    for option in cls.OPTIONS:
        value = getattr(args, flag_dest(args.weighting, option))
        if (args.weighting, option) == MAIN_TASK_FLAG:
            if value not in tasks:
                raise ValueError(f"--main-task {value}: not among the trained --tasks {' '.join(tasks)}")
            value = list(tasks).index(value)
        options[option] = value
    return cls(len(tasks), head_grads=args.head_grads, **options)
