"""Our GPT to and from Hugging Face transformers: which class computes each block, its weights, its tokenizer.

Each block maps onto the one transformers class that computes the same function, weight for weight:
- GPT-2 block (layernorm, learned positions), plain MLP           -> GPT2LMHeadModel
- modern block (rmsnorm, rope), gated MLP                          -> LlamaForCausalLM
- modern block, plain MLP                                          -> ArceeForCausalLM (LLaMA with W_down(act(W_up x)))
- modern block with qk_norm, gated MLP, no biases                  -> Qwen3ForCausalLM
- modern block with qk_norm, plain MLP, no biases                  -> ApertusForCausalLM
Anything else (a gated MLP in the GPT-2 block, a learnable swish, a mixed block) no class computes,
and is refused in one line. RoPE needs no permutation: model.py rotates the half-split pairs as
transformers' LLaMA does. A vocabulary padded past the tokenizer's size is cut back to it, so the
exported model can only produce real tokens (sample.py's vocab_limit does the same).

transformers is imported here only: scripts that never touch it do not pay its import time.
"""

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from core.entry import UserError
from data.tokenizer import CharTokenizer, tokenizer_from_meta
from model import GPT, MLP_VARIANTS, GPTConfig, mlp_hidden_size

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")  # OpenAI's four sizes on the Hugging Face hub
DATA_META_FILE = "data_meta.json"  # our tokenizer's meta.json fields, written beside the weights
LAYERNORM_EPS, RMSNORM_EPS = 1e-5, 1e-6  # model.py's LayerNorm (torch's default) and RMSNorm
# our activation names -> transformers' hidden_act / activation_function names
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu", "relu2": "relu2", "silu": "silu"}
# transformers' names -> ours; gelu_new is GPT-2's own tanh formula (pytorch's tanh GELU computes the same)
FROM_HF_ACTIVATIONS = {**{hf: ours for ours, hf in HF_ACTIVATIONS.items()}, "gelu_new": "gelu_tanh"}
GATED_MLP = {"llama": True, "arcee": False, "qwen3": True, "apertus": False}  # the modern block's classes: is their MLP gated
QK_NORM_TYPES = ("qwen3", "apertus")  # those with per-head q/k RMSNorm (and no MLP biases)


class HFError(UserError, ValueError):
    """A model that cannot cross to or from transformers, or a folder that cannot be written or read; one line."""


def model_type(config):
    """The transformers model_type that computes `config`'s model ('gpt2', 'llama', 'arcee', 'qwen3'), or HFError saying why none does."""
    variant = MLP_VARIANTS[config.mlp]
    if config.swish_beta:
        raise HFError("no transformers class computes a learnable swish (swish_beta=True)")
    if config.norm == "layernorm" and config.pos == "learned" and not config.qk_norm:
        if variant.gated:
            raise HFError(f"no transformers class computes a gated MLP (mlp={config.mlp}) in the GPT-2 block; use norm=rmsnorm, pos=rope")
        return "gpt2"
    if config.norm != "rmsnorm" or config.pos != "rope":
        raise HFError(
            f"no transformers class computes norm={config.norm} with pos={config.pos}; export the GPT-2 block or norm=rmsnorm, pos=rope"
        )
    if not config.qk_norm:
        return "llama" if variant.gated else "arcee"
    if config.bias:
        raise HFError("qk_norm exports as Qwen3 or Apertus, whose MLPs have no biases: use bias=False")
    return "qwen3" if variant.gated else "apertus"


