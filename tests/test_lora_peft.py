"""Oracle: our LoRA on our GPT computes what Hugging Face PEFT's LoRA computes on GPT2LMHeadModel.

GPT.from_hf makes the base weights the same. HF GPT-2 stores its linears as Conv1D with weights
(in, out); PEFT handles that with fan_in_fan_out=True but keeps its lora_A (r, in) and lora_B
(out, r) in nn.Linear orientation, exactly like ours, so A and B are copied across unchanged.
"""

import warnings

import pytest
import torch

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from helpers.lora import apply_lora, lora_layers, lora_state_dict, merge_lora  # noqa: E402
from helpers.model import GPT  # noqa: E402

RANK, ALPHA = 4, 8.0


def _pair(targets: list[str], seed: int = 0, rank: int = RANK, rslora: bool = False):
    """(hf_peft_model, our_model) with the same base weights and the same random A and B."""
    torch.manual_seed(seed)
    hc = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=16, vocab_size=64,
                                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(hc).eval()
    ours = GPT.from_hf(hf).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns that fan_in_fan_out is being set for Conv1D
        config = peft.LoraConfig(r=rank, lora_alpha=ALPHA, target_modules=targets, lora_dropout=0.0,
                                 fan_in_fan_out=True, use_rslora=rslora)
        hf_lora = peft.get_peft_model(hf, config).eval()
    apply_lora(ours, rank=rank, alpha=ALPHA, targets=targets, rslora=rslora)
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            peft_layer = hf_lora.base_model.model.get_submodule(name)
            torch.nn.init.normal_(peft_layer.lora_B["default"].weight, std=0.1)  # B = 0 would prove nothing
            layer.lora_A.copy_(peft_layer.lora_A["default"].weight)  # (r, in) in both
            layer.lora_B.copy_(peft_layer.lora_B["default"].weight)  # (out, r) in both
    return hf_lora, ours


@pytest.mark.parametrize("targets", [["c_attn"], ["c_attn", "c_proj", "c_fc"], ["c_proj"]])
def test_same_logits_as_peft(targets):
    hf_lora, ours = _pair(targets)
    idx = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf_lora(input_ids=idx).logits
        mine = ours(idx)
        base = hf_lora.get_base_model()
        with hf_lora.disable_adapter():
            plain = base(input_ids=idx).logits
    assert (theirs - plain).abs().max() > 1e-2, "the adapter must change the outputs for the test to mean anything"
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rank", [1, 4, 16])
@pytest.mark.parametrize("rslora", [False, True])
def test_same_scaling_and_logits_as_peft_with_and_without_rslora(rank, rslora):
    """PEFT's use_rslora: alpha / sqrt(r) instead of alpha / r; same factor per layer, same outputs."""
    hf_lora, ours = _pair(["c_attn", "c_fc"], rank=rank, rslora=rslora)
    for name, layer in lora_layers(ours).items():
        assert layer.scaling == hf_lora.base_model.model.get_submodule(name).scaling["default"]
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        theirs, mine = hf_lora(input_ids=idx).logits, ours(idx)
        with hf_lora.disable_adapter():
            plain = hf_lora.get_base_model()(input_ids=idx).logits
    assert (theirs - plain).abs().max() > 1e-2
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    if rank > 1:  # the two rules differ, so the test would see a swapped rule
        other = ALPHA / rank if rslora else ALPHA / rank**0.5
        assert all(layer.scaling != other for layer in lora_layers(ours).values())


def test_same_layers_selected_as_peft():
    hf_lora, ours = _pair(["c_proj"])
    theirs = {n for n, m in hf_lora.base_model.model.named_modules() if hasattr(m, "lora_A")}
    assert set(lora_layers(ours)) == theirs  # "c_proj" selects attention's and the MLP's, as in PEFT


def test_same_trainable_count_and_state_as_peft():
    hf_lora, ours = _pair(["c_attn", "c_fc"])
    theirs = sum(p.numel() for p in hf_lora.parameters() if p.requires_grad)
    assert sum(p.numel() for p in ours.parameters() if p.requires_grad) == theirs
    peft_state = peft.get_peft_model_state_dict(hf_lora)
    for key, value in lora_state_dict(ours).items():
        if key.endswith(".scaling"):
            assert float(value) == ALPHA / RANK
            continue
        name, which = key.rsplit(".", 1)
        torch.testing.assert_close(value, peft_state[f"base_model.model.{name}.{which}.weight"])


def test_merged_weights_match_peft_merge_and_unload():
    hf_lora, ours = _pair(["c_attn", "c_proj", "c_fc"])
    merged_hf = hf_lora.merge_and_unload()
    merge_lora(ours)
    again = GPT.from_hf(merged_hf)  # transposes HF's Conv1D weights into our orientation
    for name, layer in lora_layers(ours).items():
        torch.testing.assert_close(layer.base.weight, again.get_submodule(name).weight, atol=1e-6, rtol=1e-6)
