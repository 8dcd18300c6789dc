"""init="released": the adapters hold the minor part of a seeded random nn.Linear init, the base weight stays W.

The references are built the way the official SoMA code builds its model: separate ``nn.Linear`` q/k/v layers
(and a patch-embedding conv) constructed in order under ``torch.manual_seed``, decomposed with a float32
``torch.linalg.svd``, and ``A = diag(√S_r) Vᴴ_r``, ``B = U_r diag(√S_r)`` of the r smallest triplets.
"""
import pytest
import torch
import torch.nn as nn

from soma.peft import SoMAConfig, SoMALinear, apply_soma, initialize_soma, soma_layers

DIM, HIDDEN, RANK, SEED = 8, 32, 2, 7
TOY_TARGETS = ("qkv", "proj", "fc1", "fc2")  # the toy blocks hold their linears directly


def release_factors(weight: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A, B as the official code computes them (scale 1)."""
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    sr = s[-r:]
    return torch.diag(torch.sqrt(sr)) @ vh[-r:, :], u[:, -r:] @ torch.diag(torch.sqrt(sr))


def minor_part(weight: torch.Tensor, r: int) -> torch.Tensor:
    """The rank-r minor part of ``weight`` in float64 (an independent, exact reference)."""
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    return u[:, -r:] @ torch.diag(s[-r:]) @ vh[-r:]


class ToyBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(DIM)
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.fc1 = nn.Linear(DIM, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        x = x + self.proj(torch.softmax(q @ k.transpose(-1, -2), -1) @ v)
        return x + self.fc2(torch.relu(self.fc1(x)))


class Toy(nn.Module):
    """A ViT-shaped toy: patch conv, then blocks with a fused qkv (as timm builds DINOv2)."""

    def __init__(self, depth: int = 3) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, DIM, 4, 4)
        self.blocks = nn.ModuleList(ToyBlock() for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return x


def release_construction(depth: int, seed: int) -> dict[str, torch.Tensor]:
    """The random weights the official model's constructor draws: conv, then q, k, v, proj, fc1, fc2 per block."""
    torch.manual_seed(seed)
    nn.Conv2d(3, DIM, 4, 4)
    weights = {}
    for index in range(depth):
        for name, (fan_in, fan_out) in dict(q=(DIM, DIM), k=(DIM, DIM), v=(DIM, DIM), proj=(DIM, DIM),
                                            fc1=(DIM, HIDDEN), fc2=(HIDDEN, DIM)).items():
            weights[f"blocks.{index}.{name}"] = nn.Linear(fan_in, fan_out).weight.detach().clone()
    return weights


def pretrained_toy() -> Toy:
    torch.manual_seed(123)
    model = Toy()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model


def test_layer_draws_each_slice_as_a_separate_linear():
    torch.manual_seed(0)
    base = nn.Linear(DIM, 3 * DIM)
    pretrained = base.weight.detach().clone()
    layer = SoMALinear(base, r=RANK, init="released", splits=3, initialize=False)
    layer.initialize(torch.Generator().manual_seed(SEED))
    assert torch.equal(layer.base_layer.weight, pretrained)  # the pretrained weight, bit for bit

    torch.manual_seed(SEED)
    separate = [nn.Linear(DIM, DIM) for _ in range(3)]  # weight then bias each, as the official q, k, v
    for index, reference in enumerate(separate):
        a, b = release_factors(reference.weight.detach(), RANK)
        rows = slice(index * DIM, (index + 1) * DIM)
        assert torch.equal(layer.lora_A[index * RANK:(index + 1) * RANK], a)
        assert torch.equal(layer.lora_B[rows], b)
        torch.testing.assert_close(layer.delta_weight()[rows].double(), minor_part(reference.weight, RANK),
                                   atol=1e-6, rtol=0)
    assert not layer.delta_weight()[:DIM, DIM:].any()  # block-diagonal: no cross-slice terms (row slices only)


def test_model_replays_the_construction_stream():
    model = pretrained_toy()
    pretrained = {k: v.clone() for k, v in model.state_dict().items()}
    config = SoMAConfig(r=RANK, init="released", start_block=1, init_seed=SEED,
                        target_modules=TOY_TARGETS)
    apply_soma(model, config, initialize=False)
    initialize_soma(model)
    reference = release_construction(depth=3, seed=SEED)

    layers = soma_layers(model)
    assert sorted(layers) == sorted(f"blocks.{i}.{n}" for i in (1, 2) for n in ("qkv", "proj", "fc1", "fc2"))
    for name, layer in layers.items():
        assert torch.equal(layer.base_layer.weight, pretrained[f"{name}.weight"])
        block = name.rsplit(".", 1)[0]
        parts = [f"{block}.q", f"{block}.k", f"{block}.v"] if name.endswith("qkv") else [name]
        rows = layer.out_features // len(parts)
        for index, part in enumerate(parts):
            a, b = release_factors(reference[part], RANK)
            assert torch.equal(layer.lora_A[index * RANK:(index + 1) * RANK], a), part
            assert torch.equal(layer.lora_B[index * rows:(index + 1) * rows], b), part
            torch.testing.assert_close(layer.delta_weight()[index * rows:(index + 1) * rows].double(),
                                       minor_part(reference[part], RANK), atol=1e-6, rtol=0)


def test_released_function_is_pretrained_plus_random_minor_part():
    model = pretrained_toy()
    expected_model = pretrained_toy()
    reference = release_construction(depth=3, seed=SEED)
    with torch.no_grad():  # W_eff = W_pre + s·B0A0 in the adapted blocks
        for index in (1, 2):
            block = expected_model.blocks[index]
            qkv_minor = torch.cat([minor_part(reference[f"blocks.{index}.{n}"], RANK) for n in "qkv"])
            block.qkv.weight.add_(qkv_minor.float())
            for name in ("proj", "fc1", "fc2"):
                getattr(block, name).weight.add_(minor_part(reference[f"blocks.{index}.{name}"], RANK).float())
    apply_soma(model, dict(r=RANK, init="released", start_block=1, init_seed=SEED, target_modules=TOY_TARGETS),
               initialize=False)
    initialize_soma(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected_model(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model(x), pretrained_toy()(x), atol=1e-3)  # the start is perturbed


def test_released_init_is_reproducible_and_seeded():
    def adapters(seed: int) -> list[torch.Tensor]:
        model = apply_soma(pretrained_toy(), dict(r=RANK, init="released", init_seed=seed, target_modules=TOY_TARGETS),
                           initialize=False)
        initialize_soma(model)
        return [layer.lora_A.clone() for layer in soma_layers(model).values()]

    first, again, other = adapters(SEED), adapters(SEED), adapters(SEED + 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not any(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("init", ["minor", "principal", "lora"])
def test_default_modes_keep_the_function_at_initialisation(init):
    model = pretrained_toy()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    apply_soma(model, dict(r=RANK, init=init, target_modules=TOY_TARGETS), initialize=False)
    initialize_soma(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_init_seed_is_validated():
    with pytest.raises(ValueError, match="init_seed"):
        SoMAConfig(init="released", init_seed=-1)
