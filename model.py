"""
A GPT-2 style decoder-only language model whose MLP is chosen by name.

Read top to bottom: the config, causal self-attention (with a KV cache for generation), the MLP
variants and their table, the transformer block, and the GPT itself.

The MLP variants (the only thing a SwiGLU-vs-GELU comparison should change):
- plain, two matrices, hidden 4*d:   out = W_down(act(W_up x))       gelu, gelu_tanh, relu, relu2
- gated, three matrices, hidden ~8d/3: out = W_down(act(W_gate x) * W_up x)   swiglu, geglu, reglu
SwiGLU is Swish(x W_gate) ⊙ (x W_up) followed by a down-projection (Shazeer 2020, "GLU Variants
Improve Transformer", arXiv:2002.05202). It is *not* the single-input formula x·sigmoid(βx + γ)
that is sometimes quoted for it: that is Swish with an offset. A learnable β (and γ) inside the
gate is offered as an option (`swish_beta=True`), initialised to β=1, γ=0 so it starts as SiLU.

The gated hidden size follows the 2/3 rule (`gated_hidden_size`): 2/3 of 4*d, rounded up to a
multiple of `multiple_of`, so a gated MLP has the parameters and FLOPs of the 4*d plain MLP
(exactly at d = 384 and 768, within 1% at the other common widths with the default of 16).

The block is GPT-2's by default; four switches in GPTConfig make it LLaMA-style, one at a time:
`norm='rmsnorm'` (RMSNorm for every LayerNorm), `pos='rope'` (rotary q and k, no position table),
`qk_norm=True` (RMSNorm on each head's q and k, as Qwen3) and `tie_embeddings=False` (a separate
lm_head). With `bias=False` and mlp='swiglu' that is the LLaMA block. The defaults build exactly
the GPT-2 model, so a checkpoint whose model_args lack these keys loads as before.

References: nanoGPT (karpathy/nanoGPT) for the layout and init; GPT-2 (Radford et al. 2019);
Shazeer 2020 for the GLU variants; So et al. 2021 ("Primer") for squared ReLU; Zhang & Sennrich
2019 for RMSNorm; Su et al. 2021 ("RoFormer") for rotary positions, in the half-split layout of
Hugging Face's LlamaForCausalLM; Touvron et al. 2023 (LLaMA) for the combination.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context the model sees
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    mlp: str = "gelu"  # a key of MLP_VARIANTS
    multiple_of: int = 16  # gated hidden size is rounded up to this (LLaMA uses 256)
    mlp_hidden: int | None = None  # explicit MLP hidden size; None = the rule for `mlp`
    swish_beta: bool = False  # swiglu only: gate is x*sigmoid(beta*x + gamma) with learnable beta, gamma
    mlp_init: str = "gpt2"  # 'gpt2': every matrix N(0, 0.02); 'matched': a gated MLP's W_up scaled to the plain MLP's output RMS
    # the block: GPT-2's by default; norm='rmsnorm', pos='rope', qk_norm=True, tie_embeddings=False is LLaMA's
    norm: str = "layernorm"  # 'layernorm' (GPT-2) or 'rmsnorm' (LLaMA): every norm of the blocks and ln_f
    pos: str = "learned"  # 'learned' (a wpe table, GPT-2) or 'rope' (q and k rotated per head, no table)
    rope_theta: float = 10000.0  # pos='rope': the base of the rotation frequencies
    qk_norm: bool = False  # RMSNorm (weight of size head_dim) on each head's q and k before attention (Qwen3)
    tie_embeddings: bool = True  # lm_head shares wte's matrix (GPT-2); False: a separate lm_head (LLaMA)
    # speed only: these change how the model computes, never what (a resume may change them)
    loss_chunk_size: int = 0  # >0: compute the loss this many tokens at a time without full logits
    fused_gate_up: bool = False  # gated MLPs: one matmul for W_gate and W_up (the same two parameters)
    compute_dtype: str | None = None  # 'bfloat16': activations in bf16, weights kept fp32 (no autocast needed)

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "multiple_of"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.mlp_hidden is not None and (not isinstance(self.mlp_hidden, int) or self.mlp_hidden <= 0):
            raise ValueError(f"mlp_hidden must be a positive integer or None, got {self.mlp_hidden!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.mlp not in MLP_VARIANTS:
            raise ValueError(f"mlp must be one of {', '.join(MLP_VARIANTS)}; got {self.mlp!r}")
        if self.swish_beta and self.mlp != "swiglu":
            raise ValueError(f"swish_beta applies to mlp='swiglu' only; got mlp={self.mlp!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.loss_chunk_size < 0:
            raise ValueError(f"loss_chunk_size must be >= 0, got {self.loss_chunk_size!r}")
        if self.compute_dtype not in (None, "float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be None, 'float32' or 'bfloat16'; got {self.compute_dtype!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {self.norm!r}")
        if self.mlp_init not in MLP_INITS:
            raise ValueError(f"mlp_init must be one of {', '.join(MLP_INITS)}; got {self.mlp_init!r}")
        if self.pos not in POSITIONS:
            raise ValueError(f"pos must be one of {', '.join(POSITIONS)}; got {self.pos!r}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"pos='rope' needs an even head size; n_embd/n_head = {self.n_embd // self.n_head}")
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta!r}")


NORMS = ("layernorm", "rmsnorm")
MLP_INITS = ("gpt2", "matched")
POSITIONS = ("learned", "rope")


# GPTConfig fields that change speed and memory but not the function computed
SPEED_FIELDS = ("loss_chunk_size", "fused_gate_up", "compute_dtype")


def cast_like(param, x):
    """`param` in the dtype of activations `x` (None stays None).

    A no-op in float32 and under autocast (which casts anyway); with compute_dtype='bfloat16' the
    fp32 master weights are cast on use and their gradients flow back in fp32.
    """
    return None if param is None else param.to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """PyTorch's LayerNorm (bias optional), computed in at least float32 whatever the activations' dtype."""

    def forward(self, x):
        # as autocast does: in bf16 the weight's gradient, a sum over every token, loses most of its precision
        return super().forward(at_least_float32(x)).to(x.dtype)


class RMSNorm(nn.RMSNorm):
    """x * rsqrt(mean(x^2) + eps) * weight (no bias, weight starts at ones), computed in at least float32 as LayerNorm is.

    eps is 1e-6, the default of LLaMA's and Qwen3's configs (a LlamaForCausalLM export sets rms_norm_eps to it).
    """

    def __init__(self, dim):
        super().__init__(dim, eps=1e-6)

    def forward(self, x):
        return super().forward(at_least_float32(x)).to(x.dtype)


def build_norm(config):
    """The block's normalisation for `config.norm` (a LayerNorm's bias follows `config.bias`; RMSNorm has none)."""
    return RMSNorm(config.n_embd) if config.norm == "rmsnorm" else LayerNorm(config.n_embd, bias=config.bias)


class Linear(nn.Linear):
    """nn.Linear whose weights follow the activations' dtype (see cast_like)."""

    def forward(self, x):
        return F.linear(x, cast_like(self.weight, x), cast_like(self.bias, x))


