# Pipelines of the published 512 setting, merged into the datasets of dg_datasets.py.
# Training: shortest edge resized to a random choice of 0.5-2.0 x 512 (long side <= 2048), random 512 crop with
# cat_max_ratio 0.75, flip, photometric distortion. Testing keeps the aspect ratio at each dataset's test
# resolution (Cityscapes 2048x1024, BDD 1280x720, Mapillary 2048x1024), then slide inference.
# Cityscapes -> ACDC, also at 512 crops, uses the scales of the 1024 setting (dg_1024.py), as released.
_base_ = ["./dg_datasets.py"]

train_crop = (512, 512)  # not `crop_size`: the model config owns that name
# What PackSegInputs keeps: mmseg's defaults plus the sample's domain (= soma.datasets.DOMAIN_META_KEYS).
domain_meta_keys = ("img_path", "seg_map_path", "ori_shape", "img_shape", "pad_shape", "scale_factor", "flip",
                    "flip_direction", "reduce_zero_label", "domain")
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomChoiceResize", scales=[int(512 * x * 0.1) for x in range(5, 21)],
         resize_type="ResizeShortestEdge", max_size=2048),
    dict(type="RandomCrop", crop_size=train_crop, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs", meta_keys=domain_meta_keys),
]


def test_pipeline_at(scale):  # a helper, not a config key (mmengine drops functions)
    return [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=scale, keep_ratio=True),
        dict(type="LoadAnnotations"),  # after Resize: the metric compares at the original label size
        dict(type="PackSegInputs", meta_keys=domain_meta_keys),
    ]


gta_train = dict(pipeline=train_pipeline)
synthia_train = dict(pipeline=train_pipeline)
urbansyn_train = dict(pipeline=train_pipeline)
citys_train = dict(pipeline=train_pipeline)
citys_train_1of16 = dict(pipeline=train_pipeline)
citys_val = dict(pipeline=test_pipeline_at((2048, 1024)))
bdd_val = dict(pipeline=test_pipeline_at((1280, 720)))
map_val = dict(pipeline=test_pipeline_at((2048, 1024)))

# Test-time augmentation (tools/test.sh --tta): scales 0.5-1.75 of the original image, each with and without flip.
tta_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="TestTimeAug", transforms=[
        [dict(type="Resize", scale_factor=r, keep_ratio=True) for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)],
        [dict(type="RandomFlip", prob=0.0, direction="horizontal"),
         dict(type="RandomFlip", prob=1.0, direction="horizontal")],
        [dict(type="LoadAnnotations")],
        [dict(type="PackSegInputs", meta_keys=domain_meta_keys)],
    ]),
]
