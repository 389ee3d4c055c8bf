"""UW, FAMO and IMTL-L keep their state in one shared implementation (optim/weighting/self_trained.py)
and in the checkpoint format of the runs made before it: {their tensor's name: the tensor,
"optimizer": its Adam's state}, which older checkpoints hold and --resume loads."""
import pytest
import torch

from optim.weighting import build_weighting

FORMAT = [("uw", "log_vars"), ("famo", "logits"), ("imtl_l", "log_scales")]


@pytest.mark.parametrize("name, key", FORMAT)
def test_state_has_the_keys_older_checkpoints_hold(name, key):
    state = build_weighting(name, 2).state_dict()
    assert list(state) == [key, "optimizer"]
    start = -0.5 if name == "uw" else 0.0  # UW's s starts at LibMTL's −0.5 (--uw-init)
    assert torch.equal(state[key], torch.full((2,), start, dtype=torch.float64))
    assert list(state["optimizer"]) == ["state", "param_groups"]


@pytest.mark.parametrize("name, key", FORMAT)
def test_a_state_written_by_hand_in_that_format_loads(name, key):
    source = torch.tensor([0.25, -0.5], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([source], lr=0.5)
    source.grad = torch.tensor([1.0, 2.0], dtype=torch.float64)
    optimizer.step()
    method = build_weighting(name, 2)
    method.load_state_dict({key: source.detach().clone(), "optimizer": optimizer.state_dict()})
    assert torch.equal(getattr(method, key).detach(), source.detach())
    assert method.optimizer.param_groups[0]["lr"] == 0.5
    assert torch.equal(method.optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state[source]["exp_avg"])
