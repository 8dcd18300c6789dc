# Pipelines of the published 1024 setting, as released. Training crops 1024 (cat_max_ratio 0.75, flip,
# photometric distortion) after:
# - synthetic sources and Cityscapes (1/16): a continuous random rescale of (2048, 1024) by 0.5-2.0, aspect kept
#   (the shortest edge of GTA5/SYNTHIA/UrbanSyn/Cityscapes images becomes 512-2048);
# - Cityscapes -> ACDC: shortest edge a random choice of 0.5-2.0 x 1024 (long side <= 4096).
# Testing: Cityscapes, BDD100K and Mapillary at 2048x1024, ACDC at 1920x1080 (aspect kept), then slide inference.
_base_ = ["./dg_512.py"]

train_crop = (1024, 1024)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=train_crop, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs", meta_keys={{_base_.domain_meta_keys}}),
]
acdc_train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomChoiceResize", scales=[int(1024 * x * 0.1) for x in range(5, 21)],
         resize_type="ResizeShortestEdge", max_size=4096),
    dict(type="RandomCrop", crop_size=train_crop, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs", meta_keys={{_base_.domain_meta_keys}}),
]
# The released Cityscapes -> ACDC 512 recipe: the same scales, 512 crops.
acdc_train_pipeline_crop512 = [
    dict(step, crop_size=(512, 512)) if step["type"] == "RandomCrop" else step for step in acdc_train_pipeline
]
gta_train = dict(pipeline=train_pipeline)
synthia_train = dict(pipeline=train_pipeline)
urbansyn_train = dict(pipeline=train_pipeline)
citys_train = dict(pipeline=train_pipeline)
citys_train_1of16 = dict(pipeline=train_pipeline)
citys_train_acdc = dict(pipeline=acdc_train_pipeline)


def test_pipeline_at(scale):  # a helper, not a config key (mmengine drops functions)
    return [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=scale, keep_ratio=True),
        dict(type="LoadAnnotations"),  # after Resize: the metric compares at the original label size
        dict(type="PackSegInputs", meta_keys={{_base_.domain_meta_keys}}),
    ]


bdd_val = dict(pipeline=test_pipeline_at((2048, 1024)))
acdc_test_pipeline = test_pipeline_at((1920, 1080))
acdc_val_fog = dict(pipeline=acdc_test_pipeline)
acdc_val_night = dict(pipeline=acdc_test_pipeline)
acdc_val_rain = dict(pipeline=acdc_test_pipeline)
acdc_val_snow = dict(pipeline=acdc_test_pipeline)
