"""soma.analysis.trainable_params (tools/benchmark/trainable_params.py): one row per method config, counts
consistent across methods (tiny arch)."""
from soma.analysis.trainable_params import table


def parse(markdown: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in markdown.splitlines()[2:]]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_every_method_has_a_row_with_consistent_counts():
    rows = parse(table("tiny"))
    assert {"frozen", "full", "soma", "pissa", "lora", "dora", "hf-lora"} <= set(rows)
    trainable = {name: int(cells[1].replace(",", "")) for name, cells in rows.items()}
    assert trainable["frozen"] == 0
    assert trainable["soma"] == trainable["pissa"] == trainable["lora"] < trainable["full"]
    # DoRA = the same low-rank adapters plus one magnitude per output feature of the adapted layers
    out_features = 3 * (3 * 64 + 64 + 4 * 64 + 64)  # blocks 1-3 (8-23 of 24, scaled) of the 4-block, 64-dim arch
    assert trainable["dora"] == trainable["soma"] + out_features
    assert rows["hf-lora"][0].startswith("HFPeft LoraConfig") and 0 < trainable["hf-lora"] < trainable["soma"]
    assert int(rows["soma"][5]) == 3 * (3 + 3)  # q, k, v slices count as matrices
