"""Task losses on the same batch at displaced shared parameters, leaving the model as it was."""
import torch


def losses_after_fn(model, compute_losses, shared_params):
    """StepContext.losses_after for one batch.

    compute_losses(): the (K,) task losses of the batch at the model's current parameters.
    Returns losses_after(delta): adds delta (one tensor or None per shared parameter) to
    the shared parameters in place, runs compute_losses() under no_grad with the model in
    its current mode, then restores the displaced parameters and every buffer (BatchNorm
    running_mean, running_var, num_batches_tracked, ...) from copies — bit-exact, which
    subtracting delta again would not be — and returns the detached losses. delta None:
    no displacement (the losses at the current parameters, e.g. after the step for FAMO).
    """
    shared_params = list(shared_params)

    def losses_after(delta=None):
        moved = [] if delta is None else [(p, d) for p, d in zip(shared_params, delta, strict=True) if d is not None]
        saved_params = [p.detach().clone() for p, _ in moved]
        saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
        try:
            with torch.no_grad():
                for p, d in moved:
                    p.add_(d)
                return compute_losses().detach()
        finally:
            with torch.no_grad():
                for (p, _), original in zip(moved, saved_params):
                    p.copy_(original)
                for buffer, original in saved_buffers:
                    buffer.copy_(original)

    return losses_after
