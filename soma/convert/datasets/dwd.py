"""Arrange the downloaded Diverse Weather Dataset (DWD) as ``data/dwd/<domain>/VOC2007/...`` by symlinks.

    python tools/convert_datasets/dwd.py DOWNLOAD_DIR [--out data/dwd]

The five domains are distributed as separate archives whose top folders are not named alike (for example
``Night-Sunny/VOC2007`` next to ``dusk_rainy/VOC2007``, or wrapped once more, ``Daytime_Sunny/daytime_clear/VOC2007``).
This finds each domain's ``VOC2007`` folder up to three levels below DOWNLOAD_DIR, maps the folder names to the
names :class:`soma.datasets.DWDDataset` uses (``daytime_clear``, ``daytime_foggy``, ``dusk_rainy``,
``night_rainy``, ``night_sunny``) and links ``OUT/<domain>`` to it. Nothing is copied or rewritten, so a re-run
only reports that every link is in place; a folder already in the right place is left alone.
"""
from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .common import LayoutError, Summary, run_cli

DATASET = "DWD"
DOWNLOAD = "the Diverse Weather Dataset page of Wu & Deng, CVPR 2022 (single-domain generalised detection)"
DOMAINS = ("daytime_clear", "daytime_foggy", "dusk_rainy", "night_rainy", "night_sunny")
# Folder names seen in the distributed archives (normalised: lower case, '_' for '-' and ' ') → our domain names.
ALIASES = {"daytime_clear": "daytime_clear", "daytime_sunny": "daytime_clear", "day_clear": "daytime_clear",
           "daytime_foggy": "daytime_foggy", "day_foggy": "daytime_foggy", "dusk_rainy": "dusk_rainy",
           "night_rainy": "night_rainy", "night_sunny": "night_sunny", "night_clear": "night_sunny"}


def _domain_of(folder: Path) -> str | None:
    """Our domain name for a folder name such as ``Night-Sunny`` or ``Daytime_Sunny``, or ``None``."""
    return ALIASES.get(re.sub(r"[-\s]+", "_", folder.name.strip().lower()))


def find_domains(download: Path) -> dict[str, Path]:
    """Each domain's folder (the one holding ``VOC2007/Annotations``) under ``download``.

    Raises:
        LayoutError: ``download`` is not a folder, a domain is missing or found twice.
    """
    if not download.is_dir():
        raise LayoutError(f"expected the downloaded DWD folders in {download} (download from {DOWNLOAD}); the "
                          "folder does not exist.")
    found: dict[str, list[Path]] = {}
    for depth in range(3):
        for annotation_dir in sorted(download.glob("/".join(["*"] * depth + ["VOC2007", "Annotations"]))):
            holder = annotation_dir.parent.parent
            # The VOC2007 folder's parent names the domain; an archive wrapper above it may name it instead.
            domain = _domain_of(holder) or (_domain_of(holder.parent) if holder != download else None)
            # A link made by an earlier run into the download folder itself is the same folder, not a second one.
            if domain is not None and holder.resolve() not in {p.resolve() for p in found.get(domain, [])}:
                found.setdefault(domain, []).append(holder)
    twice = {d: [str(p) for p in paths] for d, paths in found.items() if len(paths) > 1}
    if twice:
        raise LayoutError(f"found more than one folder for DWD domains {twice}; keep one per domain.")
    missing = [d for d in DOMAINS if d not in found]
    if missing:
        raise LayoutError(f"expected the DWD domains {list(DOMAINS)} as <domain>/VOC2007/Annotations under {download} "
                          f"(download from {DOWNLOAD}); missing {missing}, found {sorted(found)}.")
    for domain, (holder,) in found.items():
        for sub in ("JPEGImages", "ImageSets/Main"):
            if not (holder / "VOC2007" / sub).is_dir():
                raise LayoutError(f"DWD domain {domain}: expected {holder / 'VOC2007' / sub}; is the archive "
                                  "fully extracted?")
    for split in ("train", "test"):  # the source domain's lists define the training and source-test sets
        if not (found["daytime_clear"][0] / "VOC2007/ImageSets/Main" / f"{split}.txt").is_file():
            raise LayoutError(f"DWD domain daytime_clear: expected the image list "
                              f"{found['daytime_clear'][0] / 'VOC2007/ImageSets/Main'}/{split}.txt.")
    return {domain: paths[0] for domain, paths in found.items()}


def link_dwd(root: str | Path, out: str | Path = "data/dwd") -> Summary:
    """Link ``out/<domain>`` to each domain's folder found under ``root``.

    Args:
        root: the folder the DWD archives were extracted into.
        out: the ``data_root`` of the DWD configs.

    Returns:
        How many links were made and how many domains were already in place.

    Raises:
        LayoutError: a domain is missing in ``root``, or ``out/<domain>`` exists and is something else.
    """
    out = Path(out)
    domains = find_domains(Path(root))
    out.mkdir(parents=True, exist_ok=True)
    made = in_place = 0
    for domain, folder in sorted(domains.items()):
        target = out / domain
        if target.exists() and target.resolve() == folder.resolve():
            in_place += 1
            continue
        if target.exists() or target.is_symlink():
            raise LayoutError(f"{target} exists and is not the DWD {domain} folder {folder}; move it away and re-run.")
        temporary = out / f".{domain}.link"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(folder.resolve(), target_is_directory=True)
        os.replace(temporary, target)  # the link appears under its final name in one step
        made += 1
    summary = Summary(DATASET, converted=made, skipped=in_place)
    print(summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder the DWD archives were extracted into")
    parser.add_argument("--out", type=Path, default=Path("data/dwd"), help="data_root of the configs (data/dwd)")
    return run_cli(link_dwd, parser, argv)

