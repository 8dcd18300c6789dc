# dwd_1024.py with validation on the source domain's test list only: checkpoints chosen during training (`save_best`
# on `mean/mAP`, here the daytime_clear mAP) never see the unseen domains (the release validates on all five).
_base_ = ["./dwd_1024.py"]

val_dataloader = dict(dataset=dict(_delete_=True, **_base_.source_test))
val_evaluator = dict(mean_over=None)
