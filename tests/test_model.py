import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.lifecycle import set_lr
from model import (
    GPT,
    MLP_VARIANTS,
    NORMS,
    POSITIONS,
    GPTClassifier,
    GPTConfig,
    KVCache,
    RMSNorm,
    apply_rope,
    chunked_cross_entropy,
    gated_hidden_size,
    mlp_hidden_size,
    rope_tables,
)

VOCAB = 97


def tiny(mlp="gelu", **overrides):
    args = dict(block_size=16, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, dropout=0.0, bias=True, mlp=mlp)
    return GPTConfig(**{**args, **overrides})


@pytest.mark.parametrize("mlp", list(MLP_VARIANTS))
def test_every_variant_trains_from_a_loss_near_uniform(mlp):
    torch.manual_seed(0)
    model = GPT(tiny(mlp))
    idx, targets = torch.randint(0, VOCAB, (2, 3, 16))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 16, VOCAB)
    assert torch.isfinite(loss)
    assert abs(loss.item() - math.log(VOCAB)) < 0.3
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("mlp,act", [("swiglu", F.silu), ("geglu", F.gelu), ("reglu", F.relu)])
def test_gated_variants_compute_w_down_of_act_gate_times_up(mlp, act):
    torch.manual_seed(0)
    model = GPT(tiny(mlp, bias=False)).double()
    block_mlp = model.transformer.h[0].mlp
    for p in block_mlp.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    w_gate, w_up, w_down = block_mlp.w_gate.weight, block_mlp.w_up.weight, block_mlp.w_down.weight
    expected = (act(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T
    torch.testing.assert_close(block_mlp(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mlp,act", [("gelu", F.gelu), ("relu", F.relu), ("relu2", lambda t: F.relu(t) ** 2)])
def test_plain_variants_compute_w_down_of_act_up(mlp, act):
    model = GPT(tiny(mlp, bias=False)).double()
    block_mlp = model.transformer.h[0].mlp
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    expected = act(x @ block_mlp.c_fc.weight.T) @ block_mlp.c_proj.weight.T
    torch.testing.assert_close(block_mlp(x), expected, rtol=1e-12, atol=1e-12)


def test_learnable_swish_starts_as_silu_and_learns_beta():
    torch.manual_seed(0)
    plain = GPT(tiny("swiglu"))
    torch.manual_seed(0)
    learnable = GPT(tiny("swiglu", swish_beta=True))
    idx = torch.randint(0, VOCAB, (2, 16))
    torch.testing.assert_close(plain(idx)[0], learnable(idx)[0])
    _, loss = learnable(idx, idx)
    loss.backward()
    swish = learnable.transformer.h[0].mlp.act
    assert swish.beta.item() == 1.0 and swish.gamma.item() == 0.0
    assert swish.beta.grad is not None and swish.beta.grad.abs() > 0


@pytest.mark.parametrize("d", [256, 384, 512, 768, 1024])
def test_gated_mlp_has_the_parameters_of_the_gelu_mlp(d):
    gelu = 2 * d * 4 * d
    gated = 3 * d * gated_hidden_size(d, GPTConfig.multiple_of)
    assert abs(gated - gelu) / gelu < 0.02
    if d in (384, 768):
        assert gated == gelu
    for mlp in MLP_VARIANTS:
        config = GPTConfig(n_embd=d, n_head=8, n_layer=1, block_size=8, vocab_size=64, bias=False, mlp=mlp)
        mlp_params = sum(p.numel() for p in GPT(config).transformer.h[0].mlp.parameters())
        assert abs(mlp_params - gelu) / gelu < 0.02


def test_hidden_size_rule_and_explicit_override():
    assert gated_hidden_size(768, 256) == 2048  # LLaMA-style rounding stays available
    assert gated_hidden_size(256, 16) == 688  # round(682.67) = 683 -> 688
    assert gated_hidden_size(256, 256) == 768
    assert mlp_hidden_size(tiny("gelu")) == 128
    assert mlp_hidden_size(tiny("swiglu", mlp_hidden=40)) == 40
    model = GPT(tiny("swiglu", mlp_hidden=40))
    assert model.transformer.h[0].mlp.w_up.weight.shape == (40, 32)


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_changing_a_token_never_changes_earlier_logits(mlp):
    torch.manual_seed(0)
    model = GPT(tiny(mlp)).eval()
    idx = torch.randint(0, VOCAB, (1, 16))
    changed = idx.clone()
    changed[0, 9] = (idx[0, 9] + 1) % VOCAB
    a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_every_residual_projection_gets_the_same_depth_scaled_init():
    torch.manual_seed(0)
    config = tiny(n_layer=8, n_embd=256, n_head=4)
    expected = 0.02 / math.sqrt(2 * config.n_layer)
    for mlp in MLP_VARIANTS:
        torch.manual_seed(0)
        block = GPT(tiny(mlp, n_layer=8, n_embd=256, n_head=4)).transformer.h[0]
        down = block.mlp.w_down if MLP_VARIANTS[mlp].gated else block.mlp.c_proj
        assert abs(block.attn.c_proj.weight.std().item() - expected) < 0.05 * expected
        assert abs(down.weight.std().item() - expected) < 0.05 * expected
        up = block.mlp.w_up if MLP_VARIANTS[mlp].gated else block.mlp.c_fc
        assert abs(up.weight.std().item() - 0.02) < 0.05 * 0.02


def test_weight_decay_treats_every_variant_alike():
    for mlp in MLP_VARIANTS:
        model = GPT(tiny(mlp))
        decayed, plain = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95)).param_groups
        mlp_matrices = [p for p in model.transformer.h[0].mlp.parameters() if p.dim() == 2]
        assert all(any(p is q for q in decayed["params"]) for p in mlp_matrices)
        assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
        assert all(p.dim() < 2 for p in plain["params"])


@pytest.mark.parametrize("mlp", ["swiglu", "geglu", "reglu"])
def test_matched_init_gives_a_gated_mlp_the_plain_mlps_output_rms(mlp):
    """mlp_init='matched' on a norm's output (RMS 1): the gated MLP's output RMS is the plain MLP's; 'gpt2' leaves it far below."""
    # SiLU has no plain arm; GELU's second moment is within a few % of it at these pre-activations
    plain_act = {"swiglu": "gelu", "geglu": "gelu", "reglu": "relu"}[mlp]
    x = F.layer_norm(torch.randn(64, 16, 96), (96,))

    def output_rms(**keys):
        torch.manual_seed(0)
        return GPT(tiny(keys.pop("mlp"), n_layer=4, n_head=3, n_embd=96, **keys)).transformer.h[0].mlp(x).pow(2).mean().sqrt().item()

    plain = output_rms(mlp=plain_act)
    assert output_rms(mlp=mlp, mlp_init="matched") == pytest.approx(plain, rel=0.1)
    assert output_rms(mlp=mlp) < plain / 3
    assert output_rms(mlp=plain_act, mlp_init="matched") == plain  # a plain MLP is the reference: unchanged


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = GPT(tiny("swiglu", tie_embeddings=False))
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), muon_lr=0.02)
    adamw, muon = optimizer.optimizers["adamw"], optimizer.optimizers["muon"]
    on_muon = {id(p) for group in muon.param_groups for p in group["params"]}
    assert on_muon == {id(p) for block in model.transformer.h for p in block.parameters() if p.dim() == 2}
    on_adamw = {id(p) for group in adamw.param_groups for p in group["params"]}
    assert {id(model.transformer.wte.weight), id(model.lm_head.weight)} <= on_adamw
    assert on_adamw.isdisjoint(on_muon) and len(on_adamw | on_muon) == len(list(model.parameters()))
    set_lr(optimizer, 5e-4)  # the schedule's value scales Muon's muon_lr alike
    assert muon.param_groups[0]["lr"] == pytest.approx(0.01) and adamw.param_groups[0]["lr"] == 5e-4


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("sampling", [dict(), dict(top_k=5), dict(top_p=0.8, temperature=0.7), dict(temperature=0)])
def test_kv_cache_generation_equals_uncached(mlp, sampling):
    torch.manual_seed(0)
    model = GPT(tiny(mlp)).eval()
    prompt = torch.randint(0, VOCAB, (2, 3))
    # 20 new tokens run past block_size (16), where the cache gives way to recomputation
    cached = model.generate(prompt, 20, generator=torch.Generator().manual_seed(5), **sampling)
    uncached = model.generate(prompt, 20, use_cache=False, generator=torch.Generator().manual_seed(5), **sampling)
    assert cached.shape == (2, 23)
    assert torch.equal(cached, uncached)


