"""The cheat sheets that end the notebooks: each setting a notebook taught, what it changes, a typical range
and what common libraries do when it is left unset, every value with its source.

The data lives here once. A notebook's cheat-sheet cell calls :func:`cheat_sheet` with its own name;
``CHEATSHEET.md`` at the repository root is :func:`render_all` (``python -m helpers.cheatsheet`` rewrites
it, ``tests/test_cheatsheet.py`` compares). The library defaults below are checked against the installed
``transformers``, ``peft``, ``optuna``, ``torch`` and ``gguf`` by that test; the sampling defaults are
``helpers.sampling.LIBRARY_DEFAULTS`` (checked in ``tests/test_sampling_oracle.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers.sampling import LIBRARY_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
CHEATSHEET_MD = ROOT / "CHEATSHEET.md"

# ---------------------------------------------------------------------------------------------------
# Library defaults as data: "Class.field" -> value. Each block is checked against the installed package.

TRANSFORMERS: dict[str, object] = {
    # GenerationConfig._get_default_generation_params() (the sampling ones are in LIBRARY_DEFAULTS)
    "GenerationConfig.max_length": 20,  # prompt + new tokens, when neither max_length nor max_new_tokens is set
    # TrainingArguments: the dataclass field defaults
    "TrainingArguments.learning_rate": 5e-5,
    "TrainingArguments.lr_scheduler_type": "linear",
    "TrainingArguments.warmup_steps": 0,
    "TrainingArguments.per_device_train_batch_size": 8,
    "TrainingArguments.gradient_accumulation_steps": 1,
    "TrainingArguments.optim": "adamw_torch_fused",
    "TrainingArguments.adam_beta1": 0.9,
    "TrainingArguments.adam_beta2": 0.999,
    "TrainingArguments.max_grad_norm": 1.0,
    "TrainingArguments.weight_decay": 0.0,
    "TrainingArguments.seed": 42,
    "TrainingArguments.eval_strategy": "no",
    "TrainingArguments.load_best_model_at_end": False,
    "TrainingArguments.bf16": False,
    "EarlyStoppingCallback.early_stopping_patience": 1,
    # model configurations: a fresh GPT2Config / LlamaConfig
    "GPT2Config.n_layer": 12,
    "GPT2Config.n_embd": 768,
    "GPT2Config.n_head": 12,
    "GPT2Config.n_positions": 1024,
    "GPT2Config.vocab_size": 50257,
    "GPT2Config.resid_pdrop": 0.1,
    "GPT2Config.initializer_range": 0.02,
    "GPT2Config.activation_function": "gelu_new",
    "GPT2Config.layer_norm_epsilon": 1e-5,
    "LlamaConfig.vocab_size": 32000,
    "LlamaConfig.max_position_embeddings": 2048,
    "LlamaConfig.num_attention_heads": 32,
    "LlamaConfig.num_key_value_heads": 32,
    "LlamaConfig.attention_bias": False,
    "LlamaConfig.hidden_act": "silu",
    "LlamaConfig.attention_dropout": 0.0,
    "LlamaConfig.rms_norm_eps": 1e-6,
    "LlamaConfig.rope_theta": 10000.0,  # in transformers 5 inside rope_parameters
}
PYTORCH: dict[str, object] = {  # keyword defaults in the signatures
    "nn.Linear.bias": True,
    "nn.Dropout.p": 0.5,
    "optim.AdamW.lr": 1e-3,
    "optim.AdamW.betas": (0.9, 0.999),
    "optim.AdamW.weight_decay": 0.01,
    "optim.SGD.momentum": 0,
    "autograd.gradcheck.eps": 1e-6,
    "ao.quantization.quantize_dynamic.dtype": "torch.qint8",
}
PEFT: dict[str, object] = {  # a fresh LoraConfig
    "LoraConfig.r": 8,
    "LoraConfig.lora_alpha": 8,
    "LoraConfig.lora_dropout": 0.0,
    "LoraConfig.use_rslora": False,
}
OPTUNA: dict[str, object] = {
    "create_study.sampler": "TPESampler",
    "create_study.pruner": "MedianPruner",
    "TPESampler.n_startup_trials": 10,
    "MedianPruner.n_startup_trials": 5,
    "MedianPruner.n_warmup_steps": 0,
    "HyperbandPruner.reduction_factor": 3,
}
GGUF: dict[str, object] = {  # weights per block of llama.cpp's formats (gguf.GGML_QUANT_SIZES)
    "Q8_0.block": 32,
    "Q4_0.block": 32,
    "Q4_1.block": 32,
}
# Not checkable offline: from llama.cpp's common/common.h and the OpenAI API reference (Chat Completions).
LLAMA_CPP_EXTRA: dict[str, object] = {"n_predict": "-1 (until end of text or a full context)",
                                      "penalty_last_n": 64, "seed": "random (LLAMA_DEFAULT_SEED)"}
OPENAI_EXTRA: dict[str, object] = {"max_completion_tokens": "unset (the model's limit)",
                                   "stop": "unset (up to 4 strings)", "logit_bias": "unset (-100 … 100)",
                                   "seed": "unset (best effort when set)"}



def _offered(values: dict[str, object], *missing: str) -> dict[str, object]:
    """``values`` with the settings the library does not have marked as such (LIBRARY_DEFAULTS has None)."""
    return {k: ("no such setting" if k in missing else v) for k, v in values.items()}


LIBRARIES: dict[str, tuple[dict[str, object], str]] = {
    "transformers": (TRANSFORMERS, "transformers 5: `GenerationConfig._get_default_generation_params()`, the "
                     "fields of `TrainingArguments`, `EarlyStoppingCallback`, a fresh `GPT2Config` / `LlamaConfig` "
                     "(a checkpoint's own config and `generation_config.json` override them)"),
    "PyTorch": (PYTORCH, "PyTorch: keyword defaults of `torch.nn`, `torch.optim`, `torch.autograd.gradcheck`, "
                "`torch.ao.quantization.quantize_dynamic`"),
    "PEFT": (PEFT, "PEFT: a fresh `LoraConfig`"),
    "Optuna": (OPTUNA, "Optuna: `create_study()` with no sampler or pruner, and the keyword defaults of its samplers "
               "and pruners"),
    "GGUF": (GGUF, "llama.cpp's GGUF formats: weights per block in `gguf.GGML_QUANT_SIZES`"),
    "llama.cpp": ({**LIBRARY_DEFAULTS["llama.cpp"], **LLAMA_CPP_EXTRA},
                  "llama.cpp: `struct common_params_sampling` and `common_params` in `common/common.h` (the "
                  "command-line tools and the server)"),
    "OpenAI API": ({**_offered(LIBRARY_DEFAULTS["OpenAI API"], "top_k", "min_p", "repetition_penalty"), **OPENAI_EXTRA},
                   "OpenAI API reference, Chat Completions: the documented default of each request field"),
    "transformers generate": (_offered(LIBRARY_DEFAULTS["transformers"], "frequency_penalty", "presence_penalty"),
                              "transformers 5: `GenerationConfig._get_default_generation_params()`; "
                              "`do_sample=False`, so `generate()` is greedy unless asked to sample"),
}

# Where a typical range comes from.
REFERENCES: dict[str, str] = {
    "explainers": "the German-language explainers the course covers (IBM Think on LLM parameters, a 2025 guide to "
                  "LLM hyperparameters)",
    "gpt2": "GPT-2's released configurations (Radford et al. 2019): 12/24/36/48 layers, width 768-1600, "
            "heads of 64 channels, 1,024 positions, dropout 0.1",
    "gpt3": "GPT-3 (Brown et al. 2020, appendix B): Adam with betas (0.9, 0.95), gradient clipping at 1.0, "
            "weight decay 0.1, warmup over 375M tokens, cosine decay to 10 %, batches of 0.5M-3.2M tokens, "
            "peak LR 6e-4 (125M parameters) to 0.6e-4 (175B)",
    "llama": "Llama 2 (Touvron et al. 2023): 32,000 tokens, 4,096 positions, RoPE base 10,000, heads of 128 "
             "channels, grouped-query attention in the 70B model (8 KV heads for 64 query heads)",
    "smollm2": "SmolLM2-135M's own file (read in notebook 04): 9 query and 3 KV heads, RoPE base 100,000, "
               "vocabulary 49,152",
    "holtzman": "Holtzman et al. 2020, The Curious Case of Neural Text Degeneration: nucleus sampling, p = 0.95 "
                "in its experiments",
    "minp": "Nguyen et al. 2024, min-p sampling: min_p 0.05-0.1",
    "ctrl": "Keskar et al. 2019, CTRL: a penalty of about 1.2 with greedy decoding balanced truthful text against "
            "repetition",
    "openai": "OpenAI API reference: temperature 0-2, top_p 0-1, frequency and presence penalty -2 … 2, "
              "logit_bias -100 … 100, at most 4 stop sequences",
    "srivastava": "Srivastava et al. 2014, Dropout: p 0.5 for hidden units; transformers (Vaswani et al. 2017, "
                  "GPT-2) use 0.1",
    "smith": "Smith 2017, Cyclical Learning Rates: the LR range test",
    "goyal": "Goyal et al. 2017, Accurate, Large Minibatch SGD: LR x k for a k times larger batch, with warmup",
    "lora": "Hu et al. 2021, LoRA: ranks 1-64 tried, small ranks enough for GPT-3; the update scaled by alpha/r",
    "rslora": "Kalajdzievski 2023, rank-stabilised LoRA: scale by alpha/sqrt(r) so that high ranks learn",
    "qlora": "Dettmers et al. 2023, QLoRA: 4-bit NF4 base with blocks of 64, LoRA dropout 0.05-0.1, LR 1e-4 to 2e-4",
    "gptq": "Frantar et al. 2023 (GPTQ) and Lin et al. 2024 (AWQ): 4-bit weights in groups of 128",
    "bergstra": "Bergstra & Bengio 2012: random search beats a grid when few hyperparameters matter",
    "hyperband": "Li et al. 2018, Hyperband: keep the best 1/eta at each budget, eta = 3",
    "prechelt": "Prechelt 1998, Early Stopping - But When?: stop after a few evaluations without improvement",
    "nvidia": "NVIDIA's architecture documents: bf16 arithmetic from Ampere (A100, RTX 30xx) on; V100 and T4 "
              "have fp16 only",
    "ieee": "the IEEE 754 / bfloat16 formats: significand bits 24 (fp32), 11 (fp16), 8 (bf16), computed in notebook 05",
    "course": "this course's own setting (helpers.runtime, README)",
    "measured": "measured in this notebook (see the section that introduces the setting)",
}


@dataclass(frozen=True)
class Knob:
    """One setting on a cheat sheet. ``defaults`` name entries of :data:`LIBRARIES` as ``(library, key)``."""

    name: str
    changes: str
    typical: str
    refs: tuple[str, ...]
    defaults: tuple[tuple[str, str], ...] = ()


def _k(name: str, changes: str, typical: str, refs: str, *defaults: str) -> Knob:
    """Short constructor: ``refs`` space-separated keys of REFERENCES, each default ``"library:key"``."""
    return Knob(name, changes, typical, tuple(refs.split()), tuple(tuple(d.split(":", 1)) for d in defaults))


_SAMPLING = ("transformers generate", "llama.cpp", "OpenAI API")


def _sampling(key: str) -> tuple[str, ...]:
    return tuple(f"{lib}:{key}" for lib in _SAMPLING)


SHEETS: dict[str, list[Knob]] = {
    "00_start_here": [
        _k("`COURSE_DEVICE`", "where tensors live", "`cpu`, `cuda`, `cuda:N`, `mps`; unset picks CUDA, then MPS, then CPU",
           "course"),
        _k("`COURSE_FAST`", "tiny sizes so that every notebook runs in seconds (how the tests run them)",
           "unset/0 for the course, 1 for a quick check", "course"),
    ],
    "01_weights_and_biases": [
        _k("weight initialisation (std)", "how far the first weights spread; too large saturates, too small "
           "starts slowly", "0.02 for GPT-style models", "gpt2",
           "transformers:GPT2Config.initializer_range"),
        _k("bias on/off", "whether a layer can shift its threshold; GPT-2 has biases, Llama has none",
           "on in small models, often off in large ones", "gpt2 llama",
           "PyTorch:nn.Linear.bias", "transformers:LlamaConfig.attention_bias"),
        _k("activation function", "the non-linearity after the weighted sum", "GELU (GPT-2), SiLU/SwiGLU (Llama, SmolLM2)",
           "gpt2 llama", "transformers:GPT2Config.activation_function", "transformers:LlamaConfig.hidden_act"),
    ],
    "02_backpropagation": [
        _k("learning rate (plain gradient descent)", "step length against the gradient",
           "below 2/λ_max of the loss's Hessian, else the steps overshoot (computed in this notebook)", "measured"),
        _k("finite-difference step ε", "precision of a numerical gradient check", "about 1e-6 to 1e-4 in float64 "
           "(the notebook's sweep finds the best); float32 is far less precise", "measured",
           "PyTorch:autograd.gradcheck.eps"),
    ],
    "03_tiny_gpt_end_to_end": [
        _k("vocabulary size (BPE merges)", "tokens per text and the size of the embedding table",
           "2,048 here; 32,000-50,257 in Llama 2 and GPT-2, 49,152 in SmolLM2", "gpt2 llama smollm2",
           "transformers:GPT2Config.vocab_size", "transformers:LlamaConfig.vocab_size"),
        _k("context length (block size)", "how many tokens the model sees at once", "128-2,048 in training",
           "explainers gpt2", "transformers:GPT2Config.n_positions", "transformers:LlamaConfig.max_position_embeddings"),
        _k("temperature", "sharpens (< 1) or flattens (> 1) the next-token distribution", "0 (greedy) to 2; "
           "about 0.8 tells stories here", "openai measured", *_sampling("temperature")),
    ],
    "04_inside_the_transformer": [
        _k("heads (`n_head`) and head size", "how many attention patterns a layer computes side by side",
           "head size 64-128", "gpt2 llama", "transformers:GPT2Config.n_head", "transformers:LlamaConfig.num_attention_heads"),
        _k("KV heads (grouped-query attention)", "KV cache size: divided by query heads / KV heads",
           "equal to the heads (no grouping) down to 1/8 of them", "llama smollm2",
           "transformers:LlamaConfig.num_key_value_heads"),
        _k("position scheme", "learned positions stop at the window; rotary ones run on, with a rising loss",
           "RoPE base 10,000 (Llama 2) to 100,000 (SmolLM2)", "llama smollm2",
           "transformers:LlamaConfig.rope_theta"),
        _k("normalisation epsilon", "keeps LayerNorm/RMSNorm finite for a near-zero input", "1e-6 to 1e-5",
           "gpt2 llama", "transformers:GPT2Config.layer_norm_epsilon", "transformers:LlamaConfig.rms_norm_eps"),
    ],
    "05_parameters_and_architecture": [
        _k("layers (`n_layer`)", "depth: parameters ≈ 12 C² per layer; capacity, and overfitting on little data",
           "12-48 in GPT-2", "gpt2", "transformers:GPT2Config.n_layer"),
        _k("width (`n_embd`)", "parameters grow with its square", "768-1,600 in GPT-2", "gpt2",
           "transformers:GPT2Config.n_embd"),
        _k("context window", "attention time and memory grow with its square", "128-2,048 in training",
           "explainers gpt2", "transformers:GPT2Config.n_positions"),
        _k("dropout", "zeroes a share of activations in training; trades training for validation loss",
           "0.1-0.5; 0 in large pretraining runs", "explainers srivastava llama",
           "PyTorch:nn.Dropout.p", "transformers:GPT2Config.resid_pdrop", "transformers:LlamaConfig.attention_dropout"),
        _k("precision", "bytes per parameter: 4 (fp32), 2 (bf16), 1 (int8), 0.5 (int4); AdamW training 16",
           "bf16 keeps 8 significant bits, about 2.4 digits", "ieee", "transformers:TrainingArguments.bf16"),
    ],
    "06_sampling_temperature_top_k_top_p": [
        _k("temperature", "the shape of the distribution; 0 = greedy", "0-1 for most uses (allowed 0-2); near 2 the "
           "text falls apart", "openai measured", *_sampling("temperature")),
        _k("`top_k`", "keeps the k most likely tokens (the support)", "40-50, as the defaults", "",
           *_sampling("top_k")),
        _k("`top_p`", "keeps the smallest set reaching mass p", "0.9-0.95 (1 = off)", "holtzman openai",
           *_sampling("top_p")),
        _k("`min_p`", "keeps tokens above min_p × the favourite's probability", "0.05-0.1 (0 = off)", "minp",
           *_sampling("min_p")),
        _k("sampling on/off", "greedy decoding unless sampling is asked for", "—", "", *_sampling("sampling")),
    ],
    "07_sampling_length_stops_penalties": [
        _k("`max_tokens`", "hard cap on the answer's length; time and cost grow linearly", "as the task needs",
           "openai", "transformers:GenerationConfig.max_length", "llama.cpp:n_predict",
           "OpenAI API:max_completion_tokens"),
        _k("`stop`", "ends the answer when a string appears", "a few strings", "openai", "OpenAI API:stop"),
        _k("`repetition_penalty`", "divides positive / multiplies negative logits of every token seen, prompt "
           "included, once per distinct token", "1.0-1.3 (1 = off)", "ctrl", *_sampling("repetition_penalty"),
           "llama.cpp:penalty_last_n"),
        _k("`frequency_penalty`", "subtracts penalty × count from a generated token's logit", "0.1-1 (allowed -2 … 2)",
           "openai", *_sampling("frequency_penalty")),
        _k("`presence_penalty`", "subtracts the penalty once from every generated token", "0.1-1 (allowed -2 … 2)",
           "openai", *_sampling("presence_penalty")),
        _k("`logit_bias`", "adds a fixed amount to chosen tokens' logits (-100 bans, +100 forces)", "-100 … 100",
           "openai", "OpenAI API:logit_bias"),
        _k("`seed`", "reproduces a sampled answer with the same inputs, batch, device and software", "any integer",
           "course", "llama.cpp:seed", "OpenAI API:seed"),
    ],
    "08_learning_rate": [
        _k("learning rate", "step size; too low stalls, too high spikes or diverges", "1e-4 to 1e-1 (search on a log "
           "scale); 6e-4 for a 125M GPT with AdamW", "explainers gpt3 smith",
           "transformers:TrainingArguments.learning_rate", "PyTorch:optim.AdamW.lr"),
        _k("warmup", "a ramp from a small LR at the start; stabilises Adam's first steps", "0-10 % of the steps",
           "gpt3 goyal", "transformers:TrainingArguments.warmup_steps"),
        _k("schedule", "the LR over training: constant, step, cosine, one-cycle", "cosine or linear decay to ~10 %",
           "gpt3", "transformers:TrainingArguments.lr_scheduler_type"),
    ],
    "09_batch_size_and_optimizers": [
        _k("batch size", "gradient noise vs memory and steps per token", "16-512 sequences", "explainers gpt3",
           "transformers:TrainingArguments.per_device_train_batch_size"),
        _k("gradient accumulation", "a larger effective batch without more memory", "1 to batch / micro-batch",
           "goyal", "transformers:TrainingArguments.gradient_accumulation_steps"),
        _k("LR for a k× larger batch", "keeps the progress per token", "×k (linear) or ×√k (square root)", "goyal"),
        _k("optimiser", "how gradients become updates: SGD, momentum, RMSprop, Adam, AdamW", "AdamW for transformers",
           "gpt3", "transformers:TrainingArguments.optim"),
        _k("Adam betas", "memory of the gradient's mean and square", "(0.9, 0.95) to (0.9, 0.999)", "gpt3",
           "transformers:TrainingArguments.adam_beta1", "transformers:TrainingArguments.adam_beta2",
           "PyTorch:optim.AdamW.betas"),
        _k("SGD momentum", "averages past gradients", "0.9", "goyal", "PyTorch:optim.SGD.momentum"),
        _k("gradient clipping (max norm)", "shrinks a too-long gradient; guards against spikes", "1.0", "gpt3",
           "transformers:TrainingArguments.max_grad_norm"),
    ],
    "10_regularization_and_early_stopping": [
        _k("weight decay", "shrinks weights a little each step", "0.01-0.1 with AdamW", "gpt3",
           "transformers:TrainingArguments.weight_decay", "PyTorch:optim.AdamW.weight_decay"),
        _k("dropout", "zeroes activations in training", "0.1-0.5", "explainers srivastava",
           "PyTorch:nn.Dropout.p", "transformers:GPT2Config.resid_pdrop"),
        _k("early stopping patience", "evaluations without improvement before stopping", "a few evaluations",
           "prechelt", "transformers:EarlyStoppingCallback.early_stopping_patience",
           "transformers:TrainingArguments.load_best_model_at_end"),
        _k("evaluation interval", "how often the validation loss is measured", "often enough to see the turn",
           "measured", "transformers:TrainingArguments.eval_strategy"),
        _k("seed", "fixes initial weights, batches and dropout", "any integer, fixed and reported", "course",
           "transformers:TrainingArguments.seed"),
    ],
    "11_hyperparameter_optimization": [
        _k("search strategy (sampler)", "how the next configuration is chosen: grid, random, TPE, CMA-ES",
           "random or TPE", "bergstra", "Optuna:create_study.sampler"),
        _k("random start-up trials", "trials drawn at random before TPE uses the results", "10-20",
           "bergstra", "Optuna:TPESampler.n_startup_trials"),
        _k("pruner", "stops unpromising trials early", "median or Hyperband", "hyperband",
           "Optuna:create_study.pruner", "Optuna:MedianPruner.n_startup_trials", "Optuna:MedianPruner.n_warmup_steps",
           "Optuna:HyperbandPruner.reduction_factor"),
        _k("search space", "ranges and scales; learning rates on a log scale", "LR 1e-4 to 1e-1",
           "explainers"),
    ],
    "12_fine_tuning_and_lora": [
        _k("LoRA rank r", "size (and capacity) of the low-rank update", "4-64", "lora", "PEFT:LoraConfig.r"),
        _k("LoRA alpha", "scale of the update: alpha/r (alpha/√r with rank-stabilised LoRA)", "r to 2r",
           "lora rslora", "PEFT:LoraConfig.lora_alpha", "PEFT:LoraConfig.use_rslora"),
        _k("LoRA dropout", "dropout on the adapter's input", "0-0.1", "qlora", "PEFT:LoraConfig.lora_dropout"),
        _k("fine-tuning learning rate", "full fine-tuning needs a smaller LR than LoRA", "LoRA 1e-4 to 2e-4; "
           "full fine-tuning below it", "qlora", "transformers:TrainingArguments.learning_rate"),
        _k("frozen layers", "transfer learning: train the top, keep the bottom", "0 to all but the last blocks",
           "measured"),
    ],
    "13_quantization": [
        _k("bits per weight", "size vs rounding error: 16, 8, 4", "8 almost free; 4 with good scales", "qlora gptq",
           "PyTorch:ao.quantization.quantize_dynamic.dtype"),
        _k("scale granularity / group size", "per tensor, per channel or per group of weights; smaller groups "
           "cost more scales and lose less", "groups of 32-128", "gptq qlora", "GGUF:Q8_0.block", "GGUF:Q4_0.block",
           "GGUF:Q4_1.block"),
        _k("16-bit format", "bf16 keeps fp32's range with 8 significant bits; fp16 more bits, less range",
           "bf16 where the hardware has it (Ampere or later), else fp16", "nvidia ieee",
           "transformers:TrainingArguments.bf16"),
    ],
}


def _fmt(v: object) -> str:
    if v is None:
        return "unset (off)"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:g}"
    return str(v)


def default(library: str, key: str) -> str:
    """A library's default for ``key``, formatted; KeyError when the data does not hold it."""
    values, _ = LIBRARIES[library]
    return _fmt(values[key])


