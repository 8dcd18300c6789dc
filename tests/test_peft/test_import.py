"""``soma.peft`` is pure PyTorch: it imports and adapts a model with the OpenMMLab packages and peft blocked, and
the HF peft method says how to install peft."""
import subprocess
import sys

CODE = """
import sys
for name in ('mmseg', 'mmdet', 'mmengine', 'mmcv', 'peft'):
    sys.modules[name] = None
import torch
from soma.peft import HFPeftConfig, PEFT_METHODS, adapter_layers, apply_dora, apply_hf_peft
model = torch.nn.Sequential(torch.nn.Linear(8, 8))
apply_dora(model, dict(r=2, target_modules=('0',)))
print(sorted(PEFT_METHODS), len(adapter_layers(model)))
try:
    apply_hf_peft(torch.nn.Linear(2, 2), HFPeftConfig(config=dict(type='LoraConfig')))
except ImportError as error:
    print(error)
"""


def test_soma_peft_works_without_openmmlab_and_peft():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "['DoRA', 'HFPeft', 'Rein', 'SoMA'] 1"
    assert "pip install peft==0.21.2" in second


def test_importing_soma_peft_loads_nothing_of_openmmlab_peft_or_timm():
    """Where all of them are installed (here), ``import soma.peft`` still loads none of them."""
    from soma.analysis.import_time import HEAVY, measure_import

    result = measure_import("soma.peft", repeats=1)
    assert result.heavy == [], f"import soma.peft loaded {result.heavy} (of {HEAVY})"
