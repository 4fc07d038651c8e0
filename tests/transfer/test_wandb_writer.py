"""transfer.wandb_logging.WandbWriter: Detectron2's event storage to a W&B run, each value once."""

import pytest
from detectron2.utils.events import EventStorage
from wandb_testutils import RecordingRun

from transfer.wandb_logging import WandbWriter


def test_scalars_are_logged_at_their_iteration_smoothed_like_tensorboard_and_once():
    run = RecordingRun()
    writer = WandbWriter(run, window_size=20)
    with EventStorage(start_iter=0) as storage:
        storage.iter = 9
        storage.put_scalar("total_loss", 1.0)
        storage.put_scalar("lr", 0.02, smoothing_hint=False)
        writer.write()
        writer.write()  # nothing new since the last write
        storage.iter = 19
        storage.put_scalar("total_loss", 3.0)  # median over the window with iteration 9's value: 2.0
        storage.put_scalars(**{"bbox/AP": 12.5}, smoothing_hint=False)
        writer.write()
    assert run.logged == [
        (9, {"total_loss": 1.0, "lr": pytest.approx(0.02)}),
        (19, {"total_loss": 2.0, "bbox/AP": 12.5}),
    ]
