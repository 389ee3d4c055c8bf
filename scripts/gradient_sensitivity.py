"""How far SegNet-MTAN's gradients move when its input moves by rounding: why a run across
processes equals one process only in float64 (docs/torchrun.md, "Why float64 for those tests").

    .venv/bin/python -m scripts.gradient_sensitivity [--width-mult 0.125] [--image-size 32x64]

One batch (4 random images, random labels and depths) through the network of the tests, in
float32 and in float64: the gradient of the summed losses at the input, and at the input
times (1 + ε·noise), ε the dtype's rounding unit (what summing in another order changes).
Prints, per dtype, the median and the largest change of a parameter tensor's gradient
relative to that gradient's largest entry. Max-pooling with indices turns a rounding-sized
change into a different route through the unpooling, so the gradients move by orders of
magnitude more than the input did; in float64 that is still far below 1e-10.
"""
import argparse

import torch

from models import build_model
from tasks import TaskSettings, build_tasks


def gradients(dtype, width_mult, height, width, perturbation):
    tasks = build_tasks(["semantic", "depth"], TaskSettings())
    torch.manual_seed(0)
    model = build_model("mtan", tasks, width_mult).to(dtype)
    g = torch.Generator().manual_seed(1)
    image = torch.rand(4, 3, height, width, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 7, (4, height, width), generator=g)
    depth = torch.rand(4, 1, height, width, generator=g, dtype=torch.float64).to(dtype)
    noise = torch.randn(image.shape, generator=g, dtype=torch.float64)
    preds = model((image * (1 + perturbation * noise)).to(dtype))
    sum(task.loss(p, y) for task, p, y in zip(tasks, preds, [labels, depth])).backward()
    return [p.grad.double() for p in model.parameters()]


def relative_changes(dtype, width_mult, height, width):
    before = gradients(dtype, width_mult, height, width, 0.0)
    after = gradients(dtype, width_mult, height, width, torch.finfo(dtype).eps)
    # a tensor whose gradient is rounding noise itself (a bias before BatchNorm) says nothing
    return sorted(float((a - b).abs().max() / b.abs().max()) for a, b in zip(after, before)
                  if b.abs().max() > 1e-5)


def main(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--width-mult", type=float, default=0.125)
    parser.add_argument("--image-size", default="32x64", help="HxW")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.image_size.split("x"))
    print(f"SegNet-MTAN x{args.width_mult}, {height}x{width}, batch 4; input times (1 + ε·noise)\n")
    print("| dtype | ε | median change of a gradient | largest change |")
    print("|---|---|---|---|")
    rows = {}
    for dtype in (torch.float32, torch.float64):
        changes = relative_changes(dtype, args.width_mult, height, width)
        rows[str(dtype).removeprefix("torch.")] = (changes[len(changes) // 2], changes[-1])
        print(f"| {str(dtype).removeprefix('torch.')} | {torch.finfo(dtype).eps:.1e} | "
              f"{changes[len(changes) // 2]:.1e} | {changes[-1]:.1e} |")
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)  # here, not in main(): a test calls main() inside its own process
    main()