def _label(library: str) -> str:
    return "transformers" if library == "transformers generate" else library


def render_sheet(name: str) -> str:
    """The Markdown cheat sheet of notebook ``name`` (e.g. ``"08_learning_rate"``)."""
    if name not in SHEETS:
        raise ValueError(f"name must be one of the notebooks {sorted(SHEETS)}, got {name!r}")
    refs: list[str] = []
    libs: list[str] = []
    lines = ["| setting | what it changes | typical | default when unset |", "|---|---|---|---|"]
    for k in SHEETS[name]:
        shown = []
        for lib, key in k.defaults:
            shown.append(f"{_label(lib)} `{key}`: {default(lib, key)}")
            libs += [lib] if lib not in libs else []
        refs += [r for r in k.refs if r not in refs]
        marks = "".join(f"[{list(REFERENCES).index(r) + 1}]" for r in k.refs)
        lines.append(f"| {k.name} | {k.changes} | {(k.typical + ' ' + marks).strip()} | {'; '.join(shown) or '—'} |")
    refs.sort(key=list(REFERENCES).index)
    lines += ["", "Sources: " + "; ".join(f"[{list(REFERENCES).index(r) + 1}] {REFERENCES[r]}" for r in refs) + "."]
    if libs:
        lines += ["Defaults: " + "; ".join(LIBRARIES[lib][1] for lib in libs) + "."]
    return "\n".join(lines)


