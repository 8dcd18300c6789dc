"""Write predictions for the ACDC test split, zipped in the form the ACDC benchmark server takes.

    python tools/acdc_submission.py CONFIG CHECKPOINT --out DIR [--data-root data/acdc]
        [--conditions fog night rain snow] [--device cuda:0] [--label-ids] [--force] [--non-strict]

ACDC's test labels are private: test scores come only from the server (https://acdc.vision.ee.ethz.ch/submit,
behind a login), which evaluates "all adverse conditions" (the 2,000 test images of the four conditions) or one
condition. This tool runs the config's test loop (mmengine's Runner, as tools/test.py) over every image of
``ROOT/rgb_anon/<cond>/test/<seq>/*_rgb_anon.png`` at the config's ACDC test resolution (its ``DGACDCDataset``
pipeline: Resize to 1920x1080, slide inference), its metric only writing the predictions
(``DomainIoUMetric(format_only=True, output_dir=...)``, mmseg's format), and writes, for each image
``NAME_rgb_anon.png`` (the work is done by soma/apis/acdc_submission.py):

* ``DIR/labelTrainIds/NAME_rgb_anon.png``: an 8-bit single-channel PNG of the input's size (1920x1080) holding the
  Cityscapes **trainIds** 0-18 of the prediction;
* ``DIR/acdc_test_submission.zip``: those files under one top-level ``labelTrainIds/`` folder, flat (ACDC's frame
  names, ``GOPRxxxx_frame_xxxxxx``, are unique across conditions; the tool checks this). Upload this file.

The server's own instructions are behind its login (we could not read them), so the format is the one of methods
whose published ACDC test scores came from that server:

* DAFormer / HRDA / MIC (L. Hoyer, ETH Zurich, the lab that made ACDC), README section on Cityscapes→ACDC test
  results: ``python -m tools.test CONFIG CKPT --test-set --format-only --eval-option imgfile_prefix=labelTrainIds
  to_label_id=False``, which writes trainIds (``to_label_id=False``: not Cityscapes label ids) as one
  ``<image name>.png`` per image in one flat ``labelTrainIds`` folder (https://github.com/lhoyer/HRDA,
  ``mmseg/datasets/cityscapes.py`` ``results2img``);
* Rein (https://github.com/w1oves/Rein, on the ACDC leaderboard; ``configs/_base_/datasets/
  dg_citys2acdc_1024x1024.py``): mmseg's ``IoUMetric(format_only=True)`` over the four test sets, which writes the
  same: trainId PNGs named ``<image name>.png`` in one flat folder;
* the lab's Dark Zurich server, same format family, matches predictions to its ground truth
  (``*_gt_labelTrainIds.png``) by the frame name and reports "Missing prediction for ground truth file ..."
  otherwise (https://github.com/W-zx-Y/DANNet/issues/4); its zips hold a top-level ``labelTrainIds/`` folder
  (next to ``confidence/`` and ``labelTrainIds_invalid/``, which only its uncertainty track scores).

``--label-ids`` writes Cityscapes labelIds (trainId → id through cityscapesscripts' table) under ``labelIds/``
instead, the encoding the Cityscapes server takes, should a server ask for it.

The checkpoint is loaded strictly (``--non-strict`` loads what fits). An output folder holding an earlier
submission is reused only with ``--force`` (its predictions of other conditions are then removed); it must not
lie inside the ACDC folder.
"""
from soma.apis.acdc_submission import main

if __name__ == "__main__":
    main()
