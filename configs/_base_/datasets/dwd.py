# Diverse Weather Dataset (DWD), VOC layout: data/dwd/<domain>/VOC2007/{Annotations,JPEGImages,ImageSets/Main}.
# Train on daytime_clear (its train list). Test in one run on the daytime_clear test list (the source, "DS") and
# on every image of the four unseen domains, scored per domain (VOC 11-point mAP@0.5); `mean/mAP` averages the
# unseen ones. Validation during training uses the source test list only: choosing checkpoints on the unseen
# domains would leak them into training.
dataset_type = "DWDDataset"
data_root = "data/dwd"
source_domain = "daytime_clear"
target_domains = ["daytime_foggy", "dusk_rainy", "night_rainy", "night_sunny"]
det_domain_meta_keys = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "flip", "flip_direction",
                        "domain")  # = soma.datasets.dwd.DET_DOMAIN_META_KEYS
test_scale = (1333, 800)  # DWD images are 1280x720: resized to 1333x750
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandomChoiceResize", scales=[(1333, s) for s in range(480, 801, 32)], keep_ratio=True),
    dict(type="PackDetInputs", meta_keys=det_domain_meta_keys),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=test_scale, keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),  # after Resize: boxes stay in original-image coordinates
    dict(type="PackDetInputs", meta_keys=det_domain_meta_keys),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, domain=source_domain, split="train", data_root=data_root,
                 filter_cfg=dict(filter_empty_gt=False), pipeline=train_pipeline),
)
source_test = dict(type=dataset_type, domain=source_domain, split="test", data_root=data_root, test_mode=True,
                   pipeline=test_pipeline)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    # round_up=False: no image is scored twice when the set does not split evenly across processes.
    sampler=dict(type="DefaultSampler", shuffle=False, round_up=False),
    dataset=source_test,
)
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        type="ConcatDataset",
        datasets=[source_test] + [dict(source_test, domain=domain, split="all") for domain in target_domains]),
)
val_evaluator = dict(type="DomainVOCMetric", iou_thr=0.5, eval_mode="11points")
test_evaluator = dict(val_evaluator, mean_over=target_domains)
tta_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="TestTimeAug",
         transforms=[[dict(type="Resize", scale=s, keep_ratio=True) for s in [(1333, 640), test_scale, (1333, 960)]],
                     [dict(type="RandomFlip", prob=1.0), dict(type="RandomFlip", prob=0.0)],
                     [dict(type="LoadAnnotations", with_bbox=True)],
                     [dict(type="PackDetInputs", meta_keys=det_domain_meta_keys)]]),
]