def hf_config(config, vocab_size, eot_id):
    """The transformers config of our GPTConfig (checked by model_type), for a vocabulary of `vocab_size` tokens."""
    from transformers import AutoConfig

    kind = model_type(config)
    act = HF_ACTIVATIONS[MLP_VARIANTS[config.mlp].activation]
    common = dict(vocab_size=vocab_size, tie_word_embeddings=config.tie_embeddings, bos_token_id=eot_id, eos_token_id=eot_id)
    if kind == "gpt2":
        return AutoConfig.for_model(
            "gpt2",
            n_positions=config.block_size,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            n_inner=mlp_hidden_size(config),
            activation_function=act,
            layer_norm_epsilon=LAYERNORM_EPS,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            **common,
        )
    return AutoConfig.for_model(
        kind,
        hidden_size=config.n_embd,
        intermediate_size=mlp_hidden_size(config),
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_head,
        head_dim=config.n_embd // config.n_head,
        hidden_act=act,
        max_position_embeddings=config.block_size,
        rms_norm_eps=RMSNORM_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        attention_bias=config.bias,
        **({} if kind in QK_NORM_TYPES else {"mlp_bias": config.bias}),
        **common,
    )


def weight_pairs(config, kind):
    """(our name, transformers name, how) for every tensor: how is None (as is), 'T' (GPT-2's Conv1D stores the
    transpose) or (i, 3), the i-th third of the rows of our fused c_attn (q, k, v)."""
    pairs = [("transformer.ln_f.weight", "transformer.ln_f.weight" if kind == "gpt2" else "model.norm.weight", None)]
    for i in range(config.n_layer):
        ours = f"transformer.h.{i}."
        pairs += _gpt2_layer(ours, f"transformer.h.{i}.") if kind == "gpt2" else _modern_layer(config, kind, ours, f"model.layers.{i}.")
    if kind == "gpt2":
        pairs += [("transformer.wte.weight", "transformer.wte.weight", None), ("transformer.wpe.weight", "transformer.wpe.weight", None)]
        pairs += [("transformer.ln_f.bias", "transformer.ln_f.bias", None)]
    else:
        pairs += [("transformer.wte.weight", "model.embed_tokens.weight", None)]
    pairs.append(("lm_head.weight", "lm_head.weight", None))
    return pairs


def _gpt2_layer(ours, theirs):
    """One GPT-2 block: the same names, every Linear transposed (Conv1D), biases included (GPT-2 always has them)."""
    linear = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    pairs = [(f"{ours}{name}.weight", f"{theirs}{name}.weight", "T") for name in linear]
    pairs += [(f"{ours}{name}.bias", f"{theirs}{name}.bias", None) for name in linear]
    pairs += [(f"{ours}{name}.{p}", f"{theirs}{name}.{p}", None) for name in ("ln_1", "ln_2") for p in ("weight", "bias")]
    return pairs


def _modern_layer(config, kind, ours, theirs):
    """One LLaMA-family block: q, k, v split out of c_attn, the MLP under LLaMA's names, per-head q/k norms (Qwen3, Apertus)."""
    params = ("weight", "bias") if config.bias else ("weight",)
    norms = ("attention_layernorm", "feedforward_layernorm") if kind == "apertus" else ("input_layernorm", "post_attention_layernorm")
    mlp = (
        [("w_gate", "gate_proj"), ("w_up", "up_proj"), ("w_down", "down_proj")]
        if MLP_VARIANTS[config.mlp].gated
        else [("c_fc", "up_proj"), ("c_proj", "down_proj")]
    )
    pairs = [(f"{ours}attn.c_attn.{p}", f"{theirs}self_attn.{qkv}_proj.{p}", (i, 3)) for p in params for i, qkv in enumerate("qkv")]
    pairs += [(f"{ours}attn.c_proj.{p}", f"{theirs}self_attn.o_proj.{p}", None) for p in params]
    pairs += [(f"{ours}mlp.{a}.{p}", f"{theirs}mlp.{b}.{p}", None) for a, b in mlp for p in params]
    pairs += [
        (f"{ours}ln_1.weight", f"{theirs}{norms[0]}.weight", None),
        (f"{ours}ln_2.weight", f"{theirs}{norms[1]}.weight", None),
    ]
    if config.qk_norm:
        pairs += [(f"{ours}attn.{n}.weight", f"{theirs}self_attn.{n}.weight", None) for n in ("q_norm", "k_norm")]
    return pairs


