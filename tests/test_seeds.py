"""Moving the two epoch-seed functions into hashcore.seeds changed no number: values pinned from the code before."""
from callbacks.reproducibility import epoch_seed as reseed_callback_seed
from datamodules.sampling import epoch_seed as data_stream_seed
from hashcore.seeds import epoch_seed, rank_epoch_seed


def test_data_stream_seeds_unchanged():
    assert data_stream_seed is epoch_seed
    assert epoch_seed(0, 0, "order") == 5783011843441837210
    assert epoch_seed(7, 3, "item/5") == 7868641671939431055


def test_epoch_seeding_callback_seeds_unchanged():
    assert reseed_callback_seed is rank_epoch_seed
    assert rank_epoch_seed(0, 0, 0) == 5309288200094205732
    assert rank_epoch_seed(7, 3, 1) == 6655807975236538466