def residual_projection(in_features, out_features, bias):
    """A Linear layer that writes into the residual stream.

    The tag gives it GPT-2's depth-scaled init whatever its name, so attention and every MLP
    variant start their residual writes at the same scale (a fair comparison needs that).
    """
    layer = Linear(in_features, out_features, bias=bias)
    layer.writes_residual = True
    return layer


class KVCache:
    """Keys and values of every layer for the tokens generated so far (batch, head, time, dim)."""

    def __init__(self, config, batch_size, device, dtype):
        shape = (batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.length = 0  # tokens already stored

    def update(self, layer, k, v):
        """Store this step's k, v for `layer`; return all keys and values so far."""
        start, end = self.length, self.length + k.size(2)
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


def rope_tables(positions, head_dim, theta):
    """cos and sin (T, head_dim) of the rotary angles position * theta^(-2i/head_dim), in float32.

    Each frequency appears twice, for the two halves of a head (the layout of rotate_half).
    """
    inv_freq = theta ** -(torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x, rope):
    """Rotate x (B, n_head, T, head_dim): the pair (x[i], x[i + head_dim/2]) by angle i of each position.

    The half-split pairing of Hugging Face's LLaMA (rotate_half), so c_attn's q and k rows export as they are.
    """
    cos, sin = (t.to(x.dtype) for t in rope)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, config, layer_index):
        super().__init__()
        self.layer_index = layer_index
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = residual_projection(config.n_embd, config.n_embd, config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.qk_norm:
            self.q_norm = RMSNorm(config.n_embd // config.n_head)
            self.k_norm = RMSNorm(config.n_embd // config.n_head)
        self.qk_norm = config.qk_norm

    def heads(self, x, rope=None):
        """q, k, v (B, n_head, T, head_dim) of x (B, T, C), q and k normed and rotated as the switches say.

        A method of its own so that core/diagnostics.py can recompute the attention logits SDPA never materialises.
        """
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)  # the cache then holds rotated keys
        return q, k, v

    def forward(self, x, cache=None, rope=None):
        """rope: (cos, sin) of the positions of x's tokens (see rope_tables), or None for learned positions."""
        B, T, C = x.size()
        q, k, v = self.heads(x, rope)
        mask, is_causal = None, True
        if cache is not None:
            past = cache.length
            k, v = cache.update(self.layer_index, k, v)
            if past > 0:
                # query i sits at position past+i and may see keys 0..past+i
                is_causal = False
                if T > 1:
                    mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


# ---- The MLP variants -------------------------------------------------------------------------


def relu_squared(x):
    return F.relu(x).square()


def gelu_tanh(x):
    """GELU's tanh approximation, the activation OpenAI's GPT-2 was trained with (so its weights import exactly)."""
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {"gelu": F.gelu, "gelu_tanh": gelu_tanh, "relu": F.relu, "relu2": relu_squared, "silu": F.silu}


@dataclass(frozen=True)
class MLPVariant:
    activation: str  # a key of ACTIVATIONS
    gated: bool  # gated: W_down(act(W_gate x) * W_up x); plain: W_down(act(W_up x))


# The one place where variants are chosen. Adding one is a line here (plus a test).
MLP_VARIANTS = {
    "gelu": MLPVariant("gelu", gated=False),
    "gelu_tanh": MLPVariant("gelu_tanh", gated=False),
    "relu": MLPVariant("relu", gated=False),
    "relu2": MLPVariant("relu2", gated=False),
    "swiglu": MLPVariant("silu", gated=True),
    "geglu": MLPVariant("gelu", gated=True),
    "reglu": MLPVariant("relu", gated=True),
}


def gated_hidden_size(n_embd, multiple_of):
    """The 2/3 rule: round(2/3 * 4 * n_embd), rounded up to a multiple of `multiple_of`.

    Three d x h matrices then hold as many parameters as the two d x 4d matrices of a plain MLP.
    """
    hidden = round(2 * 4 * n_embd / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


def mlp_hidden_size(config):
    """Hidden width of the MLP that `config` describes."""
    if config.mlp_hidden is not None:
        return config.mlp_hidden
    if MLP_VARIANTS[config.mlp].gated:
        return gated_hidden_size(config.n_embd, config.multiple_of)
    return 4 * config.n_embd


class LearnableSwish(nn.Module):
    """x * sigmoid(beta * x + gamma) with learnable scalars; beta=1, gamma=0 is exactly SiLU."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.ones(()))
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x + self.gamma)


class MLP(nn.Module):
    """Plain MLP: W_down(act(W_up x)), named as in GPT-2 (c_fc, c_proj)."""

    def __init__(self, config):
        super().__init__()
        hidden = mlp_hidden_size(config)
        self.act = ACTIVATIONS[MLP_VARIANTS[config.mlp].activation]
        self.c_fc = Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = residual_projection(hidden, config.n_embd, config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GatedMLP(nn.Module):
    """Gated MLP: W_down(act(W_gate x) * W_up x); with act = SiLU this is SwiGLU."""

    def __init__(self, config):
        super().__init__()
        hidden = mlp_hidden_size(config)
        self.w_gate = Linear(config.n_embd, hidden, bias=config.bias)
        self.w_up = Linear(config.n_embd, hidden, bias=config.bias)
        if config.mlp_init == "matched":
            self.w_up.init_std = matched_up_std(hidden)
        self.config = config  # fused_gate_up is read at each call: a resumed or imported model takes the run's switch
        self.w_down = residual_projection(hidden, config.n_embd, config.bias)
        # a Module when learnable (so beta, gamma are parameters), else a plain function
        self.act = LearnableSwish() if config.swish_beta else ACTIVATIONS[MLP_VARIANTS[config.mlp].activation]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        if self.config.fused_gate_up:
            # one (2h x d) matmul instead of two (h x d) ones; the parameters stay two, so
            # checkpoints and the init do not depend on the switch
            weight = torch.cat((self.w_gate.weight, self.w_up.weight))
            bias = torch.cat((self.w_gate.bias, self.w_up.bias)) if self.w_gate.bias is not None else None
            gate, up = F.linear(x, cast_like(weight, x), cast_like(bias, x)).chunk(2, dim=-1)
        else:
            gate, up = self.w_gate(x), self.w_up(x)
        return self.dropout(self.w_down(self.act(gate) * up))


def matched_up_std(hidden):
    """W_up's init std under mlp_init='matched': the gated MLP's output RMS at init equals the plain MLP's.

    On an input of RMS 1 (what a norm gives), W_gate x has the plain MLP's pre-activation N(0, 0.02² d),
    so act(W_gate x) has the plain hidden's second moment A. The plain output then has variance
    4d·A·σ_down² and the gated one hidden·A·E[(W_up x)²]·σ_down² with E[(W_up x)²] = std² d: equal at
    std² = 4 / hidden, whatever the activation. With 0.02 instead, W_up x ~ N(0, 0.02² d) multiplies the
    gated output down by about 0.02·sqrt(hidden·d/4) (5x at n_embd=96, 16x at 768).
    """
    return 2.0 / math.sqrt(hidden)


def build_mlp(config):
    """The MLP module for `config.mlp`."""
    return GatedMLP(config) if MLP_VARIANTS[config.mlp].gated else MLP(config)


# ---- Block and GPT ----------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, config, layer_index):
        super().__init__()
        self.ln_1 = build_norm(config)
        self.attn = CausalSelfAttention(config, layer_index)
        self.ln_2 = build_norm(config)
        self.mlp = build_mlp(config)

    def forward(self, x, cache=None, rope=None):
        x = x + self.attn(self.ln_1(x), cache, rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        layers = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if config.pos == "learned":
            layers["wpe"] = nn.Embedding(config.block_size, config.n_embd)  # with rope, no position table
        layers.update(
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=build_norm(config),
        )
        self.transformer = nn.ModuleDict(layers)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight  # weight tying, as in GPT-2
        # Linear and Embedding weights: normal(0, 0.02), residual writes depth-scaled (an untied lm_head
        # like wte); norm weights keep their ones and biases their zeros
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            std = getattr(module, "init_std", 0.02)
            if getattr(module, "writes_residual", False):
                std = 0.02 / math.sqrt(2 * self.config.n_layer)
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def hidden_states(self, idx, cache=None):
        """Final-norm output (B, T, n_embd) for token ids idx (B, T); with a cache, positions start at its length."""
        cfg, T = self.config, idx.size(1)
        start = cache.length if cache is not None else 0
        if start + T > cfg.block_size:
            raise ValueError(f"sequence of length {start + T} exceeds block_size {cfg.block_size}")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx)
        if cfg.pos == "learned":
            x = x + self.transformer.wpe(pos)
        rope = rope_tables(pos, cfg.n_embd // cfg.n_head, cfg.rope_theta) if cfg.pos == "rope" else None
        if cfg.compute_dtype:
            x = x.to(getattr(torch, cfg.compute_dtype))
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, cache, rope)
        if cache is not None:
            cache.length += T
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None):
        """Logits (B, T, vocab) and, given targets (B, T; -1 = ignore), the mean cross-entropy.

        With `loss_chunk_size` > 0 and targets given, the loss is computed chunk by chunk and the
        full logits are never materialised: logits is then None.
        """
        x = self.hidden_states(idx)
        if targets is not None and self.config.loss_chunk_size > 0:
            loss = chunked_cross_entropy(x.flatten(0, 1), self.lm_head.weight, targets.flatten(), self.config.loss_chunk_size)
            return None, loss
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(at_least_float32(logits.flatten(0, 1)), targets.flatten(), ignore_index=-1)
        return logits, loss

    def activation_dtype(self):
        """The dtype activations are kept in outside autocast."""
        return getattr(torch, self.config.compute_dtype) if self.config.compute_dtype else self.lm_head.weight.dtype

    # ---- reports ----

    def embedding_matrices(self):
        """The vocabulary and position tables: wte, wpe (learned positions only), lm_head (untied only); each once."""
        tables = [self.transformer.wte.weight, self.lm_head.weight]
        if self.config.pos == "learned":
            tables.append(self.transformer.wpe.weight)
        return list({id(t): t for t in tables}.values())

    def num_params(self, non_embedding=False):
        """Parameter count (a tied matrix once); non_embedding excludes embedding_matrices(), an untied lm_head too."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(t.numel() for t in self.embedding_matrices())
        return n

    def num_mlp_params(self):
        return sum(p.numel() for block in self.transformer.h for p in block.mlp.parameters())

    def flops_per_token(self):
        """Training FLOPs per token: 6 * (matmul parameters) + the attention term 12 * L * d * T.

        Matmul parameters are all parameters but the lookup tables: the position table (learned
        positions) and, untied, the token table; the lm_head counts, tied or not, because it multiplies
        (the convention of PaLM's appendix B and nanoGPT). RoPE and the norms are elementwise: not counted.
        """
        cfg = self.config
        lookups = [t for t in self.embedding_matrices() if t is not self.lm_head.weight]
        dense = self.num_params() - sum(t.numel() for t in lookups)
        return 6 * dense + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size

    def param_report(self):
        """Parameter counts and FLOPs per token as a dict (logged with every run)."""
        return {
            "params_total": self.num_params(),
            "params_non_embedding": self.num_params(non_embedding=True),
            "params_mlp": self.num_mlp_params(),
            "mlp_hidden": mlp_hidden_size(self.config),
            "flops_per_token": self.flops_per_token(),
        }

    def param_report_line(self):
        r = self.param_report()
        return (
            f"mlp={self.config.mlp} (hidden {r['mlp_hidden']}): {r['params_total'] / 1e6:.2f}M params total, "
            f"{r['params_non_embedding'] / 1e6:.2f}M non-embedding, {r['params_mlp'] / 1e6:.2f}M in MLPs, "
            f"{r['flops_per_token'] / 1e6:.1f} MFLOPs/token (training)"
        )

    # ---- optimisation ----

    def hidden_matrices(self):
        """The blocks' 2-D weights: what Muon optimizes under optimizer='muon' (embeddings, head and vectors stay on AdamW)."""
        return [p for p in self.transformer.h.parameters() if p.requires_grad and p.dim() == 2]

    def configure_optimizers(self, weight_decay, learning_rate, betas, fused=False, muon_lr=None, muon_momentum=0.95):
        """AdamW with decay on every matrix (any variant's alike) and none on biases, norms, beta/gamma.

        With muon_lr, the blocks' matrices go to torch.optim.Muon at that learning rate instead, as
        nanochat and modded-nanogpt split them; the two are stepped as one (ChainedOptimizers).
        """
        params = [p for p in self.parameters() if p.requires_grad]
        muon_params = self.hidden_matrices() if muon_lr else []
        on_muon = {id(p) for p in muon_params}
        rest = [p for p in params if id(p) not in on_muon]
        groups = [
            {"params": [p for p in rest if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0},
        ]
        adamw = torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)
        if not muon_lr:
            return adamw
        # lr_scale: the schedule gives AdamW's learning rate, Muon's is muon_lr on the same warmup and decay
        muon_group = {"params": muon_params, "lr_scale": muon_lr / learning_rate}
        muon = torch.optim.Muon([muon_group], lr=muon_lr, weight_decay=weight_decay, momentum=muon_momentum)
        return ChainedOptimizers(adamw=adamw, muon=muon)

    # ---- generation ----

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True, generator=None, vocab_limit=None):
        """Append `max_new_tokens` sampled tokens to idx (B, T) and return it.

        temperature 0 means greedy decoding; vocab_limit keeps ids below it (a tokenizer's size,
        when the model's vocabulary is padded past it). With the KV cache each step feeds one token; once the
        sequence outgrows block_size, the positions (learned or rotary) shift and every step recomputes
        the last block_size tokens, exactly as uncached generation does.
        """
        cache = None
        for _ in range(max_new_tokens):
            if use_cache and idx.size(1) <= self.config.block_size:
                if cache is None:
                    cache = KVCache(self.config, idx.size(0), idx.device, self.activation_dtype())
                    x = self.hidden_states(idx, cache)
                else:
                    x = self.hidden_states(idx[:, -1:], cache)
            else:
                x = self.hidden_states(idx[:, -self.config.block_size :])
            logits = self.lm_head(x[:, -1, :]).float()
            if vocab_limit is not None:
                logits[:, vocab_limit:] = float("-inf")
            idx_next = sample_next_token(logits, temperature, top_k, top_p, generator)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


# ---- Sequence classification ------------------------------------------------------------------

POOLINGS = ("last", "mean")


class GPTClassifier(nn.Module):
    """A GPT backbone and a linear head on one vector per text: the sequence classifier of classify.py.

    pooling 'last' takes the final hidden state of each text's last real token, the one position
    whose causal attention has seen the whole text; 'mean' averages the real tokens' states.
    Texts are right-padded, so padding cannot change the result: causal attention keeps pads out
    of every real position, and both poolings read real positions only.
    """

    def __init__(self, backbone, n_classes, pooling="last"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.head = Linear(backbone.config.n_embd, n_classes)
        torch.nn.init.normal_(self.head.weight, mean=0.0, std=0.02)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, idx, lengths, labels=None):
        """Class logits (B, n_classes) for token ids idx (B, T) whose texts are lengths (B,) long, and the loss given labels (B,)."""
        hidden = self.backbone.hidden_states(idx)
        if self.pooling == "last":
            pooled = hidden[torch.arange(idx.size(0), device=idx.device), lengths - 1]
        else:
            real = (torch.arange(idx.size(1), device=idx.device) < lengths[:, None]).unsqueeze(-1)
            pooled = (hidden * real).sum(1) / lengths[:, None]
        logits = self.head(pooled)
        loss = F.cross_entropy(at_least_float32(logits), labels) if labels is not None else None
        return logits, loss

    configure_optimizers = GPT.configure_optimizers  # the same AdamW groups: decay on every matrix, the head's too

    def hidden_matrices(self):
        """The backbone's block matrices (Muon's under optimizer='muon'); the class head stays on AdamW."""
        return self.backbone.hidden_matrices()


class ChainedOptimizers:
    """Several optimizers over disjoint parameters, stepped, zeroed, saved and loaded as one."""

    def __init__(self, **optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [group for optimizer in self.optimizers.values() for group in optimizer.param_groups]

    def step(self):
        for optimizer in self.optimizers.values():
            optimizer.step()

    def zero_grad(self, set_to_none=True):
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, state):
        if set(state) != set(self.optimizers):
            raise ValueError(f"an optimizer state of {', '.join(sorted(state))}, not of {', '.join(self.optimizers)}")
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])


