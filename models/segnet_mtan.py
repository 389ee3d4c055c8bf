"""SegNet-MTAN (Liu et al., "End-to-End Multi-Task Learning with Attention"), CityScapes
version: the SegNet trunk shared by all tasks, plus per task an attention branch that
masks the trunk's features at every encoder and decoder level, and a prediction head.

The attention branch of task t, at each level: mask = att_t(trunk features [, previous
branch output]); masked = mask * trunk stage output; then a conv-BN-ReLU layer carries
the masked features to the next level. Those carrying layers (`encoder_att_block`,
`decoder_att_block`) are shared by all tasks; the masks (`attention[t]`) and the head
are task t's own, so task t's loss reaches only the shared part and task t's branch.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AttentionModule, ConvBNReLU, SegNetBase, init_weights


class TaskAttention(nn.Module):
    """One task's attention masks: one module per encoder level, one per decoder stage."""

    def __init__(self, encoder_channels, decoder_channels):
        super().__init__()
        # Encoder level k reads its first-layer features (c channels), concatenated with
        # the branch's previous level (also c) except at level 0.
        self.encoder = nn.ModuleList(
            AttentionModule(c if k == 0 else 2 * c, c) for k, (_, c) in enumerate(encoder_channels)
        )
        # Decoder stage reads the unpooled trunk input (c_in) and the branch (c_out).
        self.decoder = nn.ModuleList(AttentionModule(c_in + c_out, c_out) for c_in, c_out in decoder_channels)


class SegNetMTAN(SegNetBase):
    def __init__(self, tasks, width_mult=1.0):
        super().__init__(tasks, width_mult)
        enc, dec = self.encoder_channels, self.decoder_channels
        # Shared: carries the masked features of level k to level k+1's width; the last
        # one feeds the deepest decoder stage, whose input has the deepest width.
        next_width = [c for _, c in enc[1:]] + [dec[0][0]]
        self.encoder_att_block = nn.ModuleList(ConvBNReLU(c, n) for (_, c), n in zip(enc, next_width))
        # Shared: maps the (upsampled) branch to the decoder stage's output width.
        self.decoder_att_block = nn.ModuleList(ConvBNReLU(c_in, c_out) for c_in, c_out in dec)
        self.attention = nn.ModuleDict({t: TaskAttention(enc, dec) for t in self.tasks})
        init_weights(self)

    def task_features(self, task, features):
        att = self.attention[task]
        h = None
        for k, block in enumerate(self.encoder_att_block):
            first = features.encoder_first[k]
            mask = att.encoder[k](first if h is None else torch.cat([first, h], dim=1))
            h = F.max_pool2d(block(mask * features.encoder_out[k]), kernel_size=2, stride=2)
        for j, block in enumerate(self.decoder_att_block):
            h = block(F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=True))
            mask = att.decoder[j](torch.cat([features.decoder_in[j], h], dim=1))
            h = mask * features.decoder_out[j]
        return h

    def task_modules(self, task):
        return [self.attention[task], self.heads[task]]

    # The shared attention layers are listed with the level they work at: the encoder
    # one after the trunk layers it reads, the decoder one first (it reads the level below).
    def encoder_layers(self, k):
        return super().encoder_layers(k) + [(f"encoder_att_block.{k}", self.encoder_att_block[k])]

    def decoder_layers(self, j):
        return [(f"decoder_att_block.{j}", self.decoder_att_block[j])] + super().decoder_layers(j)