def test_kv_cache_logits_match_a_full_forward():
    torch.manual_seed(0)
    model = GPT(tiny("swiglu")).eval()
    from model import KVCache

    idx = torch.randint(0, VOCAB, (2, 12))
    cache = KVCache(model.config, 2, "cpu", torch.float32)
    first = model.hidden_states(idx[:, :5], cache)
    rest = model.hidden_states(idx[:, 5:], cache)  # several tokens at once after a prefix
    torch.testing.assert_close(torch.cat([first, rest], 1), model.hidden_states(idx), rtol=1e-5, atol=1e-5)


def test_top_p_keeps_the_smallest_set_holding_p():
    from model import sample_next_token

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    seen = {sample_next_token(logits, top_p=0.7, generator=torch.Generator().manual_seed(s)).item() for s in range(200)}
    assert seen == {0, 1}


@pytest.mark.parametrize(
    "overrides,field",
    [
        (dict(n_embd=30, n_head=4), "n_head"),
        (dict(mlp="swishglu"), "swiglu"),
        (dict(n_layer=0), "n_layer"),
        (dict(block_size=-1), "block_size"),
        (dict(mlp_hidden=0), "mlp_hidden"),
        (dict(mlp="gelu", swish_beta=True), "swish_beta"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny(**overrides)


def test_unknown_mlp_error_lists_the_allowed_values():
    with pytest.raises(ValueError) as err:
        tiny(mlp="swishglu")
    assert all(name in str(err.value) for name in MLP_VARIANTS)


def test_param_report_counts_and_flops():
    model = GPT(tiny("swiglu", bias=False))
    report = model.param_report()
    wte, wpe = VOCAB * 32, 16 * 32
    assert report["params_total"] == sum(p.numel() for p in model.parameters())
    assert report["params_non_embedding"] == report["params_total"] - wte - wpe
    assert report["params_mlp"] == 2 * 3 * 32 * gated_hidden_size(32, 16)
    assert report["flops_per_token"] == 6 * (report["params_total"] - wpe) + 12 * 2 * 32 * 16
    assert "swiglu" in model.param_report_line()


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_loss_equals_full_logits_loss_and_gradients(chunk):
    torch.manual_seed(0)
    plain = GPT(tiny("swiglu")).double()
    chunked = GPT(tiny("swiglu", loss_chunk_size=chunk)).double()
    chunked.load_state_dict(plain.state_dict())
    idx = torch.randint(0, VOCAB, (3, 16))
    targets = idx.clone()
    targets[0, :4] = -1  # ignored positions
    _, loss_a = plain(idx, targets)
    logits, loss_b = chunked(idx, targets)
    assert logits is None
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-10, atol=1e-10)
    (2 * loss_a).backward()
    (2 * loss_b).backward()
    for (name, a), b in zip(plain.named_parameters(), chunked.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10, msg=name)


def test_chunked_loss_without_grad_matches():
    torch.manual_seed(0)
    hidden, weight = torch.randn(10, 8), torch.randn(13, 8)
    targets = torch.randint(0, 13, (10,))
    with torch.no_grad():
        torch.testing.assert_close(chunked_cross_entropy(hidden, weight, targets, 3), F.cross_entropy(hidden @ weight.T, targets))


# ---- The block's switches: GPT-2 by default, LLaMA-style one key at a time ---------------------

SWITCHES = [
    dict(norm=norm, pos=pos, qk_norm=qk_norm, tie_embeddings=tie)
    for norm in NORMS
    for pos in POSITIONS
    for qk_norm in (False, True)
    for tie in (True, False)
]


def switch_id(switches):
    return "-".join(f"{k}={v}" for k, v in switches.items())


def test_default_config_builds_todays_gpt2_model():
    model = GPT(tiny("gelu", n_layer=1))
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    block = {"ln_1.weight": (32,), "ln_1.bias": (32,), "attn.c_attn.weight": (96, 32), "attn.c_attn.bias": (96,)}
    block |= {"attn.c_proj.weight": (32, 32), "attn.c_proj.bias": (32,), "ln_2.weight": (32,), "ln_2.bias": (32,)}
    block |= {"mlp.c_fc.weight": (128, 32), "mlp.c_fc.bias": (128,), "mlp.c_proj.weight": (32, 128), "mlp.c_proj.bias": (32,)}
    expected = {f"transformer.h.0.{k}": v for k, v in block.items()}
    expected |= {"transformer.wte.weight": (VOCAB, 32), "transformer.wpe.weight": (16, 32), "lm_head.weight": (VOCAB, 32)}
    expected |= {"transformer.ln_f.weight": (32,), "transformer.ln_f.bias": (32,)}
    assert shapes == expected
    assert model.lm_head.weight is model.transformer.wte.weight
    # the logits of the code before the switches existed (same seed, float64)
    torch.manual_seed(0)
    model = GPT(tiny("gelu")).double()
    idx = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))
    logits, loss = model(idx, idx)
    assert logits.sum().item() == pytest.approx(8.206571685285564, rel=1e-9)
    assert loss.item() == pytest.approx(4.153540951133606, rel=1e-9)


