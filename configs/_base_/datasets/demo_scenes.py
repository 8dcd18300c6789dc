# The CPU demo's generated scenes (soma/demo/scenes.py): Cityscapes layout, one data root per visual style.
# Train on the source style; test on the source style and the three shifted ones in one run, scored per domain.
data_root = "data/demo"
source_domain = "source"
target_domains = ["night", "fog", "palette"]
domain_meta_keys = ("img_path", "seg_map_path", "ori_shape", "img_shape", "pad_shape", "scale_factor", "flip",
                    "flip_direction", "reduce_zero_label", "domain")  # = soma.datasets.DOMAIN_META_KEYS
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs", meta_keys=domain_meta_keys),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs", meta_keys=domain_meta_keys),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type="DGCityscapesDataset", domain=source_domain, data_root=f"{data_root}/{source_domain}",
                 data_prefix=dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train"),
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=20,
    num_workers=1,
    persistent_workers=True,
    # round_up=False: no sample is evaluated twice when the set does not split evenly across processes.
    sampler=dict(type="DefaultSampler", shuffle=False, round_up=False),
    dataset=dict(
        type="ConcatDataset",
        datasets=[dict(type="DGCityscapesDataset", domain=domain, data_root=f"{data_root}/{domain}", test_mode=True,
                       data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"),
                       pipeline=test_pipeline)
                  for domain in [source_domain] + target_domains]),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="DomainIoUMetric", mean_over=target_domains)
test_evaluator = val_evaluator
