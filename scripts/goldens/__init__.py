"""Golden outputs of the published implementations (docs/methods.md, "Published implementations").

`python -m scripts.make_goldens` runs the published code, from checkouts the user names, on
inputs that `inputs.golden_inputs` draws from a seed, and writes tests/goldens/<method>.json.
tests/test_goldens.py draws the same inputs, runs our method and compares. Only numbers
produced by the published code are stored, never its source.

A golden file:

    {"method": "<--weighting name>",
     "reference": {"repository": URL, "commit": SHA, "file": PATH, "function": NAME},
     "generated_by": "<the command that wrote it>",
     "cases": [{"name": "...",
                "switch": "default" or the flags that select a convention, e.g. "--cagrad-convention published",
                "options": {our weighting's options for this case},
                "head_grads": "own" | "weighted" | null (the method's default),
                "inputs": {the keyword arguments of golden_inputs},
                "tolerance": {"rtol": float, "atol": float, "why": "..."},
                "expected": [{"shared": [P floats], "heads": [[H floats] per task] | null,
                              "weights": [K floats] | null} per step]}]}
"""