def test_bias_false_removes_the_layernorm_biases_and_rmsnorm_has_none():
    for norm in NORMS:
        for bias in (True, False):
            names = GPT(tiny("gelu", norm=norm, bias=bias)).state_dict()
            has_norm_bias = any(k.endswith(("ln_1.bias", "ln_2.bias", "ln_f.bias")) for k in names)
            assert has_norm_bias == (norm == "layernorm" and bias)


def reference_forward(model, idx):
    """Logits written out from the formulas (float64, the model's own weights, its MLP module)."""
    cfg, sd = model.config, model.state_dict()
    C, H = cfg.n_embd, cfg.n_head
    hd = C // H

    def norm(x, prefix, eps=1e-5):
        w = sd[f"{prefix}.weight"]
        if prefix.endswith("_norm") or cfg.norm == "rmsnorm":  # RMSNorm: x / sqrt(mean(x^2) + eps) * w
            return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
        mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * w + sd.get(f"{prefix}.bias", 0)

    def rotate(x):  # the pair (x_i, x_{i + hd/2}) as a complex number, turned by t * theta^(-2i/hd)
        angle = torch.arange(x.size(2), dtype=torch.float64)[:, None] * cfg.rope_theta ** (-torch.arange(0, hd, 2).double() / hd)
        z = torch.complex(x[..., : hd // 2], x[..., hd // 2 :]) * torch.exp(1j * angle)
        return torch.cat([z.real, z.imag], -1)

    B, T = idx.shape
    x = sd["transformer.wte.weight"][idx]
    if cfg.pos == "learned":
        x = x + sd["transformer.wpe.weight"][:T]
    for i, block in enumerate(model.transformer.h):
        p = f"transformer.h.{i}"
        qkv = F.linear(norm(x, f"{p}.ln_1"), sd[f"{p}.attn.c_attn.weight"], sd.get(f"{p}.attn.c_attn.bias"))
        q, k, v = (t.view(B, T, H, hd).transpose(1, 2) for t in qkv.split(C, -1))
        if cfg.qk_norm:
            q, k = norm(q, f"{p}.attn.q_norm"), norm(k, f"{p}.attn.k_norm")
        if cfg.pos == "rope":
            q, k = rotate(q), rotate(k)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(hd)).masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, sd[f"{p}.attn.c_proj.weight"], sd.get(f"{p}.attn.c_proj.bias"))
        x = x + block.mlp(norm(x, f"{p}.ln_2"))
    return norm(x, "transformer.ln_f") @ sd["lm_head.weight"].T


