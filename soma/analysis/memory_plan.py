"""Peak training memory of a config, estimated without allocating the model (tools/analysis/memory_plan.py).

What one training step holds at its peak, per part:

* **weights**: every parameter and buffer at its own dtype (a bfloat16 frozen base counts 2 bytes), counted on
  the model built on the meta device; with an EMA hook, plus what the average keeps (:func:`ema_bytes`);
* **gradients** (float32, trainable parameters only) and **optimizer state** (AdamW/Adam: two float32 moments per
  trainable parameter; SGD with momentum: one);
* **activations and temporaries** of the backbone: its forward and backward run on *fake* tensors
  (``torch._subclasses.FakeTensorMode``: shapes and dtypes, no storage) under the config's autocast (bfloat16
  for ``AmpOptimWrapper``, as CPU autocast casts), with a dispatch mode that follows every storage an op
  creates until it is freed (:class:`LiveTensorMemory`). This captures what an analytic count misses: the
  no-grad frozen blocks, gradient checkpointing (``with_cp``) and its recomputation, autocast's per-op weight
  copies that a trained block saves for backward, attention kernels that keep O(N) statistics;
* **the decode head** (Mask2Former: the matcher and the label handling need real numbers, so it cannot run on
  fake tensors): its forward+backward is *measured* with the same storage tracker on real CPU tensors at three
  small inputs and extrapolated with ``a + b·batch·pixels + c·batch`` (pixel decoder and attention masks grow
  with pixels, the point-sampled mask loss with batch × queries only).

Peak = weights + optimizer state + max(backbone saved activations + head peak, backbone peak) + gradients of the
trainable parameters. The CUDA context (~0.5 GB) and the caching allocator's fragmentation are not part of
``torch.cuda.max_memory_allocated`` and not counted; keep ~10 % headroom for them.
"""
from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from ..utils.errors import ConfigError

GPUS_GB = (24, 40, 48, 80, 141)
GIB = 1024**3
# (batch, crop) of the head measurements; crops are multiples of 32 (stride of the smallest map).
HEAD_PROBES = ((1, 128), (1, 192), (2, 128))


class LiveTensorMemory(TorchDispatchMode):
    """Bytes of the tensor storages ops create while it is active: live now and at the peak.

    Storages are followed until Python frees them (a weak reference per storage). An op's output that shares an
    input's storage (a view, ``detach``, an in-place result) is no allocation; tensors that existed before
    (weights, inputs) and their views are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked = WeakIdKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # Views, detached aliases and in-place results share an input's storage: counted already if an op made
        # it under this tracker, not at all if it existed before (a weight's transpose is not an allocation).
        inputs = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage()._cdata not in inputs:
                self._track(tensor)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage in self._tracked:
            return
        nbytes = storage.nbytes()
        self._tracked[storage] = nbytes
        weakref.finalize(storage, self._free, nbytes)
        self.live += nbytes
        self.peak = max(self.peak, self.live)

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def reset_peak(self) -> None:
        """Start a new peak from what is live now."""
        self.peak = self.live


def to_fake(module: torch.nn.Module, mode: Any, device: str = "cpu") -> torch.nn.Module:
    """Replace every parameter and buffer of ``module`` (e.g. on the meta device) by a fake tensor of ``mode``
    with the same shape, dtype and ``requires_grad`` (in place; returns ``module``)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None:
                with mode:
                    fake = torch.empty(param.shape, dtype=param.dtype, device=device)
                sub._parameters[name] = torch.nn.Parameter(fake, requires_grad=param.requires_grad)
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None:
                with mode:
                    sub._buffers[name] = torch.empty(buffer.shape, dtype=buffer.dtype, device=device)
    return module


