import math

import pytest
import torch
import torch.nn.functional as F

from model import GPT, MLP_VARIANTS, GPTConfig, chunked_cross_entropy, gated_hidden_size, mlp_hidden_size

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
