"""dist.py: identities on one process; shuffle/unshuffle and gather across two gloo processes."""

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from pretrain import dist


def test_identities_on_one_process():
    x = torch.arange(6.0).reshape(3, 2)
    assert dist.all_gather(x) is x
    shuffled, idx = dist.batch_shuffle(x)
    assert shuffled is x and idx is None and dist.batch_unshuffle(x, None) is x
    assert dist.get_world_size() == 1 and dist.get_rank() == 0


def _worker(rank: int, init_file: str, results) -> None:
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(100 + rank)
    x = torch.arange(8.0).reshape(4, 2) + 100 * rank  # (4, 2), rank-specific rows
    gathered = dist.all_gather(x)
    shuffled, idx = dist.batch_shuffle(x)
    restored = dist.batch_unshuffle(shuffled * 2, idx)  # an "encoder" applied to the shuffled batch
    results[rank] = (gathered, shuffled, restored, x)
    torch_dist.destroy_process_group()


@pytest.mark.slow
def test_shuffle_bn_round_trip_across_two_processes(tmp_path):
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_worker, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
    (g0, s0, r0, x0), (g1, s1, r1, x1) = results[0], results[1]
    assert torch.equal(g0, torch.cat([x0, x1])) and torch.equal(g1, g0)
    everything = torch.cat([x0, x1])
    shuffled = torch.cat([s0, s1])
    assert not torch.equal(shuffled, everything)  # keys really move between processes
    assert sorted(shuffled[:, 0].tolist()) == sorted(everything[:, 0].tolist())  # a permutation
    assert torch.equal(r0, 2 * x0) and torch.equal(r1, 2 * x1)  # each process gets its own keys back
