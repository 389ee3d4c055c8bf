"""SDMGrad's extra batches (--sdmgrad-batches, docs/methods.md "SDMGrad"): what the extra loader
draws, how it is sharded, and the augmentation of an extra sample. The step itself is checked
against the authors' code by tests/goldens/sdmgrad.json, across processes by
tests/test_distributed.py, and its resume by tests/test_weighting_training.py."""
import torch

from data.cityscapes import CityscapesNpy
from experiment.world import ExtraBatches, shard
from tasks import TaskSettings, build_tasks


def test_extra_batches_are_fresh_draws_of_distinct_samples_fixed_by_their_seed():
    batches = list(ExtraBatches(10, 4, steps=3, per_step=2, seed=7))
    assert len(batches) == 6 == len(ExtraBatches(10, 4, steps=3, per_step=2, seed=7))
    assert batches == list(ExtraBatches(10, 4, steps=3, per_step=2, seed=7))
    assert batches != list(ExtraBatches(10, 4, steps=3, per_step=2, seed=8))
    draws = [draw for batch in batches for _, draw in batch]
    assert draws == list(range(1, 25))  # every extra sample its own augmentation
    for batch in batches:
        indices = [index for index, _ in batch]
        assert len(set(indices)) == 4 and all(0 <= i < 10 for i in indices)
    # each batch is the first batch of a new shuffle, so samples recur across batches (10 samples, 24 drawn)
    assert len({index for batch in batches for index, _ in batch}) < 24
    assert [len(b) for b in ExtraBatches(3, 4, steps=1, per_step=2, seed=0)] == [3, 3]  # fewer samples than a batch


def test_each_process_takes_its_shard_of_the_same_global_extra_batches():
    whole = list(ExtraBatches(16, 6, steps=2, per_step=2, seed=3))
    per_rank = [list(ExtraBatches(16, 6, steps=2, per_step=2, seed=3, rank=r, size=2)) for r in range(2)]
    for i, batch in enumerate(whole):
        assert per_rank[0][i] + per_rank[1][i] == batch
        assert [shard(batch, r, 2) for r in range(2)] == [per_rank[0][i], per_rank[1][i]]


def test_an_extra_sample_has_the_targets_of_its_index_and_an_augmentation_of_its_own(tiny_synthcity):
    tasks = build_tasks(["semantic", "depth"], TaskSettings(classes=7))
    plain = CityscapesNpy(tiny_synthcity, "train", tasks, augment=False, seed=3)
    image, targets = plain[5]
    again, targets_again = plain[(5, 1)]
    assert torch.equal(image, again) and all(torch.equal(targets[k], targets_again[k]) for k in targets)
    augmented = CityscapesNpy(tiny_synthcity, "train", tasks, augment=True, seed=3)
    images = [augmented[5][0], *(augmented[(5, draw)][0] for draw in range(1, 9))]
    assert torch.equal(augmented[(5, 2)][0], images[2])  # a draw's augmentation is fixed by (seed, epoch, i, draw)
    assert len({tuple(image.flatten()[:64].tolist()) for image in images}) > 2


def test_a_run_recorded_before_the_options_reads_as_one_batch_torchjd_unclipped():
    from evaluation import run_config
    from experiment.flags import setting_definitions
    recorded = {"settings": {"method": "adam", "weighting": "sdmgrad", "seed": 0, "sdmgrad_lamda": 0.3}}
    settings = run_config.settings(recorded, setting_definitions())
    assert (settings["sdmgrad_batches"], settings["sdmgrad_convention"], settings["sdmgrad_max_norm"]) == \
        (1, "torchjd", 0.0)
