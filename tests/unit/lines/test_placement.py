"""Models on other devices: the hooks that write into a model follow the device of the
activation they get (a model spread over GPUs puts blocks on different devices), and the
device options are checked before any work. No GPU here: activations on PyTorch's ``meta``
device stand in for "another device than the one the vectors were made on"."""

from __future__ import annotations

import pytest
import torch

from forensics.core.errors import ForensicsInputError
from forensics.inputs.loading import resolve_device
from forensics.lines.steering_restoration import Intervention, make_hooks


@pytest.mark.parametrize("kind, layer", [("ablate", 0), ("ablate", "all"), ("reverse", 1), ("features", 0)])
def test_steering_hooks_follow_the_activation_device(kind, layer):
    directions = {0: torch.randn(8), 1: torch.randn(8)}
    hooks = make_hooks(Intervention(kind, layer, 2.0), directions, torch.randn(8), 0, "cpu", torch.float32)
    for _, fn in hooks:
        act = torch.zeros(3, 5, 8, device="meta")
        out = fn(act, None)
        assert out.device.type == "meta" and out.shape == act.shape
    # on the vectors' own device the hook computes the intervention
    act = torch.randn(3, 5, 8)
    name, fn = make_hooks(Intervention("reverse", 1, 2.0), directions, None, 0, "cpu", torch.float32)[0]
    assert name == "blocks.1.hook_resid_post"
    torch.testing.assert_close(fn(act.clone(), None), act - 2.0 * directions[1])


def test_device_options_are_checked():
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ForensicsInputError, match="needs --device cuda"):
        resolve_device("cpu", 2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ForensicsInputError, match="positive integer"):
            resolve_device("cpu", bad)  # type: ignore[arg-type]
    with pytest.raises(ForensicsInputError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ForensicsInputError, match="no CUDA device"):
            resolve_device("cuda:1")


def test_the_placement_is_recorded_only_when_not_the_default():
    from forensics.core.pipeline import _placement

    assert _placement("cpu", None, 1) is None and _placement("cuda:0", "cuda:0", 1) is None
    assert _placement("cuda:0", "cuda:1", 1) == {"original": "cuda:0", "unlearned": "cuda:1", "n_devices": 1}
    assert _placement("cuda", None, 2) == {"original": "cuda", "unlearned": "cuda", "n_devices": 2}
