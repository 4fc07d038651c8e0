"""Config rewrites that depend on where the run happens: device, SyncBN fallback, linear LR scaling;
and bfloat16 autocast of training on CPUs that compute it natively.

Each rewrite is applied once, before the model is built and before `config.yaml` is dumped, and logged,
so the dumped config is what actually ran.
"""

import functools
import logging
import os

import torch

logger = logging.getLogger(__name__)

_SYNC_NORMS = ("SyncBN", "nnSyncBN", "naiveSyncBN", "naiveSyncBN_N")


def select_device(cfg) -> None:
    """MODEL.DEVICE cpu when CUDA is absent; on CPU use OMP_NUM_THREADS (else every core) for torch."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.info("No CUDA device: MODEL.DEVICE cuda -> cpu")
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.DEVICE == "cpu":
        threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count() or 1
        torch.set_num_threads(threads)
        logger.info(f"CPU run: torch uses {threads} threads (set OMP_NUM_THREADS to change)")


def sync_norm_keys(node, prefix: str = "") -> list[str]:
    """Full names of every `*.NORM` config key whose value is a synchronised BatchNorm."""
    found = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            found += sync_norm_keys(value, name + ".")
        elif key == "NORM" and value in _SYNC_NORMS:
            found.append(name)
    return found


def fall_back_to_bn(cfg, world_size: int) -> list[str]:
    """On one process SyncBN has nothing to synchronise (and needs a process group): use BN instead.

    Returns the rewritten keys; logs one message naming them."""
    if world_size > 1:
        return []
    keys = sync_norm_keys(cfg)
    for name in keys:
        node = cfg
        *parents, leaf = name.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = "BN"
    if keys:
        logger.warning(
            f"Single process: SyncBN -> BN for {', '.join(keys)} (statistics of one process's batch of "
            f"{cfg.SOLVER.IMS_PER_BATCH} images; the protocol's SyncBN normalises over the whole batch)."
        )
    return keys


def scale_learning_rate(cfg) -> dict:
    """Linear scaling rule (Goyal et al., 2017): BASE_LR * IMS_PER_BATCH / TRANSFER.REFERENCE_IMS_PER_BATCH,
    and with TRANSFER.SCALE_SCHEDULE the iteration counts by the inverse ratio (the protocol's epochs).

    Rewrites SOLVER.BASE_LR (and the schedule) and sets the reference to the batch used, so the dumped
    config does not scale again; returns the record stored in metrics.json, whose `epochs_vs_protocol` is
    the fraction of the training images the configured schedule sees at the reference batch (in the
    shipped configs, the protocol's) that this run sees.
    """
    reference, batch, base_lr = (
        cfg.TRANSFER.REFERENCE_IMS_PER_BATCH,
        cfg.SOLVER.IMS_PER_BATCH,
        cfg.SOLVER.BASE_LR,
    )
    record = {
        "rule": "none",
        "reference_ims_per_batch": reference,
        "ims_per_batch": batch,
        "configured_base_lr": base_lr,
        "base_lr": base_lr,
        "configured_max_iter": cfg.SOLVER.MAX_ITER,
        "max_iter": cfg.SOLVER.MAX_ITER,
        "epochs_vs_protocol": 1.0,
    }
    if reference <= 0 or batch == reference:
        return record
    cfg.SOLVER.BASE_LR = base_lr * batch / reference
    cfg.TRANSFER.REFERENCE_IMS_PER_BATCH = batch
    schedule = "the schedule kept as configured"
    if cfg.TRANSFER.SCALE_SCHEDULE:
        _stretch_schedule(cfg, reference / batch)
        schedule = f"the schedule stretched x{reference / batch:g} (SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER})"
    epochs = cfg.SOLVER.MAX_ITER * batch / (record["configured_max_iter"] * reference)
    record.update(
        rule="linear: base_lr * ims_per_batch / reference_ims_per_batch"
        + (", iterations * reference_ims_per_batch / ims_per_batch" if cfg.TRANSFER.SCALE_SCHEDULE else ""),
        base_lr=cfg.SOLVER.BASE_LR,
        max_iter=cfg.SOLVER.MAX_ITER,
        epochs_vs_protocol=round(epochs, 4),
    )
    logger.warning(
        f"Linear LR scaling: SOLVER.IMS_PER_BATCH {batch} != reference {reference}, "
        f"SOLVER.BASE_LR {base_lr:g} -> {cfg.SOLVER.BASE_LR:g}, {schedule}: the run sees {epochs:.3g}x the "
        "protocol's training images (TRANSFER.SCALE_SCHEDULE True keeps its epochs; "
        "TRANSFER.REFERENCE_IMS_PER_BATCH 0 turns all scaling off)"
    )
    return record


def _stretch_schedule(cfg, factor: float) -> None:
    """Multiplies every iteration count of the schedule by `factor` (periods of 0 stay off)."""
    solver = cfg.SOLVER
    solver.MAX_ITER = round(solver.MAX_ITER * factor)
    solver.STEPS = tuple(round(step * factor) for step in solver.STEPS)
    solver.WARMUP_ITERS = round(solver.WARMUP_ITERS * factor)
    solver.CHECKPOINT_PERIOD = max(1, round(solver.CHECKPOINT_PERIOD * factor))
    cfg.TEST.EVAL_PERIOD = round(cfg.TEST.EVAL_PERIOD * factor)


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bfloat16 convolutions natively (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_training_on_cpu(model: torch.nn.Module, cfg) -> bool:
    """With TRANSFER.AMP_CPU on a CPU run: the model's training forward runs under bfloat16 autocast and
    returns fp32 losses; inference is untouched. Returns whether autocast is on (logged either way).

    The forward is wrapped on the instance, so parameter names, checkpoints and DDP see the model as is.
    """
    if not cfg.TRANSFER.AMP_CPU or cfg.MODEL.DEVICE != "cpu":
        return False
    if not cpu_has_native_bf16():
        logger.info("TRANSFER.AMP_CPU: this CPU has no native bfloat16 (AVX512-BF16 / AMX); training in fp32")
        return False
    forward = model.forward

    @functools.wraps(forward)
    def autocast_forward(*args, **kwargs):
        if not model.training:
            return forward(*args, **kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = forward(*args, **kwargs)
        return {name: loss.float() for name, loss in losses.items()}

    model.forward = autocast_forward
    logger.info("TRANSFER.AMP_CPU: training forward under bfloat16 autocast on CPU (evaluation in fp32)")
    return True