@pytest.mark.parametrize("switches", SWITCHES, ids=switch_id)
def test_every_switch_computes_its_formula(switches):
    torch.manual_seed(0)
    model = GPT(tiny("swiglu", **switches)).double().eval()
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or ".ln_" in name:
            torch.nn.init.normal_(p, 1.0, 0.2)  # the norms' weights away from their ones, so a missed one shows
    idx = torch.randint(0, VOCAB, (2, 16))
    torch.testing.assert_close(model(idx)[0], reference_forward(model, idx), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("switches", SWITCHES, ids=switch_id)
def test_every_switch_combination_trains_generates_and_classifies(mlp, switches):
    torch.manual_seed(0)
    model = GPT(tiny(mlp, **switches))
    idx, targets = torch.randint(0, VOCAB, (2, 3, 16))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 16, VOCAB) and torch.isfinite(loss)
    assert abs(loss.item() - math.log(VOCAB)) < 0.3
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    prompt = torch.randint(0, VOCAB, (2, 3))
    # 20 new tokens run past block_size (16), where the cache gives way to recomputation
    assert torch.equal(model.generate(prompt, 20, temperature=0), model.generate(prompt, 20, temperature=0, use_cache=False))
    classifier = GPTClassifier(model, 3)
    class_logits, class_loss = classifier(idx, torch.tensor([16, 5, 1]), torch.tensor([0, 1, 2]))
    assert class_logits.shape == (3, 3) and torch.isfinite(class_loss)


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("switches", SWITCHES, ids=switch_id)
def test_speed_switches_compute_the_same_loss_with_every_block_switch(mlp, switches):
    torch.manual_seed(0)
    plain = GPT(tiny(mlp, **switches)).double()
    fast = GPT(tiny(mlp, **switches, loss_chunk_size=7, fused_gate_up=True)).double()
    fast.load_state_dict(plain.state_dict())
    idx = torch.randint(0, VOCAB, (3, 16))
    _, loss_a = plain(idx, idx)
    _, loss_b = fast(idx, idx)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-10, atol=1e-10)
    loss_a.backward()
    loss_b.backward()
    for (name, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("switches", SWITCHES, ids=switch_id)
def test_kv_cache_applies_rope_at_the_cached_positions(switches):
    torch.manual_seed(0)
    model = GPT(tiny("swiglu", **switches)).eval()
    idx = torch.randint(0, VOCAB, (2, 12))
    cache = KVCache(model.config, 2, "cpu", torch.float32)
    pieces = [model.hidden_states(idx[:, :5], cache), model.hidden_states(idx[:, 5:6], cache), model.hidden_states(idx[:, 6:], cache)]
    torch.testing.assert_close(torch.cat(pieces, 1), model.hidden_states(idx), rtol=1e-5, atol=1e-5)


def test_rope_scores_depend_on_relative_position_alone():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 10, 16, dtype=torch.float64), torch.randn(2, 3, 10, 16, dtype=torch.float64)
    positions = torch.arange(10)

    def scores(shift):
        rope = rope_tables(positions + shift, 16, 10000.0)
        return apply_rope(q, rope) @ apply_rope(k, rope).transpose(-1, -2)

    torch.testing.assert_close(scores(0), scores(37), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores(0), q @ k.transpose(-1, -2), atol=1e-3)  # and it does rotate
    norm = apply_rope(q, rope_tables(positions, 16, 10000.0)).norm(dim=-1)
    torch.testing.assert_close(norm, q.norm(dim=-1))  # a rotation keeps lengths
    cos, sin = rope_tables(torch.tensor([0]), 16, 10000.0)
    assert torch.equal(cos, torch.ones(1, 16)) and torch.equal(sin, torch.zeros(1, 16))  # position 0 is the identity


