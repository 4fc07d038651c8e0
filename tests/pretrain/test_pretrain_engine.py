"""Training loop: outputs, exact kill-and-resume, NaN guard, configs and the CLI."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from pretrain_testutils import tiny_cfg
from wandb_testutils import RecordingRun, offline_runs

from pretrain import checkpoint, engine
from pretrain.config import load_cfg
from pretrain.engine import Trainer, learning_rate
from pretrain.errors import PretrainError
from pretrain.monitor import Monitor, drop_records_after
from pretrain.split_bn import SplitBatchNorm2d
from pretrain.train_net import main
from transfer.wandb_logging import start_run

# pretraining recipes; linear_*.yaml are linear-probe configs (pretrain.linear_eval, own schema and tests)
CONFIGS = sorted(p for p in (Path(__file__).parents[2] / "pretrain" / "configs").glob("*.yaml")
                 if not p.name.startswith("linear_"))  # fmt: skip


def run_cfg(root, out, method="densecl", **overrides):
    cfg = tiny_cfg(method, **{"DATA.ROOT": str(root), "OUTPUT_DIR": str(out), **overrides})
    cfg.DATA.DATASET = "imagenet" if method == "supervised" else "coco"
    cfg.freeze()
    return cfg


class KilledError(Exception):
    """Stands for a SIGKILL in the middle of training."""


def test_outputs_layout_and_checksum(tiny_root, tmp_path):
    out = tmp_path / "run"
    Trainer(run_cfg(tiny_root, out, **{"SOLVER.MAX_ITERS": 3})).train()
    for name in ("config.yaml", "metrics.jsonl", "log.txt", "checkpoint_last.pth", "model_final.pth"):
        assert (out / name).is_file(), name
    assert (out / "checkpoint_epoch_0001.pth").is_file()  # 8 images / batch 4 = 2 iters per epoch
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [1, 2, 3]
    assert {"epoch", "lr", "loss", "loss_global", "loss_dense", "time", "data_time"} <= set(records[0])
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    sd, meta = final["state_dict"], final["meta"]
    assert meta["method"] == "densecl" and meta["arch"] == "resnet18" and meta["iters"] == 3
    assert meta["sha256"] == checkpoint.state_dict_sha256(sd)
    assert "encoder_q.backbone.layer1.0.conv1.weight" in sd and "queue_dense.queue" in sd
    digest = hashlib.sha256((out / "model_final.pth").read_bytes()).hexdigest()
    assert (out / "model_final.pth.sha256").read_text() == f"{digest}  model_final.pth\n"  # `sha256sum -c`


def test_state_dict_checksum_covers_names_dtypes_and_every_value():
    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64)}
    reference = checkpoint.state_dict_sha256(state)
    assert len(reference) == 64 and reference == checkpoint.state_dict_sha256(dict(reversed(state.items())))
    changed_value = {
        **state,
        "a": state["a"].clone().index_put_((torch.tensor(1), torch.tensor(2)), torch.tensor(9.0)),
    }
    variants = [
        changed_value,
        {"c": state["a"], "b": state["b"]},  # a renamed key
        {**state, "a": state["a"].double()},  # another dtype
        {**state, "a": state["a"].reshape(3, 2)},  # another shape, the same bytes
    ]
    assert len({reference, *(checkpoint.state_dict_sha256(v) for v in variants)}) == 5


def test_supervised_exports_plain_torchvision_keys(tiny_root, tmp_path):
    Trainer(run_cfg(tiny_root, tmp_path / "sup", "supervised", **{"SOLVER.MAX_ITERS": 2})).train()
    sd = torch.load(tmp_path / "sup" / "model_final.pth", weights_only=True)["state_dict"]
    assert "fc.weight" in sd and "conv1.weight" in sd and sd["fc.weight"].shape == (2, 512)


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
def test_killed_run_resumes_exactly(tiny_root, tmp_path, monkeypatch, optimizer):
    """Kill after iteration 3 (mid-epoch, CHECKPOINT_ITERS 1); resuming gives the uninterrupted result."""
    opts = {"SOLVER.MAX_ITERS": 5, "SOLVER.CHECKPOINT_ITERS": 1, "SOLVER.OPTIMIZER": optimizer}
    Trainer(run_cfg(tiny_root, tmp_path / "ref", **opts)).train()
    reference = torch.load(tmp_path / "ref" / "checkpoint_last.pth", weights_only=True)

    real_step = Trainer.step

    def step_then_die(self, batch, iteration):
        if iteration == 3:
            raise KilledError
        return real_step(self, batch, iteration)

    out = tmp_path / "killed"
    monkeypatch.setattr(Trainer, "step", step_then_die)
    with pytest.raises(KilledError):
        Trainer(run_cfg(tiny_root, out, **opts)).train()
    monkeypatch.setattr(Trainer, "step", real_step)
    saved = torch.load(out / "checkpoint_last.pth", weights_only=True)
    assert saved["iteration"] == 3 and saved["epoch"] == 1

    trainer = Trainer(run_cfg(tiny_root, out, **opts), resume=True)
    assert trainer.start_iter == 3
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, saved["model"][k]), k
    assert torch.equal(trainer.optimizer.state_dict()["state"][0]["momentum_buffer"],
                       saved["optimizer"]["state"][0]["momentum_buffer"])  # fmt: skip
    assert "resumed from" in (out / "log.txt").read_text() and "iteration 3" in (out / "log.txt").read_text()
    trainer.train()
    resumed = torch.load(out / "checkpoint_last.pth", weights_only=True)
    assert resumed["iteration"] == 5
    for k, v in reference["model"].items():
        assert torch.equal(resumed["model"][k], v), k  # bit for bit, not merely close

    def losses(run_dir):
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [(r["iter"], r["lr"], r["loss"], r["loss_global"], r["loss_dense"]) for r in records]

    assert [r[0] for r in losses(out)] == [1, 2, 3, 4, 5] and losses(out) == losses(tmp_path / "ref")


@pytest.mark.parametrize(("min_seconds", "refreshed"), [(0, [1, 2, 3, 4]), (10**9, [])])
def test_last_checkpoint_refresh_waits_for_min_seconds(
    tiny_root, tmp_path, monkeypatch, min_seconds, refreshed
):
    """Periodic checkpoint_last.pth refreshes (here every iteration) are skipped while the last write is
    younger than LAST_CHECKPOINT_MIN_SECONDS; the final state is always written."""
    writes = []
    real_save = checkpoint.save_atomic

    def recording_save(obj, path):
        if Path(path).name == checkpoint.LAST:
            writes.append(obj["iteration"])
        real_save(obj, path)

    monkeypatch.setattr(checkpoint, "save_atomic", recording_save)
    opts = {"SOLVER.MAX_ITERS": 5, "SOLVER.CHECKPOINT_ITERS": 1}
    opts["SOLVER.LAST_CHECKPOINT_MIN_SECONDS"] = min_seconds
    Trainer(run_cfg(tiny_root, tmp_path / "run", **opts)).train()
    assert writes == [*refreshed, 5]


def test_resume_with_larger_max_iters(tiny_root, tmp_path):
    out = tmp_path / "grow"
    Trainer(run_cfg(tiny_root, out, **{"SOLVER.MAX_ITERS": 2})).train()
    trainer = Trainer(run_cfg(tiny_root, out, **{"SOLVER.MAX_ITERS": 4}), resume=True)
    assert trainer.start_iter == 2
    trainer.train()
    meta = torch.load(out / "model_final.pth", weights_only=True)["meta"]
    assert meta["iters"] == 4


def test_resume_from_a_foreign_checkpoint_is_a_clear_error(tiny_root, tmp_path):
    out = tmp_path / "foreign"
    out.mkdir()
    torch.save({"model": {}, "iteration": 3}, out / checkpoint.LAST)  # plain weights, not a training state
    with pytest.raises(PretrainError, match=r"checkpoint_last.pth lacks optimizer, scaler, rng, epoch"):
        Trainer(run_cfg(tiny_root, out, **{"SOLVER.MAX_ITERS": 2}), resume=True)


def test_nan_loss_stops_with_clear_message(tiny_root, tmp_path):
    trainer = Trainer(run_cfg(tiny_root, tmp_path / "nan", **{"SOLVER.MAX_ITERS": 2}))
    trainer.model.compute_losses = lambda q, k: {"loss": torch.tensor(float("nan"), requires_grad=True)}
    with pytest.raises(PretrainError, match=r"iteration 1 .*lower SOLVER.BASE_LR"):
        trainer.train()


def test_syncbn_fallback_is_logged(tiny_root, tmp_path):
    trainer = Trainer(run_cfg(tiny_root, tmp_path / "bn", **{"TRAIN.SYNC_BN": True}))
    assert (
        "SyncBN requested but not distributed: using BatchNorm" in (tmp_path / "bn" / "log.txt").read_text()
    )
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.model.modules())


def test_one_process_splits_bn_in_both_encoders(tiny_root, tmp_path):
    trainer = Trainer(run_cfg(tiny_root, tmp_path / "split", **{"MODEL.SHUFFLE_BN_SPLITS": 2}))
    for encoder in (trainer.model.encoder_q, trainer.model.encoder_k):
        bns = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert bns and all(isinstance(m, SplitBatchNorm2d) and m.num_splits == 2 for m in bns)
    assert "shuffle-BN over 2 BN sub-batches" in (tmp_path / "split" / "log.txt").read_text()
    with pytest.raises(PretrainError, match=r"BATCH_SIZE 4 does not split into MODEL\.SHUFFLE_BN_SPLITS=8"):
        Trainer(run_cfg(tiny_root, tmp_path / "odd", **{"MODEL.SHUFFLE_BN_SPLITS": 8}))


def test_cosine_schedule_and_step_schedule():
    cfg = tiny_cfg()
    assert learning_rate(cfg, 0.03, 0, 100, 10) == pytest.approx(0.03)
    assert learning_rate(cfg, 0.03, 50, 100, 10) == pytest.approx(0.015)
    assert learning_rate(cfg, 0.03, 100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    cfg.SOLVER.LR_SCHEDULER = "step"
    assert learning_rate(cfg, 0.1, 29 * 10, 900, 10) == pytest.approx(0.1)
    assert learning_rate(cfg, 0.1, 60 * 10, 900, 10) == pytest.approx(0.001)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_loads(path):
    cfg = load_cfg(str(path), [])
    assert cfg.MODEL.METHOD in ("densecl", "mocov2", "supervised")


def test_paper_recipes_match_protocol():
    d = Path(CONFIGS[0]).parent
    coco = load_cfg(str(d / "densecl_R50_8xb32-800ep_coco.yaml"), [])
    assert (coco.SOLVER.BASE_LR, coco.SOLVER.EPOCHS, coco.DATA.DATASET) == (0.3, 800, "coco")
    inet = load_cfg(str(d / "densecl_R50_8xb32-200ep_in1k.yaml"), [])
    assert (inet.SOLVER.BASE_LR, inet.SOLVER.BATCH_SIZE, inet.MODEL.QUEUE_SIZE) == (0.03, 256, 65536)
    assert (inet.MODEL.TEMPERATURE, inet.MODEL.MOMENTUM, inet.MODEL.DENSECL.LAMBDA) == (0.2, 0.999, 0.5)
    assert inet.MODEL.DENSECL.GRID_SIZE == 7 and inet.SOLVER.WEIGHT_DECAY == 1e-4


def test_bad_override_is_a_clear_error(tmp_path):
    with pytest.raises(PretrainError, match=r"MODEL\.NOPE"):
        load_cfg("", ["MODEL.NOPE", "1"])
    with pytest.raises(PretrainError, match="does not exist"):
        load_cfg("missing.yaml", [])
    (tmp_path / "broken.yaml").write_text("MODEL:\n  ARCH: [resnet50\n")
    with pytest.raises(PretrainError, match=r"broken\.yaml is not valid YAML"):
        load_cfg(str(tmp_path / "broken.yaml"), [])
    with pytest.raises(PretrainError, match=r"SOLVER\.LOG_PERIOD must be >= 1"):
        load_cfg("", ["SOLVER.LOG_PERIOD", "0"])


def test_resume_into_fp16_from_a_run_without_loss_scaling(tiny_root, tmp_path, monkeypatch):
    """A bfloat16 / CPU run saves an empty scaler state; resuming it with fp16 scaling starts a new scale."""
    out = tmp_path / "scaler"
    Trainer(run_cfg(tiny_root, out, **{"SOLVER.MAX_ITERS": 1})).train()
    scaler = torch.amp.GradScaler
    monkeypatch.setattr(engine.torch.amp, "GradScaler", lambda *_, **__: scaler("cpu"))  # enabled
    trainer = Trainer(run_cfg(tiny_root, out, **{"SOLVER.MAX_ITERS": 2}), resume=True)
    assert trainer.start_iter == 1 and trainer.scaler.is_enabled()


def test_resume_forgets_metrics_logged_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"iter": i, "loss": 1.0}) + "\n" for i in range(1, 8)))
    drop_records_after(path, 5)
    assert [json.loads(line)["iter"] for line in path.read_text().splitlines()] == [1, 2, 3, 4, 5]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_channels_last(tiny_root, tmp_path):
    cfg = run_cfg(tiny_root, tmp_path / "gpu", **{"SOLVER.MAX_ITERS": 2, "TRAIN.DEVICE": "cuda"})
    trainer = Trainer(cfg)
    assert trainer.amp_dtype == torch.bfloat16
    backbone = trainer.model.encoder_q.backbone
    assert backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    backbone.layer1.register_forward_hook(
        lambda m, i, o: seen.append((o.dtype, o.is_contiguous(memory_format=torch.channels_last)))
    )  # C2 (N, C, H/4, W/4): spatial, so its memory format shows
    trainer.train()
    assert seen == [(torch.bfloat16, True)] * 2
    assert torch.load(tmp_path / "gpu" / "model_final.pth", weights_only=True)["meta"]["iters"] == 2


@pytest.mark.parametrize("native_bf16", [True, False])
def test_cpu_bfloat16_autocast_only_where_native(tiny_root, tmp_path, monkeypatch, native_bf16):
    """TRAIN.AMP_CPU trains under bfloat16 autocast where the CPU has native bf16, else in fp32 (logged)."""
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: native_bf16)
    out = tmp_path / "cpu_amp"
    opts = {"SOLVER.MAX_ITERS": 2, "TRAIN.DEVICE": "cpu", "TRAIN.AMP_CPU": True}
    trainer = Trainer(run_cfg(tiny_root, out, **opts))
    assert trainer.amp_dtype == (torch.bfloat16 if native_bf16 else None)
    seen = []
    trainer.model.encoder_q.backbone.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    trainer.train()
    assert seen == [torch.bfloat16 if native_bf16 else torch.float32] * 2
    log = (out / "log.txt").read_text()
    assert ("bfloat16 autocast on CPU" in log) == native_bf16
    assert ("training in fp32" in log) != native_bf16
    sd = torch.load(out / "model_final.pth", weights_only=True)["state_dict"]
    assert all(t.dtype != torch.bfloat16 for t in sd.values())  # weights stay fp32 under autocast


def test_cpu_runs_fp32_by_default(tiny_root, tmp_path):
    assert Trainer(run_cfg(tiny_root, tmp_path / "fp32", **{"TRAIN.DEVICE": "cpu"})).amp_dtype is None


def test_monitor_logs_the_mean_over_each_window(tmp_path):
    monitor = Monitor(tmp_path, is_main=True, start_iter=0, max_iter=4)
    for loss in (1.0, 3.0, 8.0):
        monitor.step({"loss": loss, "lr": 0.1})
    assert monitor.window_mean() == {"loss": 4.0, "lr": pytest.approx(0.1)}
    monitor.step({"loss": 2.0, "lr": 0.1})
    assert monitor.window_mean()["loss"] == 2.0  # a new window starts after each record
    monitor.close()


def test_monitor_logs_each_record_to_wandb_at_its_iteration(tmp_path):
    run = RecordingRun()
    monitor = Monitor(tmp_path, is_main=True, start_iter=0, max_iter=40, wandb_run=run)
    monitor.write({"iter": 20, "epoch": 0.5, "loss": 4.0, "lr": 0.1})
    monitor.write({"iter": 40, "epoch": 1.0, "loss": 3.0, "lr": 0.05})
    monitor.close(exit_code=1)
    assert run.logged == [
        (20, {"epoch": 0.5, "loss": 4.0, "lr": 0.1}),
        (40, {"epoch": 1.0, "loss": 3.0, "lr": 0.05}),
    ]
    assert run.exit_code == 1


def test_pretraining_logs_an_offline_wandb_run_and_a_resume_continues_it(tiny_root, tmp_path, wandb_offline):
    out = tmp_path / "run"
    opts = {
        "MODEL.ARCH": "resnet18", "DATA.DATASET": "coco", "DATA.ROOT": tiny_root, "DATA.NUM_WORKERS": 0,
        "DATA.IMAGE_SIZE": 32, "SOLVER.BATCH_SIZE": 4, "MODEL.SHUFFLE_BN_SPLITS": 2, "MODEL.QUEUE_SIZE": 16,
        "MODEL.HIDDEN_DIM": 16, "SOLVER.LOG_PERIOD": 1, "OUTPUT_DIR": out,
        "WANDB.PROJECT": "densebench-test", "WANDB.GROUP": "tiny", "WANDB.NAME": "pretrain/densecl_coco",
    }  # fmt: skip
    argv = [str(x) for kv in opts.items() for x in kv]
    assert main([*argv, "SOLVER.MAX_ITERS", "2"]) == 0
    run_id, sessions = offline_runs(out)
    assert len(sessions) == 1
    expected = (b"densebench-test", b"pretrain/densecl_coco", b"loss_global", b"loss_dense", b"lr", b"epoch")
    assert [text for text in expected if text not in sessions[0]] == []
    assert main(["--resume", *argv, "SOLVER.MAX_ITERS", "3"]) == 0
    assert offline_runs(out)[0] == run_id and len(offline_runs(out)[1]) == 2  # the same W&B run, resumed


def test_wandb_project_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # `import wandb` raises ImportError
    cfg = tiny_cfg(**{"OUTPUT_DIR": str(tmp_path), "WANDB.PROJECT": "p"})
    with pytest.raises(PretrainError, match=r"WANDB.PROJECT is 'p' but the wandb package is not installed"):
        start_run(cfg, "pretrain", PretrainError)
    assert start_run(tiny_cfg(**{"OUTPUT_DIR": str(tmp_path)}), "pretrain", PretrainError) is None
