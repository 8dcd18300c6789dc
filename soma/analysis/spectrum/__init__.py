"""Singular-value spectra of a backbone's SoMA layers, the components SoMA adapts, and how far training moved them
(the library part of tools/analysis/spectrum.py).

Per adapted matrix (q, k and v of a fused qkv separately) and per block, :func:`analyse` gives

* ``||ΔW|| / ||W_adapted||``: the change of the weight relative to the rank-r part SoMA took over at
  initialisation (its r minor components; the r principal ones for ``init="principal"``), and
* ``||ΔW|| / ||W||``: the change relative to the whole pretrained weight,

where ``W`` is the pretrained weight as SoMA split it (residual + scale·BA of the initialised model built from
the config's ``init_cfg`` checkpoint) and ``ΔW`` the trained weight (residual + scale·BA of the checkpoint, or
its plain weight if merged by tools/merge_adapter.py) minus ``W``. With the residual frozen, ``ΔW`` is exactly
the change of the adapter. Everything is computed in float64 (Frobenius norms). :func:`write_report` draws
``spectrum_block{NN}.png`` per block, ``relative_change.png`` and the numbers in ``spectrum.csv``.

Modules: :mod:`.maths` (the spectra and changes), :mod:`.sources` (building the models from a config, a checkpoint or a
weight file), :mod:`.plots` (the PNGs) and :mod:`.files` (CSV, table and the report folder).
"""
from .files import format_table, spectrum_to_folder, write_csv, write_report
from .maths import MatrixSpectrum, SpectrumReport, analyse_models, analyse_state_dict
from .plots import plot_block, plot_changes
from .sources import analyse, analyse_input

__all__ = ["MatrixSpectrum", "SpectrumReport", "analyse", "analyse_input", "analyse_models", "analyse_state_dict",
           "format_table", "plot_block", "plot_changes", "spectrum_to_folder", "write_csv", "write_report"]
