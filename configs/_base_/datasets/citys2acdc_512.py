# Cityscapes -> ACDC (val), 512 crops on the scales of the 1024 setting, as released: training shortest edge
# 0.5-2.0 x 1024 (long side <= 4096) then a 512 crop; validation at 1920x1080.
_base_ = ["./citys2acdc_1024.py"]

train_dataloader = dict(dataset=dict(pipeline={{_base_.acdc_train_pipeline_crop512}}))
