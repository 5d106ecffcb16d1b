"""DFH's training state (U and Y of the whole train set, the class centres C and the relaxed V): written by the
official B → C → U order, saved in checkpoints, restored on resume and by ``load_from_checkpoint``."""
import numpy as np
import pytest
import torch

from lightning_modules import get_method
from tests.test_losses_dfh import _discrete_by_hand
from tests.test_method_state import TINY, OrderedToyData, _fit

STATE = ("U", "Y", "centers", "relaxed_centers")


@pytest.mark.parametrize("kw", [{}, {"center_update": "relaxed", "margin": 3.0, "mu": 0.1}])
def test_resumed_run_equals_the_uninterrupted_one_with_its_centres(kw, tmp_path):
    data = OrderedToyData(n_train=48, num_classes=4)
    whole, _ = _fit("dfh", data, 2, tmp_path / "whole", **kw)
    _, first = _fit("dfh", data, 1, tmp_path / "first", **kw)
    saved = torch.load(first, weights_only=False)["state_dict"]
    assert all(k in saved for k in STATE), f"DFH does not save {STATE} in its checkpoint"
    assert saved["centers"].shape == (4, 16) and saved["centers"].abs().sum() > 0
    # the resumed model starts with no rows and no centres: the checkpoint's must be restored, not rebuilt
    resumed, _ = _fit("dfh", data, 2, tmp_path / "resumed", ckpt_path=str(first), **kw)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert whole.U.shape == (48, 16) and (whole.U.abs().sum(1) > 0).all()
    assert torch.equal(whole.Y, data.train_set.labels)
    assert set(whole.centers.unique().tolist()) <= {-1.0, 0.0, 1.0}
    if kw:  # the relaxed C-step keeps V; its centres are sign(V)
        assert torch.equal(whole.centers, torch.sign(whole.relaxed_centers))


def test_load_from_checkpoint_restores_the_state(tmp_path):
    model, last = _fit("dfh", OrderedToyData(n_train=48, num_classes=4), 1, tmp_path)
    loaded = get_method("dfh").load_from_checkpoint(last)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_two_steps_follow_the_official_b_then_c_order(tmp_path):
    """Main.py per batch: U[:, index] = u; B = sign(mu·C·y + u) with the centres of the previous batch; C-step
    (Discretecenter) from (y, B) with y divided by the label count. Checked on two ordered batches of 8 with
    multi-label rows, from the rows the model wrote (its outputs before each step's update)."""
    data = OrderedToyData(n_train=16, num_classes=4)
    data.train_set.labels[::2, 1] = 1.0  # half the images have two or three labels: the label-count division matters
    data.train_set.labels[::3, 2] = 1.0
    data.train_set.labels[2] = 0.0       # and one has none
    model, _ = _fit("dfh", data, 1, tmp_path, bits=6, mu=0.5, vul=0.1)
    U, labels = model.U.double().numpy(), data.train_set.labels.double().numpy()

    def by_hand(w):
        centers = np.zeros((4, 6))
        for rows in (slice(0, 8), slice(8, 16)):
            b = np.sign(0.5 * w[rows] @ centers + U[rows])  # the centres before this batch's C-step
            centers = _discrete_by_hand(w[rows].T, b.T, centers, 0.1)
        return centers

    got = model.centers.double().numpy()
    np.testing.assert_array_equal(got, by_hand(labels / np.maximum(labels.sum(1, keepdims=True), 1)))
    assert not np.array_equal(got, by_hand(labels))  # the raw labels (the port's) would give other centres


def test_an_unknown_centre_update_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="model.center_update"):
        get_method("dfh")(bits=8, center_update="exact", **TINY)
