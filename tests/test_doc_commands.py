"""Every command block of README.md and docs/**/*.md runs as written, and every sample output
shown in them is what its command prints (issue 27; the rules are in docs/tests.md).

Commands. A fenced block opened with ```bash or ```sh is run, from a scratch copy of the
repository (its tracked and not-ignored files) whose `.venv` is this repository's, with
`.venv/bin` first on PATH: `python`, `python3`, `.venv/bin/python` and `scripts/*.sh` all
reach the repository's interpreter, as after `source .venv/bin/activate`. The blocks of one
page run in order in that folder, so a later block may use what an earlier one made; an
`export` line carries on to the page's later commands. A command two pages show alike runs
once. A command after a stopped one in its block still runs, but if it fails it is listed in
the test's warnings rather than failed: it may read what the stopped command had not finished. A command that installs packages or makes a venv must be exempt (here .venv is the
repository's own). Each command (a line, with its `\\`
continuations) runs on its own and must exit 0. A command still running CAP_S seconds after
it printed its first line (a full training run, the demo, the test suite) has shown that it
started: it must not have printed a traceback; it is then sent SIGINT, as Ctrl-C would, and
must exit within STOP_S seconds through the documented clean path (exit code 130,
runfolder/exit_codes.py; pytest and torchrun: see FOREIGN) without a traceback. A
command that prints nothing for SILENT_S seconds fails.

Exemptions. A block whose first line is `# not run by the tests: <reason>` is not run, where
<reason> starts with one of REASONS; each such block is one skipped test, so `pytest -rs`
lists them with their reasons. Any other first line starting `# not run by the tests` fails.

Samples. A plain ``` or ```text block right after the line `<!-- sample output of: CMD -->`
is compared with what CMD prints (stdout and stderr) in a fresh copy of the repository: line by line from
the first, where a sample line `…` stands for any number of lines and `…` inside a line for
any text; the command must end within SAMPLE_S seconds of its first line; the text must be equal and the numbers close (see `numbers_close`); a number that is
a duration (followed by s, ms, min or h, or after `~`) may be anything.
"""
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest

from runfolder.exit_codes import EXIT_INTERRUPTED
from scripts.docs_tables import pages

REPOSITORY = Path(__file__).resolve().parent.parent
EXEMPT = "# not run by the tests"
REASONS = ("needs a GPU", "needs the real CityScapes", "needs a cluster", "needs a network", "a template")
CAP_S = 3  # after the first line: past the flags, the data checks and the model into the work (CI pays it ~20 times)
STOP_S = 60
SILENT_S = 180
SAMPLE_S = 60  # a sample's command runs to its end: at most this long after its first line


class Foreign(NamedTuple):
    """A tool not of this repository, stopped by Ctrl-C: its own exit code (None: how it ends is
    its own affair, not checked), the last line of the one traceback it prints itself (None: it
    prints none), and how many seconds after a Ctrl-C another is sent if it went on (None: one
    must do)."""
    code: int | None
    traceback: re.Pattern | None = None
    again_s: float | None = None


# pytest: a test that trains in the pytest process takes a Ctrl-C as its run's stop (exit 130,
# a failed test) and pytest goes on, as at a terminal, where a second Ctrl-C stops it. How
# pytest then ends is pytest's: a Ctrl-C at some moments ends it with an internal error of its
# own (seen with pytest 9.2: a KeyError in tmp_path's teardown), not a failure of a command of
# ours; that it started and stopped is what is checked.
# torchrun: our processes under it still print no traceback of their own.
FOREIGN = {"pytest": Foreign(None, again_s=3),
           "torchrun": Foreign(1, re.compile(r"SignalException: Process \d+ got signal: 2$"))}
SAMPLE = re.compile(r"^<!-- sample output of: (?P<command>.+?) -->$")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")
NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# here .venv is the repository's own: a command that would install into it or replace it must be exempt
INSTALLS = re.compile(r"-m venv\b|\bpip3? install\b|-m pip install\b")
DURATION = re.compile(r"^\s?(?:s|ms|min|h)\b")


