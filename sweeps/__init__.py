"""Sweeps of methods × weightings × seeds: one plan (sweeps.plan), several backends (local,
Slurm through submitit, Ray), each run one subprocess of main_cityscapes.py (sweeps.runner)."""
