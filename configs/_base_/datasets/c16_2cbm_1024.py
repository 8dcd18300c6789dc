# Cityscapes 1/16 -> Cityscapes / BDD100K / Mapillary, 1024 crops: the data of the second stage of the
# GTA5 + SYNTHIA + UrbanSyn + Cityscapes 1/16 benchmark (the first stage trains on gsu2cbm_1024.py).
_base_ = ["./dg_1024.py"]

train_dataloader = dict(dataset={{_base_.citys_train_1of16}})
val_dataloader = dict(dataset=dict(type="ConcatDataset", datasets=[
    {{_base_.citys_val}},
    {{_base_.bdd_val}},
    {{_base_.map_val}}]))
test_dataloader = val_dataloader
