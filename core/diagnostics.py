"""Per-layer training statistics (train.py --diagnostics=True): what runs away when a run stalls.

At every log_interval, one "diag" record in metrics.jsonl (and diag/... in wandb), with per layer L:
  L<i>/resid_rms       RMS of the residual stream after block i
  L<i>/mlp_out_rms     RMS of the MLP's output (what it adds to the residual stream)
  L<i>/pre_mean, pre_std, pre_absmax
                       the MLP's pre-activation: W_gate x for a gated MLP, W_up x (c_fc) for a plain one
  L<i>/pre_off         share of pre-activations below -3, where SiLU, GELU and ReLU are all but off
  L<i>/dead_units      share of hidden units never positive on the probe batch
  L<i>/attn_logit_max  largest q·k/sqrt(head_dim) over heads and causal positions
  L<i>/attn_entropy    mean entropy (nats) of the attention rows
  update/<param>       ||Δw|| / ||w|| of each weight matrix over the logged step (the optimizer's relative step)
  grad_norm            the gradient norm before clipping, the value clip_grad_norm_ returns (absent when grad_clip=0)
The forward statistics come from a fixed probe batch (the first val evaluation batch), run
without autocast on the raw model (not the compiled or DDP one) by rank 0, with hooks that exist only for
that pass: with the switch off nothing is hooked, copied or synced. On, each log costs one probe
forward pass, the attention logits of one sequence at a time, and one copy of the weight matrices.
"""

import math

import torch

OFF_BELOW = -3.0  # silu(-3) = -0.14, gelu(-3) = -0.004, relu(-3) = 0: the unit passes (almost) nothing


def rms(x):
    return x.float().pow(2).mean().sqrt().item()


def attention_stats(q, k):
    """(max logit, mean row entropy) of causal softmax attention for q, k (B, n_head, T, head_dim).

    SDPA never materialises the logits, so they are recomputed here, one sequence at a time (n_head x T x T floats).
    """
    T = q.size(-2)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    logit_max, entropy_sum = [], []
    for qb, kb in zip(q.float(), k.float(), strict=True):
        logits = (qb @ kb.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~causal, float("-inf"))
        p = logits.softmax(-1)
        logit_max.append(logits.max())
        entropy_sum.append(-(p * p.clamp_min(1e-30).log()).sum())
    return torch.stack(logit_max).max().item(), (torch.stack(entropy_sum).sum() / (q.size(0) * q.size(1) * T)).item()


def pre_activation_stats(pre):
    """Statistics of an MLP's pre-activation (B, T, hidden)."""
    flat = pre.float().flatten(0, -2)
    return {
        "pre_mean": flat.mean().item(),
        "pre_std": flat.std().item(),
        "pre_absmax": flat.abs().max().item(),
        "pre_off": (flat < OFF_BELOW).float().mean().item(),
        "dead_units": (flat.max(0).values <= 0).float().mean().item(),
    }


def matrix_names(model):
    """{name: parameter} of the model's weight matrices (the tied embedding once)."""
    return {name: p for name, p in model.named_parameters() if p.dim() == 2}


def short_name(name):
    """transformer.h.0.mlp.w_gate.weight -> L0.mlp.w_gate; transformer.wte.weight -> wte."""
    name = name.removesuffix(".weight").removeprefix("transformer.")
    return "L" + name.removeprefix("h.") if name.startswith("h.") else name


class Diagnostics:
    """Measures a GPT (the raw model, never the compiled or DDP wrapper) on a probe batch and over steps."""

    def __init__(self, model, probe):
        self.model = model
        self.probe = probe  # token ids (B, T)
        self.before = None  # weight matrices copied before the logged step

    def snapshot(self):
        """Copy the weight matrices, before the step whose update is logged."""
        self.before = {name: p.detach().clone() for name, p in matrix_names(self.model).items()}

    def update_ratios(self):
        """{update/<param>: ||w_after - w_before|| / ||w_before||} since snapshot(); {} without one."""
        if self.before is None:
            return {}
        ratios = {}
        for name, p in matrix_names(self.model).items():
            old = self.before[name]
            ratios[f"update/{short_name(name)}"] = ((p.detach() - old).norm() / old.norm().clamp_min(1e-30)).item()
        self.before = None
        return ratios

    @torch.no_grad()
    def forward_stats(self):
        """The per-layer statistics of one forward pass over the probe batch (dropout off)."""
        stats, hooks = {}, []
        for i, block in enumerate(self.model.transformer.h):
            hooks += [
                block.register_forward_hook(self._residual_hook(i, stats)),
                block.mlp.register_forward_hook(self._mlp_hook(i, stats)),
                block.attn.register_forward_hook(self._attention_hook(i, stats)),
            ]
        was_training = self.model.training
        self.model.eval()
        try:
            self.model(self.probe)
        finally:
            self.model.train(was_training)
            for hook in hooks:
                hook.remove()
        return stats

    def record(self, grad_norm=None):
        """The diag record's fields: forward statistics, update ratios and the gradient norm."""
        fields = {**self.forward_stats(), **self.update_ratios()}
        if grad_norm is not None:
            fields["grad_norm"] = grad_norm.item()
        return fields

    @staticmethod
    def _residual_hook(i, stats):
        def hook(module, args, output):
            stats[f"L{i}/resid_rms"] = rms(output)

        return hook

    @staticmethod
    def _mlp_hook(i, stats):
        def hook(mlp, args, output):
            x = args[0]
            pre = mlp.w_gate(x) if hasattr(mlp, "w_gate") else mlp.c_fc(x)
            stats[f"L{i}/mlp_out_rms"] = rms(output)
            stats.update({f"L{i}/{key}": value for key, value in pre_activation_stats(pre).items()})

        return hook

    @staticmethod
    def _attention_hook(i, stats):
        def hook(attn, args, output):
            x, rope = args[0], args[2] if len(args) > 2 else None
            q, k, _ = attn.heads(x, rope)
            stats[f"L{i}/attn_logit_max"], stats[f"L{i}/attn_entropy"] = attention_stats(q, k)

        return hook
