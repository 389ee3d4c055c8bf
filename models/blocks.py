"""Building blocks of the SegNet models, and the multi-task model base class.

Layers: conv(3x3)-BN-ReLU, a stage of such layers, the MTAN attention module and the
per-task prediction head; Xavier-normal initialisation. `SegNetBase` holds what both
architectures share: the SegNet encoder-decoder trunk, one head per task (tasks/ says its
output channels and activation), and the split of the parameters into shared and
task-specific ones.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from data.layout import SIZE_MULTIPLE, size_problem

BASE_FILTERS = (64, 128, 256, 512, 512)  # SegNet channels per resolution level
NUM_POOLINGS = len(BASE_FILTERS)
assert 2 ** NUM_POOLINGS == SIZE_MULTIPLE, "the release layout's size rule follows the pooling count"


def check_image_size(height, width):
    """Raise ValueError unless the image survives five 2x poolings and unpoolings intact."""
    problem = size_problem(height, width)
    if problem:
        raise ValueError(f"image size {height}x{width}: {problem}")


def scaled_filters(width_mult):
    """Channel counts per level times `width_mult`, rounded, at least 1 (0.125 -> 8..64)."""
    if not width_mult > 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    return [max(1, int(round(c * width_mult))) for c in BASE_FILTERS]


def stage_depth(level):
    """Conv layers per stage: two at the two finest levels, three below (VGG16 layout)."""
    return 2 if level < 2 else 3


class ConvBNReLU(nn.Module):
    """3x3 convolution, batch norm, ReLU: one 'layer' of the trunk."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        # In place is safe: it only overwrites the fresh BN output.
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class ConvStage(nn.Sequential):
    """The conv layers of one SegNet level, named conv1, conv2, ...

    `run` also returns the first layer's output, which the MTAN attention reads.
    """

    def __init__(self, in_channels, out_channels, depth):
        layers = [ConvBNReLU(in_channels, out_channels)]
        layers += [ConvBNReLU(out_channels, out_channels) for _ in range(depth - 1)]
        super().__init__()
        for i, layer in enumerate(layers, start=1):
            self.add_module(f"conv{i}", layer)

    def run(self, x):
        first = out = self.conv1(x)
        for layer in list(self)[1:]:
            out = layer(out)
        return first, out


class AttentionModule(nn.Module):
    """Task attention mask: 1x1 conv-BN-ReLU, 1x1 conv-BN-sigmoid (values in (0, 1))."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return torch.sigmoid(self.bn2(self.conv2(h)))


class PredictionHead(nn.Module):
    """3x3 conv then 1x1 conv to the task's outputs (no norm or activation between; the
    task's own activation, such as semantic's log-softmax, follows in SegNetBase.forward)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x):
        return self.conv2(self.conv1(x))