def to_hf_state(model, vocab_size):
    """transformers' state dict for our GPT, the vocabulary cut to `vocab_size` rows; bias=False in the GPT-2 block exports zero biases."""
    kind = model_type(model.config)
    ours = model.state_dict()
    state = {}
    for our_name, hf_name, how in weight_pairs(model.config, kind):
        tensor = ours.get(our_name)
        if tensor is None:  # GPT-2 has biases everywhere: zeros compute what our bias-free layer does
            tensor = torch.zeros(ours[our_name.replace(".bias", ".weight")].shape[0])
        if our_name in ("transformer.wte.weight", "lm_head.weight"):
            tensor = tensor[:vocab_size]
        if how == "T":
            tensor = tensor.t()
        elif how is not None:
            tensor = tensor.chunk(how[1])[how[0]]
        state[hf_name] = tensor.detach().float().contiguous()
    return state


def export_model(model, meta, folder, overwrite=False):
    """Write our GPT, trained on data whose meta.json is `meta`, as a transformers folder; returns its model_type.

    The folder holds config.json, model.safetensors, the tokenizer and data_meta.json. It appears whole
    or not at all: everything is written to a temporary folder beside it, then renamed into place. An
    existing folder is refused unless `overwrite`; a model no class computes is refused before any writing.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise HFError(f"{folder} already exists; choose another hf_dir or pass --overwrite=True")
    if folder.exists() and not folder.is_dir():
        raise HFError(f"{folder} is a file, not a folder")
    kind = model_type(model.config)
    tokenizer = tokenizer_from_meta(meta)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as tmp:
        staging = Path(tmp) / "export"
        build_hf_model(model.eval(), meta).save_pretrained(staging)
        save_tokenizer(tokenizer, staging, model.config.block_size)
        (staging / DATA_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _move_into_place(staging, folder)
    return kind


def build_hf_model(model, meta):
    """The transformers model computing our `model`, for the tokenizer that `meta` describes."""
    from transformers import AutoModelForCausalLM

    config = hf_config(model.config, meta["vocab_size"], meta["eot_id"])
    hf_model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    hf_model.load_state_dict(to_hf_state(model, meta["vocab_size"]), strict=True)
    return hf_model


def _move_into_place(staging, folder):
    """Rename the finished `staging` folder to `folder`, replacing an old one only once the new one is complete."""
    old = None
    if folder.exists():
        old = staging.parent / "previous"
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old)


def save_tokenizer(tokenizer, folder, block_size):
    """Write our tokenizer (data/tokenizer.py) as a transformers fast tokenizer that AutoTokenizer loads offline.

    Token for token the same ids, but for one convention: transformers reads the text "<|endoftext|>" as the
    special token, where ours reads it as plain text.
    """
    from transformers import PreTrainedTokenizerFast

    if isinstance(tokenizer, CharTokenizer):
        backend, eot = _char_backend(tokenizer)
    else:
        backend, eot = _tiktoken_backend(tokenizer.encoding, folder)
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eot, bos_token=eot, model_max_length=block_size)
    hf_tokenizer.save_pretrained(folder)


def _tiktoken_backend(encoding, folder):
    """A `tokenizers` byte-level BPE with the encoding's ranks, split pattern and special tokens (transformers' converter)."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = folder / "vocab.tiktoken"  # the converter reads tiktoken's file format: base64 token, rank
    ranks.write_text(
        "".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(encoding._mergeable_ranks.items(), key=lambda x: x[1]))
    )
    try:
        backend = TikTokenConverter(
            vocab_file=str(ranks), pattern=encoding._pat_str, extra_special_tokens=encoding._special_tokens
        ).converted()
    finally:
        ranks.unlink()
    eot = encoding.decode_single_token_bytes(encoding.eot_token).decode()
    return backend, eot