def fenced_blocks(page):
    """(line number of the fence, language, body lines, the line before the fence) of each
    fenced block of a Markdown page; an indented block (in a list) loses its indent."""
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, end = len(fence["indent"]), i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = [line[indent:] if line[:indent].isspace() else line for line in lines[i + 1:end]]
        found.append((i + 1, fence["lang"], body, lines[i - 1] if i else ""))
        i = end + 1
    return found


def commands(body):
    """A block's commands: its lines with `\\` continuations joined, comment-only lines dropped."""
    out, current = [], ""
    for line in body:
        current += line
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            out.append(current.strip())
        current = ""
    return out


def relative(page):
    return str(page.relative_to(REPOSITORY))


def command_blocks():
    """(page, line, commands or None, exemption reason or None) of every bash/sh block."""
    out = []
    for page in pages(REPOSITORY):
        for line, lang, body, _ in fenced_blocks(page):
            if lang not in ("bash", "sh"):
                continue
            first = body[0] if body else ""
            reason = first[len(EXEMPT):].lstrip(":").strip() if first.startswith(EXEMPT) else None
            out.append((page, line, commands(body), reason))
    return out


def samples():
    """(page, line, command, sample lines) of every marked sample output."""
    out = []
    for page in pages(REPOSITORY):
        for line, lang, body, before in fenced_blocks(page):
            marker = SAMPLE.match(before.strip())
            if marker and lang in ("", "text"):
                out.append((page, line, marker["command"], body))
    return out


BLOCKS = command_blocks()
EXEMPTIONS = [(page, line, reason) for page, line, _, reason in BLOCKS if reason is not None]


def copy_of_the_repository(root):
    """root with the repository's tracked and not-ignored files, and its .venv linked in."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPOSITORY,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPOSITORY / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / ".venv").symlink_to(REPOSITORY / ".venv")
    return root


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The copy that all command blocks share, page after page."""
    return copy_of_the_repository(tmp_path_factory.mktemp("repository"))


def environment(root):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "VIRTUAL_ENV"))}
    env.update(PATH=f"{root / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1")
    return env


def foreign_tool(command):
    """The Foreign entry of the tool a command runs, or None for one of this repository."""
    program = Path(command.split()[0]).name
    return next((FOREIGN[name] for name in FOREIGN if program == name or f"-m {name}" in command), None)


def went_on(log, offset):
    """Whether the command printed more after `offset` and none of it says it is stopping."""
    with log.open("rb") as f:
        f.seek(offset)
        since = f.read().decode(errors="replace")
    return bool(since.strip()) and "KeyboardInterrupt" not in since


def run(command, root, exports=(), cap_s=CAP_S, again_s=None):
    """Runs one documented command by the rule of the module docstring; a tool that goes on
    after the SIGINT (it printed more, and not that it is stopping) gets another again_s seconds
    after it; (exit code, output, whether it was stopped)."""
    script = "\n".join([*exports, command])
    log = root / ".doc-command.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(["bash", "-o", "pipefail", "-c", script], cwd=root, env=environment(root),
                                   stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        started, first_output, stopped = time.monotonic(), None, False
        while process.poll() is None:
            time.sleep(0.2)
            now = time.monotonic()
            if first_output is None and log.stat().st_size:
                first_output = now
            if first_output is None and now - started > SILENT_S:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                pytest.fail(f"{command!r} printed nothing in {SILENT_S} s")
            if first_output is not None and now - first_output > cap_s:
                if "Traceback (most recent call last)" in log.read_text(errors="replace"):
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    pytest.fail(f"{command!r} failed while running:\n{log.read_text(errors='replace')[-3000:]}")
                stopped = True
                deadline = time.monotonic() + STOP_S
                while process.poll() is None and time.monotonic() < deadline:
                    sent_at = log.stat().st_size  # before: the tool may answer at once
                    os.killpg(process.pid, signal.SIGINT)
                    try:
                        process.wait(min(again_s or STOP_S, max(deadline - time.monotonic(), 0)))
                    except subprocess.TimeoutExpired:
                        pass
                    # again only to a tool that went on (printed more) without starting to stop:
                    # a Ctrl-C during its own stop would break that
                    while process.poll() is None and time.monotonic() < deadline and not went_on(log, sent_at):
                        time.sleep(0.2)
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    pytest.fail(f"{command!r} did not stop within {STOP_S} s of SIGINT")
    return process.returncode, log.read_text(errors="replace"), stopped


