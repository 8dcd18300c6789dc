"""Dataset converters: each prepares one dataset, as distributed, for the dataset classes in ``soma.datasets``.

    python tools/convert_datasets/gta5.py data/gta                 # labels/<stem>_labelTrainIds.png
    python tools/convert_datasets/synthia.py data/synthia          # GT/LABELS/<stem>_labelTrainIds.png
    python tools/convert_datasets/urbansyn.py data/urbansyn        # ss/ss_XXXX_labelTrainIds.png
    python tools/convert_datasets/cityscapes.py data/cityscapes    # gtFine/<split>/<city>/*_gtFine_labelTrainIds.png
    python tools/convert_datasets/mapillary.py data/mapillary      # half/val_img, half/val_label
    python tools/convert_datasets/acdc.py data/acdc                # gt/<cond>/<split>/<seq>/*_gt_labelTrainIds.png

Every converter takes ``--nproc N``, checks the input layout first, skips outputs that exist and writes atomically
(see ``common.py``). BDD100K needs no converter: its masks are already trainIds.
"""
