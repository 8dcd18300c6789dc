# DWD at 1024, the official SoMA release's DWD data recipe (layout, domains and scoring: dwd.py).
# Train: scale jitter 0.1-2.0 of 1024x1024 (keep ratio), a 1024 crop (boxes re-fitted, crops without boxes kept),
# boxes under 0.01 px dropped, flip, pad to 1024x1024 with 114, photometric distortion.
# Test: resize to fit 1024x1024 (1280x720 -> 1024x576) and pad to 1024x1024.
# Validation: all five domains and their mean, as the release does (the checkpoint kept by `save_best` then
# depends on the unseen domains); dwd_1024_source-val.py validates on the source test list only.
_base_ = ["./dwd.py"]

image_size = (1024, 1024)
pad_value = dict(img=(114, 114, 114))
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomResize", scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_type="absolute_range", crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type="RandomFlip", prob=0.5),
    dict(type="Pad", size=image_size, pad_val=pad_value),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackDetInputs", meta_keys={{_base_.det_domain_meta_keys}}),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=image_size, keep_ratio=True),
    dict(type="Pad", size=image_size, pad_val=pad_value),
    dict(type="LoadAnnotations", with_bbox=True),  # after Resize: boxes stay in original-image coordinates
    dict(type="PackDetInputs", meta_keys={{_base_.det_domain_meta_keys}}),
]
# The release's 2 images per GPU (x 4 GPUs); the detector config sets its total of 8 on one GPU.
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))
source_test = dict(type={{_base_.dataset_type}}, domain={{_base_.source_domain}}, split="test",
                   data_root={{_base_.data_root}}, test_mode=True, pipeline=test_pipeline)
all_domains_test = dict(
    type="ConcatDataset",
    datasets=[source_test] + [dict(source_test, domain=domain, split="all") for domain in _base_.target_domains])
val_dataloader = dict(dataset=dict(_delete_=True, **all_domains_test))  # dwd.py validates on one dataset
test_dataloader = dict(dataset=all_domains_test)
# `mean/mAP` of validation: all five domains, the release's `mean_mAP` (what its best checkpoint was picked by);
# the test's (dwd.py) averages the four unseen ones.
val_evaluator = dict(mean_over=[_base_.source_domain] + _base_.target_domains)
# Test-time augmentation (tools/test.py --tta; not in the release): the test pipeline with and without a flip.
tta_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="TestTimeAug",
         transforms=[[dict(type="Resize", scale=image_size, keep_ratio=True)],
                     [dict(type="RandomFlip", prob=1.0), dict(type="RandomFlip", prob=0.0)],
                     [dict(type="Pad", size=image_size, pad_val=pad_value)],
                     [dict(type="LoadAnnotations", with_bbox=True)],
                     [dict(type="PackDetInputs", meta_keys={{_base_.det_domain_meta_keys}})]]),
]