def check_command(command, root, exports, where):
    """Runs a command by the rules; whether it was stopped."""
    foreign = foreign_tool(command)
    code, output, stopped = run(command, root, exports, again_s=foreign.again_s if foreign else None)
    tail = output[-3000:]
    if not stopped:
        assert code == 0, f"{where}: {command!r} exited {code}:\n{tail}"
        return False
    if foreign is not None and foreign.code is None:
        return True
    # a shell reports a command that died of SIGINT as 130 too
    expected = {foreign.code} if foreign else {EXIT_INTERRUPTED, -signal.SIGINT}
    assert code in {0, *expected}, f"{where}: {command!r}, stopped by SIGINT, exited {code}, not {expected}:\n{tail}"
    tracebacks = output.count("Traceback (most recent call last)")
    allowed = foreign is not None and foreign.traceback is not None and foreign.traceback.search(output.rstrip())
    assert tracebacks == 0 or (tracebacks == 1 and allowed), f"{where}: {command!r} did not stop cleanly:\n{tail}"
    return True


@pytest.fixture(scope="module")
def already_run():
    """The commands run so far: a command two pages show alike runs once."""
    return set()


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted({relative(page) for page, _, commands_, reason in BLOCKS if reason is None}))
def test_every_command_of_the_page_runs_as_written(page, scratch, already_run):
    exports, unchecked = [], []
    for block_page, line, block_commands, reason in BLOCKS:
        if relative(block_page) != page or reason is not None:
            continue
        after_a_stop = False
        for command in block_commands:
            assert not INSTALLS.search(command), \
                f"{page}:{line}: {command!r} installs packages; its block needs '{EXEMPT}: needs a network'"
            if command.startswith("export "):
                exports.append(command)
            elif (tuple(exports), command) not in already_run:
                already_run.add((tuple(exports), command))
                try:
                    after_a_stop |= check_command(command, scratch, exports, f"{page}:{line}")
                except AssertionError as failure:
                    if not after_a_stop:
                        raise
                    # it may read what the stopped command before it had not finished
                    unchecked.append(str(failure).split("\n")[0])
    if unchecked:
        warnings.warn(UserWarning("failed after a stopped command of their block, so not counted:\n"
                                  + "\n".join(unchecked)))


@pytest.mark.parametrize("page,line,reason", [(relative(p), line, reason) for p, line, reason in EXEMPTIONS],
                         ids=[f"{relative(p)}:{line}" for p, line, _ in EXEMPTIONS])
def test_an_exempt_block_says_why_in_the_allowed_words(page, line, reason):
    assert reason.startswith(REASONS), \
        f"{page}:{line}: '{EXEMPT}: {reason}' names no allowed reason; one of: {', '.join(REASONS)}"
    pytest.skip(f"{page}:{line} not run: {reason}")


def numbers_close(shown, printed):
    """Digits drift across CPUs (float32 kernels): integers must be equal, other numbers within
    25 % or 0.02 of each other."""
    if re.fullmatch(r"[-+]?\d+", shown) and re.fullmatch(r"[-+]?\d+", printed):
        return int(shown) == int(printed)
    return math.isclose(float(shown), float(printed), rel_tol=0.25, abs_tol=0.02)


def line_matches(shown, printed):
    """Whether a printed line has a sample line's text and, within tolerance, its numbers."""
    pattern, numbers, rest = "", [], shown
    for piece in re.split(f"(…|{NUMBER})", shown):
        rest = rest[len(piece):]
        if piece == "…":
            pattern += ".*?"
        elif piece and re.fullmatch(NUMBER, piece):
            duration = pattern.endswith("~") or DURATION.match(rest)
            pattern += f"({NUMBER})"
            numbers.append(None if duration else piece)
        else:
            pattern += re.escape(piece)
    found = re.fullmatch(pattern, printed)
    return bool(found) and all(n is None or numbers_close(n, got) for n, got in zip(numbers, found.groups()))


