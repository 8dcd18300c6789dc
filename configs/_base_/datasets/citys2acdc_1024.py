# Cityscapes -> ACDC (val), 1024 crops. Validation also scores the source's own validation split (citys/mIoU),
# for the source-only checkpoint selection; the test set is ACDC only.
_base_ = ["./dg_1024.py"]

acdc_val = [{{_base_.acdc_val_fog}}, {{_base_.acdc_val_night}}, {{_base_.acdc_val_rain}}, {{_base_.acdc_val_snow}}]
train_dataloader = dict(dataset={{_base_.citys_train_acdc}})
val_dataloader = dict(dataset=dict(type="ConcatDataset", datasets=[*acdc_val, {{_base_.citys_val}}]))
test_dataloader = dict(dataset=dict(type="ConcatDataset", datasets=acdc_val))
# ACDC by condition (acdc-fog/mIoU, ...), over all four conditions' pixels (acdc/mIoU), and `mean/mIoU`, the mean
# of the four conditions' mIoU (the released metric).
val_evaluator = dict(mean_over=["acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"],
                     groups=dict(acdc=["acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"]))
test_evaluator = val_evaluator