def _autocast(amp: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if amp else nullcontext()


@dataclass
class BackboneActivations:
    """Backbone activation memory of one step (bytes): held at the end of the forward, peak over forward+backward."""

    saved: int
    peak: int


def backbone_activations(backbone: torch.nn.Module, batch: int, img_size: int, amp: bool) -> BackboneActivations:
    """Forward+backward of ``backbone`` (on the meta device or real) on fake tensors; see the module docstring.

    The loss is a sum of the outputs, so every output gets a gradient as from a head. Parameters' gradients are
    excluded from the peak (they are counted with the trainable parameters).
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=False)
    to_fake(backbone, mode)
    backbone.train()
    tracker = LiveTensorMemory()
    grads = 0
    with mode:
        x = torch.empty(batch, 3, img_size, img_size)
        with tracker:
            with _autocast(amp):
                outputs = backbone(x)
            saved = tracker.live
            loss = sum(o.float().sum() for o in outputs)
            loss.backward()
        grads = _tensor_bytes([p for p in backbone.parameters() if p.requires_grad])
    return BackboneActivations(saved=saved, peak=max(tracker.peak - grads, saved))


def _head_batch(batch: int, size: int, num_classes: int) -> list:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    generator = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        # Eight rectangular regions of distinct classes: a street scene's handful of stuff and thing classes.
        label = torch.zeros(1, size, size, dtype=torch.long)
        for k in range(8):
            y, x = torch.randint(0, size - size // 4, (2,), generator=generator).tolist()
            label[:, y: y + size // 4, x: x + size // 4] = k % num_classes
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return samples


def head_peak_bytes(head_cfg: dict, channels: Sequence[int], strides: Sequence[int], batch: int, size: int,
                    amp: bool, train_cfg: Any = None, registry: Any = None) -> int:
    """Measured peak (bytes, head parameters excluded) of the decode head's loss forward+backward on real CPU
    tensors for ``batch`` images of ``size``², fed with random backbone maps of ``channels`` at ``strides``."""
    from mmengine.registry import DefaultScope

    if registry is None:
        from mmseg.registry import MODELS as registry
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(registry.scope):  # not the scope another run left current
        head = registry.build(head_cfg).train()
    num_classes = getattr(head, "num_classes", 19)
    features = [torch.randn(batch, c, size // s, size // s, requires_grad=True) for c, s in zip(channels, strides)]
    samples = _head_batch(batch, size, num_classes)
    tracker = LiveTensorMemory()
    with tracker:
        with _autocast(amp):
            losses = head.loss(features, samples, train_cfg)
        total = sum(v.float().sum() for k, v in losses.items() if "loss" in k and isinstance(v, torch.Tensor))
        total.backward()
    return tracker.peak


def fit_head_model(samples: Sequence[tuple[int, int, int]]) -> tuple[float, float, float]:
    """``(a, b, c)`` of ``peak = a + b·batch·pixels + c·batch`` through three ``(batch, size, peak)`` probes."""
    rows = torch.tensor([[1.0, b * s * s, b] for b, s, _ in samples], dtype=torch.float64)
    peaks = torch.tensor([p for _, _, p in samples], dtype=torch.float64)
    a, b, c = torch.linalg.solve(rows, peaks).tolist()
    return a, b, c


@dataclass
class MemoryPlan:
    """Estimated peak training memory of one config (bytes)."""

    name: str
    batch: int
    img_size: int
    with_cp: bool
    amp: bool
    weights: int
    trainable: int
    gradients: int
    optimizer: int
    backbone: BackboneActivations
    head: int
    head_fit: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))

    @property
    def activations(self) -> int:
        """Activations and temporaries at the step's peak (backbone and head)."""
        return max(self.backbone.saved + self.head, self.backbone.peak)

    @property
    def peak(self) -> int:
        return self.weights + self.optimizer + self.gradients + self.activations

    def fits(self, gpu_gb: float, headroom: float = 0.1) -> bool:
        """Whether the peak fits a GPU of ``gpu_gb`` GB (10⁹ bytes as sold) leaving ``headroom`` of it free."""
        return self.peak <= gpu_gb * 1e9 * (1 - headroom)


def _optimizer_moments(cfg: Any) -> int:
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer") or {}
    kind = str(optimizer.get("type", "AdamW"))
    if kind in ("AdamW", "Adam"):
        return 2
    if kind == "SGD":
        return 1 if optimizer.get("momentum", 0) else 0
    raise ConfigError(f"the memory planner knows the state of AdamW, Adam and SGD, not `optim_wrapper.optimizer."
                      f"type={kind!r}`; plan with AdamW by --cfg-options optim_wrapper.optimizer.type=AdamW.")


def _registry(cfg: Any):
    scope = cfg.get("default_scope", "mmseg")
    return __import__(f"{scope}.registry", fromlist=["MODELS"]).MODELS


def build_on_meta(cfg: Any) -> torch.nn.Module:
    """The config's model on the meta device, without its pretrained weights (nothing is read or allocated)."""
    from mmengine.registry import DefaultScope

    model_cfg = cfg.model.copy()
    if model_cfg.get("backbone") is not None:
        model_cfg.backbone.init_cfg = None
    scope = cfg.get("default_scope", "mmseg")
    with DefaultScope.overwrite_default_scope(scope), torch.device("meta"):
        return _registry(cfg).build(model_cfg)


def _tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _model_bytes(model: torch.nn.Module) -> int:
    return _tensor_bytes([*model.parameters(), *model.buffers()])


def build_ema(cfg: Any, model: torch.nn.Module) -> torch.nn.Module | None:
    """The average the config's EMA hook builds for ``model`` (None without an EMA hook): the hook itself is
    built and its ``before_run`` run, so its defaults and options are the ones a training run gets. Build it
    where the runner does, before the weights are loaded and cast (mmengine's average copies them as built)."""
    from types import SimpleNamespace

    from mmengine.hooks import EMAHook
    from mmengine.registry import HOOKS

    import soma.engine  # noqa: F401  (registers FrozenAwareEMAHook and TrainableExponentialMovingAverage)

    for hook_cfg in cfg.get("custom_hooks") or []:
        hook_class = HOOKS.get(hook_cfg.get("type"))
        if isinstance(hook_class, type) and issubclass(hook_class, EMAHook):
            hook = HOOKS.build(dict(hook_cfg))
            hook.before_run(SimpleNamespace(model=model))
            return hook.ema_model
    return None


def ema_bytes(model: torch.nn.Module, averaged: torch.nn.Module | None) -> int:
    """Bytes the average ``averaged`` keeps besides ``model``: its tensors that are not the model's own (all of
    them for mmengine's ``ExponentialMovingAverage``; the trained ones for ``TrainableExponentialMovingAverage``)."""
    if averaged is None:
        return 0
    own = {id(t) for t in [*model.parameters(), *model.buffers()]}
    return _tensor_bytes([t for t in [*averaged.module.parameters(), *averaged.module.buffers()] if id(t) not in own])


def crop_size(cfg: Any) -> int:
    """The training crop: the data preprocessor's padded ``size`` if set, else the backbone's ``img_size``."""
    size = (cfg.model.get("data_preprocessor") or {}).get("size")
    return int(size[0]) if size else int(cfg.model.backbone.get("img_size", 512))


def set_crop_size(cfg: Any, img_size: int) -> None:
    """Make ``cfg`` train on ``img_size``² crops: the backbone's size and the preprocessor's padding."""
    cfg.model.backbone.img_size = img_size
    if (cfg.model.get("data_preprocessor") or {}).get("size"):
        cfg.model.data_preprocessor.size = (img_size, img_size)


def plan_memory(cfg: Any, batch: int | None = None, img_size: int | None = None, with_cp: bool | None = None,
                amp: bool | None = None, name: str = "") -> MemoryPlan:
    """Estimate the peak training memory of ``cfg`` (an mmengine ``Config``); see the module docstring.

    Args:
        cfg: the config (not modified).
        batch: images per step. Default: ``train_dataloader.batch_size``.
        img_size: square crop. Default: the backbone's ``img_size``.
        with_cp: gradient checkpointing of the trained blocks. Default: the config's.
        amp: mixed precision (bfloat16 autocast). Default: the config uses ``AmpOptimWrapper``.
        name: label of the plan.

    Raises:
        ConfigError: a config without ``model.backbone``/``model.decode_head``, or an optimizer whose state the
            planner does not know.
    """
    cfg = copy.deepcopy(cfg)
    model_cfg = cfg.model
    if model_cfg.get("backbone") is None or model_cfg.get("decode_head") is None:
        raise ConfigError("the memory planner needs a segmentor config with `model.backbone` and "
                          "`model.decode_head` (detector configs are not supported yet).")
    if with_cp is not None:
        model_cfg.backbone.with_cp = with_cp
    img_size = img_size or crop_size(cfg)
    set_crop_size(cfg, img_size)
    batch = batch or (cfg.get("train_dataloader") or {}).get("batch_size", 1)
    if amp is None:
        amp = (cfg.get("optim_wrapper") or {}).get("type") == "AmpOptimWrapper" and \
            (cfg.optim_wrapper.get("dtype") or "auto") != "float32"
    moments = _optimizer_moments(cfg)
    model = build_on_meta(cfg)
    with torch.no_grad():  # the feature maps' channels and strides, from a meta forward
        maps = model.backbone.eval()(torch.empty(1, 3, img_size, img_size, device="meta"))
    averaged = build_ema(cfg, model)  # on the meta device too: nothing is allocated
    if hasattr(model.backbone, "cast_frozen_base"):  # a bfloat16 frozen base, as after init_weights()
        model.backbone.cast_frozen_base()
    weights = _model_bytes(model) + ema_bytes(model, averaged)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainable_bytes = 4 * trainable  # float32 gradients and optimizer moments
    backbone = backbone_activations(model.backbone, batch, img_size, amp)
    channels = [m.shape[1] for m in maps]
    strides = [img_size // m.shape[-1] for m in maps]
    probes = [(b, s, head_peak_bytes(model_cfg.decode_head, channels, strides, b, s, amp,
                                     model_cfg.get("train_cfg"), _registry(cfg))) for b, s in HEAD_PROBES]
    a, b, c = fit_head_model(probes)
    head = int(max(a + b * batch * img_size**2 + c * batch, 0))
    return MemoryPlan(name=name, batch=batch, img_size=img_size, with_cp=bool(model_cfg.backbone.get("with_cp")),
                      amp=amp, weights=weights, trainable=trainable, gradients=trainable_bytes,
                      optimizer=moments * trainable_bytes, backbone=backbone, head=head, head_fit=(a, b, c))


def format_plans(plans: Sequence[MemoryPlan], gpus: Sequence[int] = GPUS_GB) -> str:
    """A Markdown table: one row per plan, GiB per part, and which GPUs (GB) it fits with 10 % headroom."""
    lines = ["| config | batch×crop | with_cp | weights | grads | optimizer | activations | peak | fits (GB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in plans:
        fits = ", ".join(str(g) for g in gpus if p.fits(g)) or "none"
        lines.append(f"| {p.name} | {p.batch}×{p.img_size}² | {'yes' if p.with_cp else 'no'} | "
                     f"{p.weights / GIB:.1f} | {p.gradients / GIB:.2f} | {p.optimizer / GIB:.2f} | "
                     f"{p.activations / GIB:.1f} | **{p.peak / GIB:.1f}** | {fits} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- measurement
def resident_bytes() -> int:
    """This process's resident set (Linux ``/proc/self/statm``; 0 where it does not exist)."""
    import os

    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0

@dataclass
class MeasuredPeak:
    """Measured memory of real training steps (bytes): weights, and the peak over the second step."""

    device: str
    weights: int
    step_peak: int  # weights + everything live at the peak of a steady-state step (optimizer state included)
    rss_growth: int | None = None  # CPU: resident-set growth over the first step (an independent, coarser check)
    seconds: float = 0.0  # CUDA: the measured (last) step; CPU: mean over the steps


def measure_peak(cfg: Any, batch: int, img_size: int, with_cp: bool | None = None, amp: bool = False,
                 device: str = "cpu", steps: int = 2) -> MeasuredPeak:
    """Run ``steps`` real training steps of ``cfg``'s model (random weights, AdamW) and measure the peak.

    On CPU the peak is followed by :class:`LiveTensorMemory` (every storage an op creates, exactly) and, as an
    independent check, by the process's resident set sampled every millisecond; on CUDA by
    ``torch.cuda.max_memory_allocated``. The last step is the steady state the plan estimates (optimizer state
    already allocated, gradients set to ``None`` before it).
    """
    import threading
    import time

    from mmengine.registry import DefaultScope

    cfg = copy.deepcopy(cfg)
    if with_cp is not None:
        cfg.model.backbone.with_cp = with_cp
    set_crop_size(cfg, img_size)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    # Built on the device itself: a 7B model is not first initialised on the CPU.
    with DefaultScope.overwrite_default_scope(cfg.get("default_scope", "mmseg")), torch.device(device):
        model = _registry(cfg).build(cfg.model).train()
    model.to(device)  # no copy; tells the data preprocessor where the inputs go
    averaged = build_ema(cfg, model)  # as the EMA hook does: before the weights are loaded and cast
    if hasattr(model.backbone, "cast_frozen_base"):  # random weights: no SVD, but the base stored as after it
        model.backbone.cast_frozen_base()
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 255, (3, img_size, img_size), generator=generator, dtype=torch.uint8)
              for _ in range(batch)]
    samples = _head_batch(batch, img_size, getattr(model.decode_head, "num_classes", 19))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    weights = _model_bytes(model) + ema_bytes(model, averaged)
    dtype = torch.bfloat16
    if amp and device == "cuda" and cfg.get("optim_wrapper"):
        from ..config.run import resolve_amp

        # The training precision (bf16 where the GPU has it) and mmcv's ops without bf16 kernels rerouted.
        dtype = getattr(torch, resolve_amp(cfg.optim_wrapper, device="cuda").get("dtype") or "bfloat16")
    autocast = torch.autocast(device, dtype=dtype) if amp else nullcontext()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        data = model.data_preprocessor(dict(inputs=images, data_samples=samples), True)
        with autocast:
            losses = model(**data, mode="loss")
        loss, _ = model.parse_losses(losses)
        loss.backward()
        optimizer.step()

    rss_peak, sampling = [0], [True]

    def sample() -> None:
        while sampling[0]:
            rss_peak[0] = max(rss_peak[0], resident_bytes())
            time.sleep(0.001)

    if device == "cuda":
        for _ in range(steps - 1):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        return MeasuredPeak(device, weights, torch.cuda.max_memory_allocated(), None, time.perf_counter() - start)
    start = time.perf_counter()
    tracker = LiveTensorMemory()
    rss_before = resident_bytes()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with tracker:
        step()
        sampling[0] = False
        thread.join()
        for _ in range(steps - 1):
            tracker.reset_peak()
            step()
    return MeasuredPeak(device, weights, weights + tracker.peak, rss_peak[0] - rss_before,
                        (time.perf_counter() - start) / steps)
