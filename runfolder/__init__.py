"""The run folder and the sweep folder on disk (docs/design.md, "Run folder"): their file names
(files), the one way a file is written (atomic), who owns a run folder (lease), what state a run
is in (state) and what its exit status means (exit_codes).

The bottom layer beside optim/: the standard library only, so that the sweeps, the status and
the launchers read run folders without importing torch or numpy.
"""
