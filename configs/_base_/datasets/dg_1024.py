# Pipelines of the published 1024 setting: as dg_512.py with 1024 crops and shortest edges 0.5-2.0 x 1024
# (ACDC: x 1080), and ACDC tested at 1920x1080. Cityscapes, BDD and Mapillary keep their test resolutions.
_base_ = ["./dg_512.py"]

train_crop = (1024, 1024)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomChoiceResize", scales=[int(1024 * x * 0.1) for x in range(5, 21)],
         resize_type="ResizeShortestEdge", max_size=4096),
    dict(type="RandomCrop", crop_size=train_crop, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs", meta_keys={{_base_.domain_meta_keys}}),
]
acdc_train_pipeline = [
    dict(step, scales=[int(1080 * x * 0.1) for x in range(5, 21)]) if step["type"] == "RandomChoiceResize" else step
    for step in train_pipeline
]
gta_train = dict(pipeline=train_pipeline)
synthia_train = dict(pipeline=train_pipeline)
urbansyn_train = dict(pipeline=train_pipeline)
citys_train = dict(pipeline=train_pipeline)
citys_train_1of16 = dict(pipeline=train_pipeline)
citys_train_acdc = dict(pipeline=acdc_train_pipeline)
acdc_test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(1920, 1080), keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs", meta_keys={{_base_.domain_meta_keys}}),
]
acdc_val_fog = dict(pipeline=acdc_test_pipeline)
acdc_val_night = dict(pipeline=acdc_test_pipeline)
acdc_val_rain = dict(pipeline=acdc_test_pipeline)
acdc_val_snow = dict(pipeline=acdc_test_pipeline)
