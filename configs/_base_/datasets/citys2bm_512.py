# Cityscapes -> BDD100K / Mapillary.
_base_ = ["./dg_512.py"]

train_dataloader = dict(dataset={{_base_.citys_train}})
val_dataloader = dict(dataset=dict(type="ConcatDataset", datasets=[
    {{_base_.bdd_val}},
    {{_base_.map_val}}]))
test_dataloader = val_dataloader
