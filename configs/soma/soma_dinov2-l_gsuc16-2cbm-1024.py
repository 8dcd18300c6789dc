# SoMA (DINOv2-L, r=16 on blocks 8-23): GTA5 + SYNTHIA + UrbanSyn + Cityscapes 1/16 -> Cityscapes / BDD100K /
# Mapillary, 1024 crops.
# Published: mean mIoU 75.50 over C/B/M.
# Two stages, as released (docs/reproduction.md). Stage 1 is soma_dinov2-l_gsu2cbm-1024.py; this config is stage 2:
# it starts from stage 1's selected checkpoint (`load_from`, the file in stage 1's default work dir; train stage 1
# first, or pass --cfg-options load_from=PATH) and fine-tunes on Cityscapes 1/16 only: lr 1e-5, 4k iterations,
# validation and checkpoints every 400. Cityscapes 1/16 is a fixed random subset (seed 0) of 186 images: the
# released list file was not published.
# Batch 8 in total as released (4 per GPU on 2 GPUs): 8 on one GPU as set here; on two GPUs
# (tools/dist_train.sh CONFIG 2) pass --cfg-options train_dataloader.batch_size=4.
# Checkpoint selection, release protocol: `best_mean_mIoU_iter_*.pth`, the best mean mIoU of the target validation
# sets, as the published numbers were picked (stage 1 likewise). Source-only protocol (Cityscapes val is a target
# here), the last checkpoint of both stages: --cfg-options default_hooks.checkpoint.save_best=None
#   load_from=work_dirs/soma_dinov2-l_gsu2cbm-1024/iter_40000.pth
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma-1024.py",
    "../_base_/datasets/c16_2cbm_1024.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]

# A pattern: tools/train.py takes the one file that matches (the best checkpoint of stage 1).
load_from = "work_dirs/soma_dinov2-l_gsu2cbm-1024/best_mean_mIoU_iter_*.pth"
max_iters = 4000
train_dataloader = dict(batch_size=8)
optim_wrapper = dict(optimizer=dict(lr=1e-5))
param_scheduler = [
    dict(type="PolyLR", eta_min=0, power=0.9, begin=0, end=max_iters, by_epoch=False),
    dict(type="CosineAnnealingParamScheduler", param_name="weight_decay", eta_min=1e-5, begin=0, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=400)
default_hooks = dict(checkpoint=dict(interval=400, max_keep_ckpts=7, save_best="mean/mIoU", rule="greater"))
