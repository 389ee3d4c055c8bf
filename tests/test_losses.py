import math

import pytest
import torch

from tasks import TaskSettings
from tasks.depth import DepthTask
from tasks.instance import InstanceTask
from tasks.semantic import SemanticTask

semantic_loss = SemanticTask(TaskSettings(classes=3)).loss
depth_loss = DepthTask().loss
instance_loss = InstanceTask().loss


def test_semantic_loss_ignores_void_pixels():
    log_probs = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]))
    log_probs = log_probs.T.reshape(1, 3, 1, 3)  # three pixels, three classes
    target = torch.tensor([[[0, 1, -1]]])
    expected = -(math.log(0.5) + math.log(0.8)) / 2
    assert abs(semantic_loss(log_probs, target).item() - expected) < 1e-6


@pytest.mark.usefixtures("seeded_and_restored")
def test_semantic_loss_of_all_void_is_zero_not_nan():
    log_probs = torch.log_softmax(torch.randn(1, 3, 2, 2, requires_grad=True), 1)
    loss = semantic_loss(log_probs, torch.full((1, 2, 2), -1))
    assert loss.item() == 0.0


def test_depth_loss_is_l1_over_valid_pixels():
    pred = torch.tensor([0.1, 0.5, 0.3, 0.9]).reshape(1, 1, 2, 2)
    target = torch.tensor([0.2, 0.0, 0.1, 0.0]).reshape(1, 1, 2, 2)
    assert torch.isclose(depth_loss(pred, target), torch.tensor((0.1 + 0.2) / 2))
    assert depth_loss(pred, torch.zeros_like(target)).item() == 0.0


def test_instance_loss_is_the_mean_absolute_offset_error_over_instance_pixels():
    target = torch.zeros(1, 3, 2, 2)
    target[0, :, 0, 0] = torch.tensor([2.0, -1.0, 1.0])  # (dy, dx, instance)
    target[0, :, 1, 1] = torch.tensor([0.5, 4.0, 1.0])
    pred = torch.tensor([[[1.0, 9.0], [9.0, 0.5]], [[1.0, 9.0], [9.0, 1.0]]])[None]  # background pixels ignored
    expected = (abs(1 - 2) + abs(1 + 1) + abs(0.5 - 0.5) + abs(1 - 4)) / 4
    assert torch.isclose(instance_loss(pred, target), torch.tensor(expected))
    assert instance_loss(pred, torch.zeros_like(target)).item() == 0.0  # no instance pixel: 0, not NaN
