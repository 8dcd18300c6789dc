"""Converters of released checkpoints and datasets into the formats this codebase reads.

* :mod:`soma.convert.models`: DINOv2, EVA-02 and DINOv3 weights (official, timm and transformers layouts) into
  the backbones' timm format, and the official SoMA release into a checkpoint of a config's model.
* :mod:`soma.convert.datasets`: each benchmark dataset, as distributed, into the layout of ``soma.datasets``.

The command lines are ``tools/convert_models/*.py`` and ``tools/convert_datasets/*.py``; each calls the ``main``
of the module of the same name here.
"""
