"""Config mistakes named before anything is built.

* :func:`load_config`: a syntax error names the config file (or the ``_base_`` file) and the line;
* :func:`check_config_types`: mmengine reports an unknown type as a bare ``KeyError`` deep inside the Runner,
  after minutes of dataset indexing; here the whole config is walked first and the key path and the closest
  registered names are given;
* :func:`check_legacy_keys`: keys of mmseg 0.x / mmcv 1.x configs that mmengine silently ignores
  (``resume_from``, ``total_iters``, ``workflow``, ...) are refused with their modern spelling;
* :func:`check_num_classes`: the head's ``num_classes`` against the classes of the dataset(s);
* :func:`check_component_options`: options that a SoMA metric, hook or dataset does not take (mmseg's metrics drop
  them silently), with the closest valid names;
* :func:`check_domain_datasets`: a per-domain metric needs datasets whose samples carry their ``domain``;
* :func:`check_mean_over`: the domains a per-domain metric averages must be domains of its datasets;
* :func:`warn_patch_padding`: a crop that is not a multiple of the ViT patch is padded; said once, with the cost.
"""
from __future__ import annotations

import ast
import difflib
import inspect
import logging
import math
import os
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import Registry

from .checkpoint import CONFIG_SUFFIXES
from .dataset_config import leaf_datasets
from .errors import ConfigError, UserError

_SCOPES = ("mmengine", "mmseg", "mmdet")


