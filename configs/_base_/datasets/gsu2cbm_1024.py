# GTA5 + SYNTHIA + UrbanSyn -> Cityscapes / BDD100K / Mapillary, 1024 crops.
_base_ = ["./dg_1024.py"]

train_dataloader = dict(dataset=dict(type="ConcatDataset", datasets=[
    {{_base_.gta_train}},
    {{_base_.synthia_train}},
    {{_base_.urbansyn_train}}]))
val_dataloader = dict(dataset=dict(type="ConcatDataset", datasets=[
    {{_base_.citys_val}},
    {{_base_.bdd_val}},
    {{_base_.map_val}}]))
test_dataloader = val_dataloader
