"""Entry points run from the repository root as modules (`.venv/bin/python -m scripts.demo`), so
that they import the repository's packages without touching sys.path; the shell scripts beside
them find the interpreter themselves (repo_python.sh)."""
