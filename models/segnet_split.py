"""SegNet "split" (hard parameter sharing): the whole encoder-decoder is shared and each
task has only its prediction head on the trunk's last features."""
from .blocks import TASKS, SegNetBase, init_weights


class SegNetSplit(SegNetBase):
    def __init__(self, num_classes=7, width_mult=1.0, tasks=TASKS):
        super().__init__(num_classes, width_mult, tasks)
        init_weights(self)

    def task_features(self, task, features):
        return features.decoder_out[-1]
