"""``compile_blocks=True`` (torch.compile with its default inductor backend) on CUDA matches eager.

Tolerance (float32): 1e-4 absolute on the loss and on every gradient — inductor fuses and reorders float
operations. On CPU the same check runs with the aot_eager backend in tests/test_benchmark.
"""
import torch
from mmseg.registry import MODELS

from ..test_models.test_segmentor import make_batch
from .conftest import GPU

pytestmark = GPU


def loss_and_grads(model):
    torch.manual_seed(0)
    torch.cuda.manual_seed_all(0)
    model.zero_grad()
    losses = model(**model.data_preprocessor(make_batch(num_images=2, size=64), True), mode="loss")
    loss, _ = model.parse_losses(losses)
    loss.backward()
    return loss.detach(), {n: p.grad.detach() for n, p in model.named_parameters() if p.grad is not None}


def test_compiled_blocks_match_eager_on_cuda(tiny_segmentor_config):
    torch.manual_seed(0)
    configs = [tiny_segmentor_config(num_classes=3) for _ in range(2)]
    configs[1].backbone.compile_blocks = True
    eager, compiled = (MODELS.build(cfg).cuda().train() for cfg in configs)
    eager.init_weights()
    compiled.load_state_dict(eager.state_dict())
    loss_eager, grads_eager = loss_and_grads(eager)
    loss_compiled, grads_compiled = loss_and_grads(compiled)
    torch.testing.assert_close(loss_compiled, loss_eager, rtol=0, atol=1e-4)
    assert grads_compiled.keys() == grads_eager.keys()
    for name, grad in grads_eager.items():
        torch.testing.assert_close(grads_compiled[name], grad, rtol=0, atol=1e-4, msg=name)