def test_rmsnorm_matches_its_formula_in_float32_whatever_the_input_dtype():
    torch.manual_seed(0)
    norm = RMSNorm(8)
    assert torch.equal(norm.weight, torch.ones(8)) and [name for name, _ in norm.named_parameters()] == ["weight"]
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(3, 4, 8)
    expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    low = x.bfloat16()
    assert norm(low).dtype == torch.bfloat16
    up = low.float()  # the formula on the same inputs in float32, rounded once at the end
    torch.testing.assert_close(norm(low), (up * torch.rsqrt(up.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight).bfloat16())


def test_new_parameters_start_sensibly():
    torch.manual_seed(0)
    model = GPT(tiny("swiglu", n_embd=256, n_head=4, norm="rmsnorm", pos="rope", qk_norm=True, tie_embeddings=False))
    assert "transformer.wpe.weight" not in model.state_dict()
    assert model.lm_head.weight is not model.transformer.wte.weight
    for table in (model.lm_head.weight, model.transformer.wte.weight):
        assert abs(table.std().item() - 0.02) < 0.05 * 0.02
    attn = model.transformer.h[0].attn
    assert attn.q_norm.weight.shape == (64,)
    for name, p in model.named_parameters():
        if "norm" in name or ".ln_" in name:
            assert torch.equal(p, torch.ones_like(p)), name


@pytest.mark.parametrize("switches", SWITCHES, ids=switch_id)
def test_param_report_counts_every_switch(switches):
    model = GPT(tiny("swiglu", bias=False, **switches))
    report = model.param_report()
    wte, wpe = VOCAB * 32, 16 * 32 if switches["pos"] == "learned" else 0
    lm_head = 0 if switches["tie_embeddings"] else VOCAB * 32
    assert report["params_non_embedding"] == report["params_total"] - wte - wpe - lm_head
    qk = 2 * 16 if switches["qk_norm"] else 0  # per layer, q_norm and k_norm of head_dim (16) weights, shared by the heads
    assert report["params_non_embedding"] == 2 * (4 * 32 * 32 + 2 * 32 + qk) + 32 + report["params_mlp"]
    dense = report["params_total"] - wpe - (wte if lm_head else 0)  # the lookup tables multiply nothing
    assert report["flops_per_token"] == 6 * dense + 12 * 2 * 32 * 16


def test_llama_twin_configs_have_equal_parameters():
    from core.configs import TrainConfig
    from core.configurator import load_config

    reports = []
    for arm in ("swiglu", "gelu"):
        cfg = load_config(TrainConfig, [str(Path(__file__).resolve().parent.parent / "config" / f"llama_{arm}.py")])
        assert (cfg.norm, cfg.pos, cfg.qk_norm, cfg.bias) == ("rmsnorm", "rope", True, False)
        reports.append(GPT(GPTConfig(**cfg.model_fields(), vocab_size=50304)).param_report())
    assert reports[0] == {**reports[1], "mlp_hidden": reports[0]["mlp_hidden"]}
    assert reports[0]["params_total"] == 11_429_824 and reports[0]["params_non_embedding"] == 1_771_456


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(norm="batchnorm"), "norm must be one of layernorm, rmsnorm"),
        (dict(pos="alibi"), "pos must be one of learned, rope"),
        (dict(pos="rope", n_embd=30, n_head=10), "even head size"),
        (dict(pos="rope", rope_theta=0.0), "rope_theta"),
    ],
)
def test_bad_block_switches_are_one_line_errors(overrides, message):
    with pytest.raises(ValueError, match=message) as err:
        tiny(**overrides)
    assert "\n" not in str(err.value)
