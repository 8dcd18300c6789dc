"""A tiny EncoderDecoder + Mask2FormerHead with our backbones: training lowers the loss, slide test works."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from soma.peft import soma_layers


def make_batch(num_images=2, size=64, test=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(num_images):
        image = torch.randint(0, 255, (3, size, size), generator=generator, dtype=torch.uint8)
        label = torch.zeros(1, size, size, dtype=torch.long)
        label[:, size // 2:] = 1  # two regions with different colour statistics
        label[:, :, : size // 4] = 2
        image[:, size // 2:] //= 4
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=label)
        inputs.append(image)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize("backbone_type", ["DINOv2", "EVA02"])
def test_train_step_lowers_loss_and_slide_test(backbone_type, tiny_segmentor_config):
    torch.manual_seed(0)
    model = MODELS.build(tiny_segmentor_config(backbone_type))
    model.init_weights()
    assert soma_layers(model.backbone.vit)
    optim_wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3)))
    batch = make_batch()
    before = [{n: p.detach().clone() for n, p in block.named_parameters()} for block in model.backbone.vit.blocks]
    losses = []
    model.train()
    for _ in range(6):
        log_vars = model.train_step(batch, optim_wrapper)
        losses.append(float(log_vars["loss"].detach()))
    assert losses[-1] < losses[0], losses
    # Blocks before start_block=2 are untouched; in adapted blocks only adapters and biases moved.
    for index, block in enumerate(model.backbone.vit.blocks):
        changed = {n for n, p in block.named_parameters() if not torch.equal(p, before[index][n])}
        if index < 2:
            assert not changed
        else:
            assert changed and all(n.endswith(("lora_A", "lora_B", "base_layer.bias")) for n in changed), changed

    model.eval()
    test_batch = make_batch(num_images=1, size=96, test=True)  # larger than the crop: several windows
    with torch.no_grad():
        results = model.test_step(test_batch)
    assert results[0].pred_sem_seg.data.shape == (1, 96, 96)


def test_every_trainable_parameter_gets_a_gradient(tiny_segmentor_config):
    """DDP runs without find_unused_parameters only if no trainable parameter is left out of the graph."""
    torch.manual_seed(0)
    model = MODELS.build(tiny_segmentor_config())
    model.init_weights()
    model.train()
    data = model.data_preprocessor(make_batch(), True)
    loss, _ = model.parse_losses(model(**data, mode="loss"))
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused


def test_images_not_divisible_by_the_patch_are_padded_and_cropped_back(tiny_segmentor_config):
    """A test image smaller than the slide window with sides that are no multiple of 16 (e.g. BDD at 0.5 scale)."""
    import torch
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    model = MODELS.build(tiny_segmentor_config()).eval()
    model.init_weights()
    image = torch.rand(1, 3, 36, 50) * 255
    sample = SegDataSample(metainfo=dict(img_shape=(36, 50), ori_shape=(36, 50), pad_shape=(36, 50)))
    with torch.no_grad():
        result = model.predict(model.data_preprocessor(dict(inputs=[image[0]], data_samples=[sample]))["inputs"],
                               [sample])
    assert result[0].pred_sem_seg.data.shape == (1, 36, 50)
