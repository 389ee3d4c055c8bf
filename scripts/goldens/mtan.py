"""Goldens of dwa from the MTAN authors' code (github.com/lorenmt/mtan, im2im_pred/utils.py,
multi_task_trainer: the block under `if opt.weight == 'dwa'` at the start of every epoch, with
--temp 2 of im2im_pred/model_segnet_mtan.py; three tasks, NYUv2's).

That block is inline in the trainer, so the runner reads the file from the checkout, takes the
`if` statement out of its syntax tree and executes it at every epoch with the trainer's names
(index, avg_cost, lambda_weight, T, opt); nothing of it is stored. Around it, as the trainer:
each step backpropagates Σ_i lambda_weight[i, index]·L_i on the linear toy, and the losses go
into avg_cost[index, 0 / 3 / 6] as cost / train_batch in float32, as there. Recorded: θ.grad,
the heads' .grad and lambda_weight[:, index].
"""
import ast
from types import SimpleNamespace

import numpy as np

from .inputs import golden_inputs
from .published import floats, toy

REPOSITORY = "https://github.com/lorenmt/mtan"
FILE = "im2im_pred/utils.py"
COLUMNS = (0, 3, 6)  # avg_cost's columns of the three training losses
WHY = ("their epoch means are accumulated in float32 (avg_cost), ours in float64: measured 2.2e-7 normwise "
       "relative; normwise, as atol is 1e-6 of the case's largest value")


def tolerance(expected):
    largest = max(abs(x) for step in expected for x in step["shared"] + [y for h in step["heads"] for y in h])
    return {"rtol": 1e-6, "atol": 1e-6 * largest, "why": WHY}


def dwa_block(checkout):
    """The compiled `if opt.weight == 'dwa': ...` statement of multi_task_trainer."""
    tree = ast.parse((checkout / FILE).read_text())
    trainer = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "multi_task_trainer")
    block = next(node for node in ast.walk(trainer) if isinstance(node, ast.If)
                 and "dwa" in ast.unparse(node.test))
    return compile(ast.Module(body=[block], type_ignores=[]), str(checkout / FILE), "exec")


def run_authors(checkout, inputs, temperature=2.0):
    draws = golden_inputs(**inputs)
    per_epoch = inputs["steps_per_epoch"]
    epochs = len(draws) // per_epoch
    names = {"np": np, "opt": SimpleNamespace(weight="dwa"), "T": temperature,
             "avg_cost": np.zeros([epochs, 24], dtype=np.float32), "lambda_weight": np.ones([3, epochs])}
    block = dwa_block(checkout)
    out = []
    for index in range(epochs):
        names["index"] = index
        exec(block, names)  # noqa: S102 (the published statement, run from the checkout)
        weights = names["lambda_weight"][:, index]
        for draw in draws[index * per_epoch:(index + 1) * per_epoch]:
            theta, heads, losses = toy(draw)
            sum(float(weights[i]) * losses[i] for i in range(3)).backward()
            out.append({"shared": floats(theta.grad), "heads": [floats(h.grad) for h in heads],
                        "weights": floats(weights)})
            cost = np.zeros(24, dtype=np.float32)
            for column, loss in zip(COLUMNS, losses.detach().tolist()):
                cost[column] = loss
            names["avg_cost"][index, :12] += cost[:12] / per_epoch
    return out


def make(checkout):
    from scripts.make_goldens import commit_of
    cases = []
    for name, extra in (("k3", {}), ("k3-small", {"scale": 1e-4}), ("k3-large", {"scale": 1e2}),
                        ("k3-collinear", {"kind": "collinear"})):
        inputs = {"seed": 3101 + len(cases), "num_tasks": 3, "steps": 10, "steps_per_epoch": 2, **extra}
        expected = run_authors(checkout, inputs)
        cases.append({"name": f"{name} 5 epochs", "switch": "default", "options": {}, "head_grads": None,
                      "inputs": inputs, "tolerance": tolerance(expected), "expected": expected})
    inputs = {"seed": 3111, "num_tasks": 3, "steps": 10, "steps_per_epoch": 2}
    expected = run_authors(checkout, inputs, temperature=4.0)
    cases.append({"name": "k3 5 epochs T=4", "switch": "--dwa-temperature 4", "options": {"temperature": 4.0},
                  "head_grads": None, "inputs": inputs, "tolerance": tolerance(expected), "expected": expected})
    return [{"method": "dwa",
             "reference": {"repository": REPOSITORY, "commit": commit_of(checkout), "file": FILE,
                           "function": "multi_task_trainer, its `opt.weight == 'dwa'` block (--temp 2)"},
             "cases": cases}]
