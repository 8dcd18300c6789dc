default_scope = "mmseg"
# SoMARunner refuses a load_from/--resume checkpoint that does not fit the model (mmengine's Runner loads it
# non-strictly); tools/train.py, tools/test.py and `mim train` build the runner this names.
runner_type = "SoMARunner"
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="SegLocalVisualizer", vis_backends=vis_backends, name="visualizer")
log_processor = dict(by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
tta_model = dict(type="SegTTAModel")
# One fixed seed, as in the released recipe: runs repeat up to non-deterministic GPU kernels.
randomness = dict(seed=42)