class CheatSheet:
    """What :func:`cheat_sheet` returns: Jupyter renders it as Markdown, ``str()`` gives the Markdown text."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.text = "## Cheat sheet\n\n" + render_sheet(name)

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def cheat_sheet(name: str) -> CheatSheet:
    """The cheat sheet for the notebook ``name``, shown as a table when it is a cell's last expression."""
    return CheatSheet(name)


def render_all() -> str:
    """CHEATSHEET.md's text: every notebook's cheat sheet in course order."""
    parts = [
        "# Cheat sheet: every setting the course teaches",
        "",
        "One table per notebook, as shown at its end: what each setting changes, a typical range with its source, "
        "and what `transformers`, PyTorch, PEFT, Optuna, llama.cpp and the OpenAI API do when it is left unset. "
        "Generated from `helpers/cheatsheet.py` by `python -m helpers.cheatsheet`; `tests/test_cheatsheet.py` "
        "fails when it is out of date and checks the defaults against the installed packages.",
    ]
    for name in SHEETS:
        parts += ["", f"## {name}", "", render_sheet(name)]
    return "\n".join(parts) + "\n"


def main() -> None:
    CHEATSHEET_MD.write_text(render_all(), encoding="utf-8")
    print(f"wrote {CHEATSHEET_MD.name}")


if __name__ == "__main__":
    main()