class UnknownTypeError(UserError, KeyError):
    """A config names a ``type`` that no registry knows."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def _registries(module: Any) -> Iterator[Registry]:
    for value in vars(module).values():
        if isinstance(value, Registry):
            yield value


@lru_cache(maxsize=1)
def registered_type_names() -> dict[str, frozenset[str]]:
    """Names registered per scope (``mmengine``, ``mmseg``, ``mmdet``), after importing all their modules."""
    import mmdet.registry
    import mmengine.registry
    import mmseg.registry
    from mmdet.utils import register_all_modules as register_det
    from mmseg.utils import register_all_modules as register_seg

    from soma import register_all_modules

    register_all_modules()

    register_seg(init_default_scope=False)
    register_det(init_default_scope=False)
    import mmdet.visualization  # noqa: F401  (not imported by register_all_modules)
    import mmseg.visualization  # noqa: F401
    names: dict[str, frozenset[str]] = {}
    for scope, module in zip(_SCOPES, (mmengine.registry, mmseg.registry, mmdet.registry)):
        names[scope] = frozenset(n for reg in _registries(module) for n in reg.module_dict)
    return names


def _iter_typed(node: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(key path, mapping)`` of every mapping with a ``type`` under ``node``, outer ones first."""
    if isinstance(node, Mapping):
        if isinstance(node.get("type"), (str, type)):
            yield path, node
        for key, value in node.items():
            yield from _iter_typed(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _iter_typed(value, f"{path}[{index}]")


def _iter_types(node: Any, path: str) -> Iterator[tuple[str, str]]:
    for where, typed in _iter_typed(node, path):
        if isinstance(typed["type"], str):
            yield f"{where}.type" if where else "type", typed["type"]


def _is_mmcv_op(key_path: str, type_name: str) -> bool:
    """``nms=dict(type="soft_nms")`` and ``roi_layer=dict(type="RoIAlign")`` name ``mmcv.ops`` members, not registry
    entries (mmcv's ``batched_nms`` and mmdet's RoI extractors look them up there)."""
    if not key_path.endswith(("nms.type", "roi_layer.type")):
        return False
    import mmcv.ops

    return hasattr(mmcv.ops, type_name)


def _check_peft_type(key_path: str, type_name: str) -> None:
    from soma.peft import PEFT_METHODS

    if type_name not in PEFT_METHODS:
        close = difflib.get_close_matches(type_name, sorted(PEFT_METHODS), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownTypeError(f"unknown adapter method '{type_name}' at `{key_path}`; soma.peft knows "
                               f"{sorted(PEFT_METHODS)}.{hint}")


def check_config_types(cfg: Any) -> None:
    """Raise :class:`UnknownTypeError` for the first ``type`` name no registry knows.

    A name ``"scope.Name"`` is looked up in that scope; a plain name in any of mmengine, mmseg, mmdet (their
    registries fall back to mmengine's, and our modules are registered in mmseg's and mmdet's).

    Args:
        cfg: an mmengine ``Config`` (or any nested mapping).
    """
    if not isinstance(cfg, Mapping) and hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()  # mmengine.Config wraps its ConfigDict
    names = registered_type_names()
    known_anywhere = frozenset().union(*names.values())
    for key_path, type_name in _iter_types(cfg, ""):
        if _is_mmcv_op(key_path, type_name):
            continue
        if key_path == "peft.type" or key_path.endswith(".peft.type"):
            _check_peft_type(key_path, type_name)  # an adapter method: soma.peft's registry, not OpenMMLab's
            continue
        if ".peft." in f".{key_path}":
            continue  # inside an adapter method's options: its own class names (HFPeft: peft's LoraConfig, ...)
        scope, _, bare = type_name.rpartition(".")
        candidates = names.get(scope, frozenset()) | names["mmengine"] if scope else known_anywhere
        if scope and scope not in names:
            continue  # a dotted import path or a scope we do not index; leave it to mmengine
        if bare in candidates:
            continue
        close = difflib.get_close_matches(bare, sorted(candidates), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownTypeError(
            f"unknown type '{type_name}' at `{key_path}`: it is not registered in "
            f"{scope or 'mmengine, mmseg or mmdet'}.{hint} SoMA's own types are registered by "
            "`custom_imports` in the config (see soma.OPENMMLAB_PACKAGES)."
        )


# ---------------------------------------------------------------------------------------------- options
# Keys a component's config may hold besides its constructor's arguments (mmengine takes them off first).
_RUNNER_KEYS = {"hook": ("priority",)}


def accepted_options(cls: type) -> tuple[str, ...]:
    """The keyword arguments ``cls(...)`` takes, in signature order: those of its ``__init__`` and, while an
    ``__init__`` takes ``**kwargs``, those of the next ``__init__`` in the MRO (the one it hands them to).

    Assumes that an ``__init__`` with ``**kwargs`` passes them on; one that drops them (mmseg's ``IoUMetric``) must
    not sit in the chain of a class checked with this.
    """
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object:
            break
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]  # without self
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return tuple(names)


@lru_cache(maxsize=1)
def soma_components() -> dict[str, tuple[str, type]]:
    """``name -> (kind, class)`` of the metrics, hooks and datasets SoMA registers (kind: ``"metric"``,
    ``"hook"``, ``"dataset"``)."""
    import mmdet.registry
    import mmengine.registry
    import mmseg.registry

    registered_type_names()  # imports and registers every module
    kinds = {"metric": "METRICS", "hook": "HOOKS", "dataset": "DATASETS"}
    components: dict[str, tuple[str, type]] = {}
    for kind, attribute in kinds.items():
        for module in (mmseg.registry, mmdet.registry, mmengine.registry):
            for name, cls in getattr(module, attribute).module_dict.items():
                if cls.__module__.partition(".")[0] == "soma":
                    components.setdefault(name, (kind, cls))
    return components


def check_component_options(cfg: Any) -> None:
    """Refuse options that a SoMA metric, hook or dataset does not take, naming the closest valid ones.

    Options of the parent classes the component hands its ``**kwargs`` to count (``data_root``, ``pipeline``,
    ... of the datasets). Without this check an unknown option is dropped without a word (mmseg's ``IoUMetric``
    takes ``**kwargs``) or fails only when the component is built, after the model.

    Args:
        cfg: an mmengine ``Config`` (or any nested mapping); every ``type=`` under it is looked at.

    Raises:
        ConfigError: a component's config has a key its class does not take.
    """
    from soma.peft.registry import refuse_unknown_options

    if not isinstance(cfg, Mapping) and hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    components = soma_components()
    for where, node in _iter_typed(cfg, ""):
        kind = node["type"]
        name = kind.rpartition(".")[2] if isinstance(kind, str) else kind.__name__
        if name not in components or (isinstance(kind, type) and kind is not components[name][1]):
            continue
        component_kind, cls = components[name]
        valid = accepted_options(cls) + _RUNNER_KEYS.get(component_kind, ())
        given = [key for key in node if key not in ("type", "_scope_", "_delete_")]  # the latter two: mmengine's
        refuse_unknown_options(name, given, valid, where=where or "the config", error=ConfigError)


# ---------------------------------------------------------------------------------------------- parsing
def _config_files(path: Path, seen: list[Path]) -> list[Path]:
    """``path`` and its ``_base_`` files, recursively, in the order mmengine reads them (bases first)."""
    if path in seen or path.suffix != ".py" or not path.is_file():
        return seen
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError:
        seen.append(path)
        return seen
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                continue
            for base in [bases] if isinstance(bases, str) else bases:
                if isinstance(base, str):
                    _config_files((path.parent / base).resolve(), seen)
    seen.append(path)
    return seen


def _where(files: list[Path], exc: BaseException) -> str:
    """``'<file>' line N`` of the config line that raised ``exc`` while mmengine executed it."""
    if isinstance(exc, SyntaxError):
        for file in files:
            try:
                ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
            except SyntaxError as found:
                return f"'{file}' line {found.lineno}: {found.msg}" + (f": {found.text.strip()}" if found.text else "")
        return f"'{files[-1]}': {exc.msg}"
    # mmengine runs a temporary copy of each file: take the line number of the last frame outside the library.
    import mmengine

    library = (str(Path(mmengine.__file__).parent), str(Path(__file__).parent))
    lineno = next((tb.tb_lineno for tb in reversed(list(_frames(exc.__traceback__)))
                   if not tb.tb_frame.f_code.co_filename.startswith(library)), None)
    name = getattr(exc, "name", None)
    for file in reversed(files):
        lines = file.read_text(encoding="utf-8").splitlines()
        if lineno and lineno <= len(lines) and (name is None or name in lines[lineno - 1]):
            return f"'{file}' line {lineno}: {type(exc).__name__}: {exc}: {lines[lineno - 1].strip()}"
    return f"'{files[-1]}': {type(exc).__name__}: {exc}"


def _frames(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def load_config(path: str | os.PathLike) -> Config:
    """``Config.fromfile`` whose errors in the config's own code name the file and line (mmengine reports a
    syntax error as ``File "<unknown>"`` and an undefined name without any file).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: ``path`` is no config file (e.g. a checkpoint given in its place), or it or one of its
            ``_base_`` files is not valid Python, or fails when executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file '{path}' does not exist.")
    if path.suffix not in CONFIG_SUFFIXES:  # mmengine's OSError would name neither the file nor the mix-up
        is_checkpoint = path.suffix in (".pth", ".pt", ".bin", ".safetensors")
        swapped = (" It looks like a checkpoint: were CONFIG and CHECKPOINT swapped? The config comes first (e.g. "
                   "tools/test.py CONFIG CHECKPOINT).") if is_checkpoint else ""
        raise ConfigError(f"'{path}' is not a config file (a config is a {', '.join(CONFIG_SUFFIXES)} file).{swapped}")
    try:
        return Config.fromfile(str(path))
    except (SyntaxError, NameError, TypeError, AttributeError, ImportError, IndexError, ZeroDivisionError) as exc:
        raise ConfigError(f"config {_where(_config_files(path.resolve(), []), exc)}") from None


# ---------------------------------------------------------------------------------------------- legacy keys
# Keys of mmseg 0.x / mmcv 1.x configs that mmengine's Runner ignores without a word, and what replaces them.
LEGACY_KEYS = {
    "resume_from": "`load_from = '<checkpoint>'` with `resume = True` (or tools/train.py --resume)",
    "auto_resume": "tools/train.py --resume (or `resume = True`)",
    "total_iters": "`train_cfg = dict(type='IterBasedTrainLoop', max_iters=N, val_interval=...)`",
    "total_epochs": "`train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=N)`",
    "runner": "`train_cfg = dict(type='IterBasedTrainLoop', max_iters=N, val_interval=...)`",
    "workflow": "`train_cfg = dict(..., val_interval=N)` (validation every N iterations)",
    "evaluation": "`train_cfg = dict(..., val_interval=N)` and `val_evaluator = dict(type=...)`",
    "checkpoint_config": "`default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=N))`",
    "log_config": "`default_hooks = dict(logger=dict(type='LoggerHook', interval=N))`",
    "lr_config": "`param_scheduler = [dict(type='PolyLR', ...)]`",
    "momentum_config": "`param_scheduler = [...]` (a scheduler with `param_name='momentum'`)",
    "optimizer_config": "`optim_wrapper = dict(optimizer=..., clip_grad=...)`",
    "dist_params": "`env_cfg = dict(dist_cfg=dict(backend=...))`",
    "gpu_ids": "the GPU count of tools/dist_train.sh CONFIG GPUS",
}


def check_legacy_keys(cfg: Config, source: str | os.PathLike = "the config") -> None:
    """Refuse keys that mmengine ignores but older mmseg configs used, naming the modern spelling.

    ``optimizer`` and ``data`` count only in their old roles: ``optimizer`` without an ``optim_wrapper``, and
    ``data`` holding ``samples_per_gpu``/``train``.

    Raises:
        ConfigError: a legacy key is present.
    """
    found = {key: modern for key, modern in LEGACY_KEYS.items() if key in cfg}
    if "optimizer" in cfg and not cfg.get("optim_wrapper"):
        found["optimizer"] = "`optim_wrapper = dict(type='OptimWrapper', optimizer=dict(...))`"
    data = cfg.get("data")
    if isinstance(data, Mapping) and ({"samples_per_gpu", "workers_per_gpu", "train"} & set(data)):
        found["data"] = "`train_dataloader`, `val_dataloader` and `test_dataloader` (each with its `dataset`)"
    if found:
        listed = "; ".join(f"`{key}` → {modern}" for key, modern in found.items())
        raise ConfigError(f"{source} uses keys of older mmseg/mmcv configs that the current Runner ignores "
                          f"(the run would silently do something else): {listed}.")


# ---------------------------------------------------------------------------------------------- classes
def _dataset_classes(dataset: Mapping[str, Any], scope: str) -> tuple[str, int] | None:
    """``(dataset type name, number of classes)`` of a dataset config, or ``None`` if it cannot be told."""
    import mmdet.registry
    import mmseg.registry

    classes = (dataset.get("metainfo") or {}).get("classes")
    kind = dataset.get("type")
    if classes is None:
        registry = mmdet.registry.DATASETS if scope == "mmdet" else mmseg.registry.DATASETS
        cls = registry.get(kind) if isinstance(kind, str) else kind
        classes = (getattr(cls, "METAINFO", None) or {}).get("classes") if cls is not None else None
    if not classes:
        return None
    return str(getattr(kind, "__name__", kind)), len(classes)


def _heads(model: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name in ("decode_head", "auxiliary_head", "bbox_head"):
        heads = model.get(name)
        for index, head in enumerate(heads if isinstance(heads, (list, tuple)) else [heads]):
            if isinstance(head, Mapping) and isinstance(head.get("num_classes"), int):
                yield (f"model.{name}[{index}]" if isinstance(heads, (list, tuple)) else f"model.{name}"), head


def check_num_classes(cfg: Config) -> None:
    """The heads' ``num_classes`` (and Mask2Former's ``class_weight`` length) against the datasets' classes.

    A head with more classes than the dataset trains and evaluates without an error but scores wrong numbers
    (predicted ids the dataset does not have); one with fewer fails deep in the loss.

    Raises:
        ConfigError: a head's class count differs from a train/val/test dataset's.
    """
    model = cfg.get("model")
    if not isinstance(model, Mapping):
        return
    scope = cfg.get("default_scope", "mmseg")
    for key, head in _heads(model):
        count = head["num_classes"]
        for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
            loader_cfg = cfg.get(loader)
            for dataset in leaf_datasets(loader_cfg.get("dataset") if isinstance(loader_cfg, Mapping) else None):
                found = _dataset_classes(dataset, scope)
                if found and found[1] != count:
                    raise ConfigError(f"{key}.num_classes is {count} but the {loader} dataset ({found[0]}) has "
                                      f"{found[1]} classes; set `{key}.num_classes={found[1]}` (predictions of "
                                      "ids the dataset does not have would be scored as wrong numbers).")
        loss = head.get("loss_cls")
        weights = loss.get("class_weight") if isinstance(loss, Mapping) else None
        if "Mask2Former" in str(head.get("type")) and isinstance(weights, (list, tuple)) \
                and len(weights) != count + 1:
            raise ConfigError(f"{key}.loss_cls.class_weight has {len(weights)} entries but Mask2Former needs "
                              f"num_classes + 1 = {count + 1} (one per class and the last for 'no object').")


# ---------------------------------------------------------------------------------------------- domains
# Metrics that score each sample by ``data_sample.metainfo["domain"]``.
DOMAIN_METRICS = ("DomainIoUMetric", "DomainVOCMetric")


def _dataset_class(dataset: Mapping[str, Any], scope: str) -> type | None:
    import mmdet.registry
    import mmseg.registry

    kind = dataset.get("type")
    if not isinstance(kind, str):
        return kind if isinstance(kind, type) else None
    kind_scope, _, bare = kind.rpartition(".")
    registry = mmdet.registry.DATASETS if (kind_scope or scope) == "mmdet" else mmseg.registry.DATASETS
    return registry.get(bare if kind_scope in ("mmseg", "mmdet") else kind)


def check_domain_datasets(cfg: Config) -> None:
    """A per-domain metric (``DomainIoUMetric``, ``DomainVOCMetric``) over datasets that tag their samples.

    Those metrics read each sample's ``domain``, which SoMA's datasets write (:mod:`soma.datasets.domain`); over
    any other dataset a run would train for its whole schedule and fail at the first evaluation.

    Raises:
        ConfigError: ``val_evaluator``/``test_evaluator`` is a per-domain metric and a dataset of
            ``val_dataloader``/``test_dataloader`` does not derive from ``soma.datasets.DomainDatasetMixin``.
    """
    from soma.datasets.domain import DomainDatasetMixin

    scope = cfg.get("default_scope", "mmseg")
    for loader, evaluator_key in (("val_dataloader", "val_evaluator"), ("test_dataloader", "test_evaluator")):
        evaluators = cfg.get(evaluator_key)
        evaluators = evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]
        metrics = [str(e.get("type")).rpartition(".")[2] for e in evaluators if isinstance(e, Mapping)]
        metric = next((m for m in metrics if m in DOMAIN_METRICS), None)
        loader_cfg = cfg.get(loader)
        if metric is None or not isinstance(loader_cfg, Mapping):
            continue
        for dataset in leaf_datasets(loader_cfg.get("dataset")):
            cls = _dataset_class(dataset, scope)
            if cls is not None and not issubclass(cls, DomainDatasetMixin):
                raise ConfigError(
                    f"`{evaluator_key}` is {metric}, which scores each sample by the `domain` its dataset gives it, "
                    f"but the {loader} dataset {getattr(cls, '__name__', cls)} gives none: use a SoMA dataset "
                    "(DGSegDataset or a subclass such as DGCityscapesDataset for segmentation, DWDDataset for "
                    "detection; set its `domain=`), or a metric without domains (IoUMetric, VOCMetric).")


def _evaluators(cfg: Config, key: str) -> list[Mapping[str, Any]]:
    evaluators = cfg.get(key)
    return [e for e in (evaluators if isinstance(evaluators, (list, tuple)) else [evaluators])
            if isinstance(e, Mapping)]


def _config_domains(loader_cfg: Any, scope: str) -> list[str] | None:
    """The domains of a loader's datasets, from their configs; ``None`` where one cannot be told."""
    from soma.datasets.domain import DomainDatasetMixin

    domains = []
    for dataset in leaf_datasets(loader_cfg.get("dataset") if isinstance(loader_cfg, Mapping) else None):
        cls = _dataset_class(dataset, scope)
        domain = cls.domain_of(dataset) if isinstance(cls, type) and issubclass(cls, DomainDatasetMixin) else None
        if domain is None:
            return None
        domains.append(domain)
    return list(dict.fromkeys(domains)) or None


def check_mean_over(cfg: Config) -> None:
    """The domains a per-domain metric's ``mean_over`` names against those of its datasets.

    The metric can tell only once it has scored every sample, at the end of the first validation or test; here
    the domains follow from the dataset configs (``domain_of`` of SoMA's datasets). Metrics over a dataset whose
    domain cannot be told without building it are left to the metric.

    Raises:
        ConfigError: ``mean_over`` is not a list, or names a domain (or ``DomainIoUMetric`` group) the datasets of
            ``val_dataloader``/``test_dataloader`` do not have.
    """
    from soma.peft.registry import refuse_unknown_options

    scope = cfg.get("default_scope", "mmseg")
    for loader, evaluator_key in (("val_dataloader", "val_evaluator"), ("test_dataloader", "test_evaluator")):
        for evaluator in _evaluators(cfg, evaluator_key):
            mean_over = evaluator.get("mean_over")
            if str(evaluator.get("type")).rpartition(".")[2] not in DOMAIN_METRICS or mean_over is None:
                continue
            if not isinstance(mean_over, (list, tuple)):  # a string would be averaged character by character
                example = f"; write [{mean_over!r}] for one domain" if isinstance(mean_over, str) else ""
                raise ConfigError(f"`{evaluator_key}.mean_over` must be a list of domain names (or None for every "
                                  f"domain), got {mean_over!r}{example}.")
            domains = _config_domains(cfg.get(loader), scope)
            if domains is None:
                continue
            groups = [g for g in evaluator.get("groups") or {} if g not in domains]
            refuse_unknown_options(f"`{evaluator_key}.mean_over`", mean_over, domains + groups, noun="domain",
                                   error=ConfigError, hint=f" (the {loader} datasets' domains"
                                   + (" and the metric's groups)" if groups else ")"))


# ---------------------------------------------------------------------------------------------- patch size
_warned_padding: set[str] = set()


def _patch_size(backbone: Mapping[str, Any], scope: str) -> int | None:
    size = backbone.get("patch_size")
    if size is None:
        import mmdet.registry
        import mmseg.registry

        registry = mmdet.registry.MODELS if scope == "mmdet" else mmseg.registry.MODELS
        cls = registry.get(backbone.get("type")) if isinstance(backbone.get("type"), str) else None
        for klass in getattr(cls, "__mro__", ()):  # subclasses may take **kwargs: the default is further up
            parameter = inspect.signature(klass.__init__).parameters.get("patch_size")
            if parameter is not None:
                size = parameter.default
                break
    return size if isinstance(size, int) and size > 1 else None


def warn_patch_padding(cfg: Config) -> list[str]:
    """Warn (once per message) about crop sizes that are not a multiple of the backbone's patch size.

    The segmentor pads such inputs to the next multiple, so every image costs the compute of the padded size
    and part of each border patch is zeros. Returns the warnings given.
    """
    model = cfg.get("model")
    if not isinstance(model, Mapping) or not isinstance(model.get("backbone"), Mapping):
        return []
    patch = _patch_size(model["backbone"], cfg.get("default_scope", "mmseg"))
    if patch is None:
        return []
    sizes = {"model.data_preprocessor.size (the training crop)": (model.get("data_preprocessor") or {}).get("size"),
             "model.test_cfg.crop_size (the sliding window)": (model.get("test_cfg") or {}).get("crop_size")}
    warnings = []
    for where, size in sizes.items():
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) for s in size)):
            continue
        height, width = size
        padded = (math.ceil(height / patch) * patch, math.ceil(width / patch) * patch)
        if padded == (height, width):
            continue
        cost = padded[0] * padded[1] / (height * width) - 1
        message = (f"{where} {height}x{width} is not a multiple of the backbone's patch size {patch}: every input "
                   f"is padded to {padded[0]}x{padded[1]}, {cost:.1%} more pixels computed on zero padding; a "
                   f"multiple of {patch} (e.g. {padded[0]}x{padded[1]} or "
                   f"{height // patch * patch}x{width // patch * patch}) avoids it.")
        warnings.append(message)
        if message not in _warned_padding:
            _warned_padding.add(message)
            print_log(message, logger="current", level=logging.WARNING)
    return warnings
