"""SegNet "split" (hard parameter sharing): the whole encoder-decoder is shared and each
task has only its prediction head on the trunk's last features."""
from .blocks import SegNetBase, init_weights


class SegNetSplit(SegNetBase):
    def __init__(self, tasks, width_mult=1.0):
        super().__init__(tasks, width_mult)
        init_weights(self)

    def task_features(self, task, features):
        return features.decoder_out[-1]