def init_weights(module):
    """Xavier-normal conv weights and zero biases; BN weight 1, bias 0 (as the reference)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class TrunkFeatures(NamedTuple):
    """Per-level features of the shared trunk; decoder lists run deepest level first."""

    encoder_first: list  # output of each encoder stage's first layer
    encoder_out: list  # output of each encoder stage (before pooling)
    decoder_in: list  # unpooled input of each decoder stage
    decoder_out: list  # output of each decoder stage


class SegNetBase(nn.Module):
    """SegNet encoder-decoder shared by all tasks, one prediction head per task.

    Encoder stage k maps level k-1's channels to level k's; the decoder stage of level k
    mirrors it (level k's channels back to level k-1's). `self.decoder` is in execution
    order: decoder[0] is the deepest level, decoder[-1] the full-resolution one.

    Subclasses say what each head reads (`task_features`), which modules belong to a
    task (`task_modules`), and may add shared layers to the per-level listing.
    Call `init_weights(self)` at the end of the subclass constructor.
    """

    def __init__(self, tasks, width_mult=1.0):
        """tasks: Task objects (tasks/), one head (and, in MTAN, one attention branch) each,
        in their order; `self.tasks` holds their names."""
        super().__init__()
        names = tuple(task.name for task in tasks)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tasks must be distinct and at least one, got {names}")
        self.tasks = names
        self._activations = {task.name: task.activate for task in tasks}
        self.width_mult = width_mult
        self.filters = f = scaled_filters(width_mult)

        levels = range(NUM_POOLINGS)
        self.encoder_channels = [(3 if k == 0 else f[k - 1], f[k]) for k in levels]
        # Decoder (in, out) per stage in execution order; the last level keeps f[0].
        self.decoder_channels = [(f[k], f[max(k - 1, 0)]) for k in reversed(levels)]
        self.encoder = nn.ModuleList(
            ConvStage(c_in, c_out, stage_depth(k)) for k, (c_in, c_out) in enumerate(self.encoder_channels)
        )
        self.decoder = nn.ModuleList(
            ConvStage(c_in, c_out, stage_depth(k))
            for k, (c_in, c_out) in zip(reversed(levels), self.decoder_channels)
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(kernel_size=2, stride=2)
        self.heads = nn.ModuleDict({task.name: PredictionHead(f[0], task.out_channels()) for task in tasks})

    # ---- forward ------------------------------------------------------------------

    def forward(self, x):
        """One prediction per task in `self.tasks` order."""
        if x.dim() != 4:
            raise ValueError(f"expected a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
        check_image_size(x.shape[-2], x.shape[-1])
        features = self.trunk(x)
        return [self._activations[t](self.heads[t](self.task_features(t, features))) for t in self.tasks]

    def trunk(self, x):
        encoder_first, encoder_out, indices = [], [], []
        h = x
        for stage in self.encoder:
            first, out = stage.run(h)
            h, idx = self.pool(out)
            encoder_first.append(first)
            encoder_out.append(out)
            indices.append(idx)
        decoder_in, decoder_out = [], []
        for stage, idx in zip(self.decoder, reversed(indices)):
            h = self.unpool(h, idx)
            decoder_in.append(h)
            _, h = stage.run(h)
            decoder_out.append(h)
        return TrunkFeatures(encoder_first, encoder_out, decoder_in, decoder_out)

    def task_features(self, task, features):
        """The features `task`'s head reads."""
        raise NotImplementedError

    # ---- shared vs task-specific parameters -----------------------------------------

    def task_modules(self, task):
        """The modules whose parameters belong to `task` alone."""
        return [self.heads[task]]

    def task_specific_parameters(self):
        """One list per task (in `self.tasks` order) of the parameters only it uses."""
        return [[p for m in self.task_modules(t) for p in m.parameters()] for t in self.tasks]

    def shared_parameters(self):
        """Every parameter not specific to a task, in `self.parameters()` order."""
        own = {id(p) for params in self.task_specific_parameters() for p in params}
        return [p for p in self.parameters() if id(p) not in own]

    def encoder_layers(self, k):
        """Shared (name, module) layers at encoder level k, input side first."""
        return [(f"encoder.{k}.{name}", layer) for name, layer in self.encoder[k].named_children()]

    def decoder_layers(self, j):
        """Shared (name, module) layers of decoder stage j (execution order)."""
        return [(f"decoder.{j}.{name}", layer) for name, layer in self.decoder[j].named_children()]

    def shared_layers(self):
        """Shared parameters grouped per layer (conv with its BN), input to output."""
        named = [layer for k in range(len(self.encoder)) for layer in self.encoder_layers(k)]
        named += [layer for j in range(len(self.decoder)) for layer in self.decoder_layers(j)]
        return [(name, list(module.parameters())) for name, module in named]

    def parameter_counts(self):
        def count(params):
            return sum(p.numel() for p in params)

        counts = {"total": count(self.parameters()), "shared": count(self.shared_parameters())}
        counts.update({t: count(ps) for t, ps in zip(self.tasks, self.task_specific_parameters())})
        return counts