def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token id per row of logits (B, vocab), after temperature, top-k and nucleus filtering."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the ones ranked above it already hold top_p of the mass
        drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


# ---- Memory-light loss ------------------------------------------------------------------------


def at_least_float32(t):
    """bf16/fp16 logits upcast for a stable softmax; float32 and float64 stay as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def add_matmul_(out, a, b):
    """out += a @ b, with no temporary the size of `out`.

    CUDA multiplies bf16 operands straight into a float32 `out`; elsewhere mixed dtypes go through
    a temporary product, which only CPU tests pay for.
    """
    if a.dtype == out.dtype:
        return out.addmm_(a, b)
    if out.is_cuda:
        return torch.addmm(out, a, b, out_dtype=out.dtype, out=out)
    return out.add_(a @ b)


def matmul_dtype(hidden):
    """The dtype the loss's matmuls run in: autocast's when it is on, else the activations'."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return hidden.dtype


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Cross-entropy of (hidden @ weight.T) computed chunk by chunk.

    The gradients are computed during the forward pass, chunk by chunk, so neither pass ever holds
    the (tokens x vocab) logits: at GPT-2 scale that is gigabytes of activation memory saved.
    Dtypes are explicit (autocast is off inside): matmuls in `compute` (bf16 under bf16 autocast
    or with bf16 activations), softmax and the loss in float32, logit gradients rounded to
    `compute` like autocast's own backward would, the weight gradient accumulated in float32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size, compute):
        n_valid = (targets != -1).sum().clamp(min=1)
        total = torch.zeros((), device=hidden.device, dtype=torch.promote_types(compute, torch.float32))
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=torch.promote_types(weight.dtype, torch.float32))
        w = weight.to(compute)
        for start in range(0, hidden.size(0), chunk_size):
            h, t = hidden[start : start + chunk_size].to(compute), targets[start : start + chunk_size]
            logits = at_least_float32(h @ w.t())
            keep = (t != -1).unsqueeze(1)
            safe_t = t.clamp(min=0).unsqueeze(1)
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            total += ((lse - logits.gather(1, safe_t)) * keep).sum()
            grad_logits = logits.sub_(lse).exp_()  # softmax, in place of the logits
            grad_logits.scatter_add_(1, safe_t, -torch.ones_like(lse))
            grad_logits = (grad_logits * keep).to(compute)
            grad_hidden[start : start + chunk_size] = grad_logits @ w
            add_matmul_(grad_weight, grad_logits.t(), h)
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype), n_valid)
        return total / n_valid

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight, n_valid = ctx.saved_tensors
        scale = grad_loss / n_valid
        return grad_hidden * scale.to(grad_hidden.dtype), grad_weight * scale.to(grad_weight.dtype), None, None, None


def chunked_cross_entropy(hidden, weight, targets, chunk_size):
    """Mean cross-entropy of hidden (N, C) @ weight (V, C).T against targets (N,), -1 ignored."""
    compute = matmul_dtype(hidden)
    with torch.autocast(hidden.device.type, enabled=False):
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk_size, compute)
        total = torch.zeros((), device=hidden.device, dtype=torch.promote_types(compute, torch.float32))
        w = weight.to(compute)
        for start in range(0, hidden.size(0), chunk_size):
            logits = at_least_float32(hidden[start : start + chunk_size].to(compute) @ w.t())
            total += F.cross_entropy(logits, targets[start : start + chunk_size], ignore_index=-1, reduction="sum")
        return total / (targets != -1).sum().clamp(min=1)