def _char_backend(tokenizer):
    """A `tokenizers` tokenizer with one token per character, ids as ours, and decoding that joins them back."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(tokenizer.vocab)}
    eot = tokenizer.vocab[tokenizer.eot_id]
    backend = Tokenizer(models.WordLevel(vocab, unk_token=eot))  # an unseen character must map somewhere: end-of-text
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character its own word
    backend.decoder = decoders.Fuse()  # join without the spaces a word-level decoder would put between tokens
    return backend, eot


# ---- Import: a transformers model (OpenAI's GPT-2 from the hub, or a folder) as our GPT ----------


def check_source(source):
    """Raise HFError unless `source` is one of GPT2_NAMES or a folder holding a transformers config.json."""
    if source in GPT2_NAMES:
        return
    path = Path(source)
    if (path / "config.json").is_file():
        return
    if path.is_dir():
        raise HFError(f"{source} holds no config.json: not a transformers model folder")
    if source.startswith("gpt2"):
        raise HFError(f"unknown GPT-2 name {source!r}; OpenAI's are {', '.join(GPT2_NAMES)}")
    raise HFError(f"init_from={source!r} is neither scratch, resume, one of {', '.join(GPT2_NAMES)}, nor a transformers model folder")


def mlp_name(activation, gated):
    """Our MLP_VARIANTS key for a transformers activation name in a gated or plain MLP, or HFError."""
    ours = FROM_HF_ACTIVATIONS.get(activation)
    for name, variant in MLP_VARIANTS.items():
        if variant.activation == ours and variant.gated == gated and not (name == "gelu_tanh" and gated):
            return name
    raise HFError(f"no MLP of ours computes {'a gated' if gated else 'a plain'} MLP with activation {activation!r}")


def gpt_config_from_hf(config):
    """Our GPTConfig fields (a dict) for a transformers config, or HFError naming what we do not compute."""
    kind = config.model_type
    if kind == "gpt2":
        _require(config, layer_norm_epsilon=LAYERNORM_EPS, scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False)
        fields = dict(n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd, block_size=config.n_positions, bias=True)
        fields.update(mlp=mlp_name(config.activation_function, gated=False), mlp_hidden=config.n_inner)
    elif kind in GATED_MLP:
        heads, rope = config.num_attention_heads, config.rope_parameters or {}
        _require(config, num_key_value_heads=heads, head_dim=config.hidden_size // heads, rms_norm_eps=RMSNORM_EPS)
        _require(
            config,
            use_sliding_window=False,
            **({"attention_bias": False} if kind in QK_NORM_TYPES else {"mlp_bias": config.attention_bias}),
        )
        if rope.get("rope_type", "default") != "default":
            raise HFError(f"{kind} with rope_type={rope['rope_type']!r}: only the default rotary positions are computed here")
        fields = dict(n_layer=config.num_hidden_layers, n_head=heads, n_embd=config.hidden_size, block_size=config.max_position_embeddings)
        fields.update(
            bias=config.attention_bias,
            norm="rmsnorm",
            pos="rope",
            rope_theta=rope.get("rope_theta", 10000.0),
            qk_norm=kind in QK_NORM_TYPES,
        )
        fields.update(mlp=mlp_name(config.hidden_act, gated=GATED_MLP[kind]), mlp_hidden=config.intermediate_size)
    else:
        raise HFError(f"a {kind} model is not a block we compute; supported: gpt2, {', '.join(GATED_MLP)}")
    fields.update(vocab_size=config.vocab_size, tie_embeddings=config.tie_word_embeddings)
    return fields


def _require(config, **expected):
    """HFError unless each attribute the config has equals `expected` (an attribute it lacks is taken as matching)."""
    for key, value in expected.items():
        if getattr(config, key, value) != value:
            raise HFError(
                f"a {config.model_type} model with {key}={getattr(config, key)!r} is not computed here (we compute {key}={value!r})"
            )


def load_hf_model(source):
    """transformers' model for `source` (a GPT-2 name, downloaded, or a folder) in float32, with its config; HFError if it cannot be had."""
    from transformers import AutoConfig, AutoModelForCausalLM

    check_source(source)
    try:
        config = AutoConfig.from_pretrained(source)
        gpt_config_from_hf(config)  # refuse an unsupported model before reading its weights
        return AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except HFError:
        raise
    except Exception as e:  # hub and file problems arrive as many types; a GPT-2 name without network among them
        if source in GPT2_NAMES:
            raise HFError(
                f"could not download {source} from the Hugging Face hub ({type(e).__name__}); init_from={source} needs network"
            ) from None
        raise HFError(f"could not load the transformers model in {source}: {str(e).splitlines()[0][:200]}") from None