def sample_matches(sample, printed):
    """Whether printed lines have the sample's lines in order from the first, a sample line `…`
    standing for any number of lines."""
    if not sample:
        return not printed
    if sample[0].strip() == "…":
        return any(sample_matches(sample[1:], printed[i:]) for i in range(len(printed) + 1))
    return bool(printed) and line_matches(sample[0], printed[0]) and sample_matches(sample[1:], printed[1:])


@pytest.mark.parametrize("page,line,command,sample", [(relative(p), line, c, s) for p, line, c, s in samples()],
                         ids=[f"{relative(p)}:{line}" for p, line, _, _ in samples()])
def test_a_sample_output_is_what_its_command_prints(page, line, command, sample, tmp_path):
    """In a copy of its own, as in a fresh clone: what the sample shows does not depend on
    which commands ran before."""
    code, output, stopped = run(command, copy_of_the_repository(tmp_path), cap_s=SAMPLE_S)
    assert not stopped and code == 0, f"{page}:{line}: the sample's command {command!r} exited {code}:\n{output[-3000:]}"
    assert sample_matches(sample, output.splitlines()), \
        f"{page}:{line}: the sample differs from what {command!r} prints now:\n{output}"


def test_a_sample_tolerates_drifting_digits_and_durations_but_not_other_text():
    sample = ["epoch   1/2  lr 1.0e-03  train loss sem 1.2157 | test mIoU 0.2075  (42 s, ~6.3 min left)", "…",
              "run runs/x  (adam, seed 0)"]
    printed = ["epoch   1/2  lr 1.0e-03  train loss sem 1.2301 | test mIoU 0.2119  (3 s, ~0.1 min left)",
               "more", "lines", "run runs/x  (adam, seed 0)"]
    assert sample_matches(sample, printed)
    assert not sample_matches(sample, [printed[0].replace("mIoU", "miou"), *printed[1:]])
    assert not sample_matches(sample, [printed[0], *printed[1:3], "run runs/x  (adam, seed 1)"])
    assert not sample_matches(sample, [printed[0].replace("1.2301", "2.5"), *printed[1:]])
    assert not sample_matches(sample[:1], printed)  # the sample ends where the output ends unless it ends with …
    assert sample_matches(["Δm     n/a: SynthCity … from single-task runs"], ["Δm     n/a: SynthCity is synthetic; pass --baseline FILE from single-task runs"])


def test_the_blocks_are_found_as_the_rules_say(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n1. step\n   ```bash\n   a --x 1 \\\n       --y 2   # why\n   # only a comment\n   b\n   ```\n"
                    "<!-- sample output of: b -->\n```\nout 1\n```\n")
    (_, lang, body, _), (line, _, sample, before) = fenced_blocks(page)
    assert lang == "bash" and commands(body) == ["a --x 1      --y 2   # why", "b"]
    assert line == 11 and sample == ["out 1"] and SAMPLE.match(before)["command"] == "b"


# A stand-in for pytest stopped by Ctrl-C: the first is taken by a test that trains in its
# process and it goes on; the second stops it, which takes a while, and a third meanwhile
# breaks it (pytest's own stop fails with exit 1).
GOES_ON_ONCE = """
import signal, sys, time
received = []
def on_sigint(signum, frame):
    received.append(signum)
    if len(received) == 1:
        print("F", flush=True)  # the test that took it failed; the next tests run
    elif len(received) == 2:
        time.sleep(2)  # building its report
        print("!!! KeyboardInterrupt !!!", flush=True)
        sys.exit(2)
    else:
        sys.exit(1)
signal.signal(signal.SIGINT, on_sigint)
print("collected", flush=True)
while True:
    time.sleep(0.1)
"""


def test_a_tool_that_goes_on_after_a_ctrl_c_gets_another_but_none_while_it_stops(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(GOES_ON_ONCE)
    code, output, stopped = run(f"{sys.executable} {script}", tmp_path, cap_s=1, again_s=1)
    assert stopped and code == 2 and output.split() == ["collected", "F", "!!!", "KeyboardInterrupt", "!!!"]
