# Cityscapes -> ACDC (val, per condition and all).
_base_ = ["./dg_512.py"]

train_dataloader = dict(dataset={{_base_.citys_train_acdc}})
val_dataloader = dict(dataset=dict(type="ConcatDataset", datasets=[
    {{_base_.acdc_val_fog}},
    {{_base_.acdc_val_night}},
    {{_base_.acdc_val_rain}},
    {{_base_.acdc_val_snow}}]))
test_dataloader = val_dataloader
# ACDC by condition (acdc-fog/mIoU, ...) and over all four conditions' pixels (acdc/mIoU).
val_evaluator = dict(groups=dict(acdc=["acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"]))
test_evaluator = val_evaluator