def gpt_from_hf(hf_model, dropout=0.0, block_size=None):
    """Our GPT computing `hf_model`'s function (with `dropout` in training); block_size cuts a learned position table."""
    fields = gpt_config_from_hf(hf_model.config)
    block_size = block_size or fields["block_size"]
    if fields.get("pos", "learned") == "learned" and block_size > fields["block_size"]:
        raise HFError(f"block_size={block_size} is longer than the {fields['block_size']} positions the model learned")
    config = GPTConfig(**{**fields, "block_size": fields["block_size"], "dropout": dropout})
    if config.mlp_hidden == mlp_hidden_size(GPTConfig(**{**fields, "mlp_hidden": None})):
        config.mlp_hidden = None  # the size our rule gives: recorded as the rule, as a run of ours would be
    model = GPT(config)
    hf_state = hf_model.state_dict()
    state, parts = {}, {}
    for our_name, hf_name, how in weight_pairs(config, model_type(config)):
        tensor = hf_state[hf_name]
        if how is None or how == "T":
            state[our_name] = tensor.t() if how == "T" else tensor
        else:
            parts.setdefault(our_name, [None] * how[1])[how[0]] = tensor
    state.update({name: torch.cat(tensors) for name, tensors in parts.items()})
    model.load_state_dict({name: tensor.float() for name, tensor in state.items()}, strict=True)
    if block_size < config.block_size:
        crop_block_size(model, block_size)
    return model


def crop_block_size(model, block_size):
    """Shorten the model's context to `block_size` (learned positions keep their first rows), as nanoGPT's crop does."""
    model.config.block_size = block_size
    if model.config.pos == "learned":
        wpe = model.transformer.wpe
        wpe.weight = torch.nn.Parameter(wpe.weight[:block_size].detach().clone())
        wpe.num_embeddings = block_size


def pretrained_data_meta(source):
    """The tokenizer fields an export of ours recorded beside its weights (data_meta.json); None for other models."""
    path = Path(source) / DATA_META_FILE
    if source in GPT2_NAMES or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise HFError(f"cannot read {path}: {e}") from None


def check_tokenizer(source, data_meta):
    """HFError unless the data was tokenized as the pretrained model expects: GPT-2's BPE for OpenAI's weights,
    the tokenizer data_meta.json records for an export of ours (another folder's tokenizer cannot be checked)."""
    if source in GPT2_NAMES:
        if data_meta["tokenizer"] not in ("gpt2", "r50k_base"):
            raise HFError(
                f"init_from={source} reads GPT-2 BPE tokens; prepare the data with --tokenizer=gpt2 (it has {data_meta['tokenizer']})"
            )
        return
    expected = pretrained_data_meta(source)
    if expected is None:
        return
    fields = ("tokenizer", "vocab_size", "eot_id", "vocab")
    ours, theirs = ({k: m.get(k) for k in fields} for m in (data_meta, expected))
    same_bpe = {ours["tokenizer"], theirs["tokenizer"]} <= {"gpt2", "r50k_base"}  # the same tokens under two names
    if ours != theirs and not (same_bpe and ours["vocab_size"] == theirs["vocab_size"]):
        raise HFError(
            f"the data's tokenizer ({ours['tokenizer']}, {ours['vocab_size']} tokens) is not the one the model in {source} "
            f"was trained with ({theirs['tokenizer']}, {theirs['vocab_size']} tokens)"
        )
