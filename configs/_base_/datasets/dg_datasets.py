# The datasets of domain-generalised segmentation, as laid out under data/ after
# tools/convert_datasets/. Pipelines are added by dg_512.py / dg_1024.py (merged into these dicts), and the
# benchmark files (e.g. gta2cbm_512.py) pick sources and targets. Each dataset names its domain, which keys the
# results (citys/mIoU, bdd/mIoU, map/mIoU, acdc-fog/mIoU, ...).
gta_train = dict(type="DGGTA5Dataset", data_root="data/gta")
synthia_train = dict(type="DGSynthiaDataset", data_root="data/synthia")
urbansyn_train = dict(type="DGUrbanSynDataset", data_root="data/urbansyn")
citys_train = dict(type="DGCityscapesDataset", data_root="data/cityscapes",
                   data_prefix=dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train"))
# Cityscapes 1/16 (186 of 2,975 images) for the GSU + Cityscapes 1/16 benchmark: a fixed random subset (seed 0).
# The released recipe read a list file (train_1_16_v1.txt) that was not published, so the images differ.
citys_train_1of16 = dict(citys_train, subset_ratio=1 / 16, subset_seed=0)
citys_train_acdc = dict(citys_train)  # Cityscapes -> ACDC has its own scales (see dg_1024.py)
citys_val = dict(type="DGCityscapesDataset", data_root="data/cityscapes", test_mode=True,
                 data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"))
bdd_val = dict(type="DGBDD100KDataset", data_root="data/bdd100k", test_mode=True)
map_val = dict(type="DGMapillaryDataset", data_root="data/mapillary", test_mode=True)
acdc_val_fog = dict(type="DGACDCDataset", condition="fog", data_root="data/acdc", test_mode=True)
acdc_val_night = dict(type="DGACDCDataset", condition="night", data_root="data/acdc", test_mode=True)
acdc_val_rain = dict(type="DGACDCDataset", condition="rain", data_root="data/acdc", test_mode=True)
acdc_val_snow = dict(type="DGACDCDataset", condition="snow", data_root="data/acdc", test_mode=True)

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    # round_up=False: with several processes no image is evaluated twice.
    sampler=dict(type="DefaultSampler", shuffle=False, round_up=False),
)
test_dataloader = val_dataloader
# Per-dataset mIoU/mAcc/aAcc, per-class IoU in the log and the JSON next to metrics.json, and the mean.
val_evaluator = dict(type="DomainIoUMetric")
test_evaluator = val_evaluator
