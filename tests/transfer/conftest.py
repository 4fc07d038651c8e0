"""Fixtures of the transfer tests."""

import pytest
import torch
from transfer_testutils import random_resnet_state_dict


@pytest.fixture(scope="session")
def resnet_state_dicts() -> dict[int, dict[str, torch.Tensor]]:
    return {18: random_resnet_state_dict(18, seed=1), 50: random_resnet_state_dict(50, seed=2)}
