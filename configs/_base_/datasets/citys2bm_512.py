# Cityscapes -> BDD100K / Mapillary. Validation also scores the source's own validation split (citys/mIoU), for
# the source-only checkpoint selection; `mean/mIoU` averages the two targets only, and the test set is the targets.
_base_ = ["./dg_512.py"]

targets = ["bdd", "map"]
train_dataloader = dict(dataset={{_base_.citys_train}})
val_dataloader = dict(dataset=dict(type="ConcatDataset", datasets=[
    {{_base_.bdd_val}},
    {{_base_.map_val}},
    {{_base_.citys_val}}]))
test_dataloader = dict(dataset=dict(type="ConcatDataset", datasets=[
    {{_base_.bdd_val}},
    {{_base_.map_val}}]))
val_evaluator = dict(mean_over=targets)
test_evaluator = val_evaluator

# Test-time augmentation (tools/test.sh --tta) as released for this benchmark: scales 0.75-1.75, with and without flip.
tta_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="TestTimeAug", transforms=[
        [dict(type="Resize", scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25, 1.5, 1.75)],
        [dict(type="RandomFlip", prob=0.0, direction="horizontal"),
         dict(type="RandomFlip", prob=1.0, direction="horizontal")],
        [dict(type="LoadAnnotations")],
        [dict(type="PackSegInputs", meta_keys={{_base_.domain_meta_keys}})],
    ]),
]
