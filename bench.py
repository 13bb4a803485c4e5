"""
Time full training steps (forward, backward, clip, AdamW) of any config, on random tokens.

    python bench.py config/gpt2_124m_swiglu.py --batch_size=16 --gradient_accumulation_steps=1
    python bench.py config/swiglu.py --compare=mlp=gelu,swiglu
    python bench.py config/swiglu.py --compare=compile=False,True --steps=20

Prints the median ms/step after warm-up, tokens/s, model TFLOP/s (the same FLOPs per token that
train.py logs), MFU against the device's peak (--peak TFLOPS overrides the table in
hardware.py) and peak memory. Its own options (below) and train.py's keys and config files mix
freely on the command line. The step is core/step.py's train_step, the one train.py runs. Each row runs
in a process of its own, so its peak memory and compiled code are its own.
"""

import json
import multiprocessing
import resource
import statistics
import sys
import time
import typing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import torch

from core.configs import TrainConfig
from core.configurator import ConfigError, build, help_text, load_config, load_options, parse_value
from core.entry import run_main
from core.hardware import device_type, enable_tf32, peak_flops, resolve_device, resolve_dtype
from core.lifecycle import make_optimizer
from core.step import StepContext, check_cuda_graphs, train_step
from model import GPT, GPTConfig


@dataclass
class BenchOptions:
    steps: int = 10  # timed steps
    warmup: int = 3  # untimed steps first, compilation included
    compare: str = ""  # KEY=V1,V2,...: one row per value of a train.py key, e.g. mlp=gelu,swiglu
    peak: float | None = None  # device peak in TFLOP/s for MFU; None = hardware.py's table
    json: str = ""  # also write the rows to this JSON file
    profile: bool = False  # print torch.profiler's top 10 of one more step per row

    def __post_init__(self):
        if self.steps <= 0 or self.warmup < 0:
            raise ValueError("steps must be positive and warmup non-negative")


def parse_compare(spec):
    """'mlp=gelu,swiglu' -> ('mlp', ['gelu', 'swiglu']), values typed like the TrainConfig field."""
    key, sep, values = spec.partition("=")
    hints = typing.get_type_hints(TrainConfig)
    if not sep or key not in hints:
        raise ConfigError(f"--compare expects KEY=V1,V2,... with KEY a config key, got {spec!r}")
    return key, [parse_value(v, hints[key], key, "in --compare") for v in values.split(",")]


def synchronize(device):
    if device_type(device) == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device):
    """Peak GPU memory allocated since the last reset, or the process's peak RSS on CPU."""
    if device_type(device) == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB on Linux


def bench_config(cfg, steps, warmup, peak_tflops=None, profile_rows=False):
    """Time `steps` training steps after `warmup` ones; returns a dict of measurements.

    With profile_rows, one more step runs under torch.profiler and its top-10 table is returned too.
    """
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    micro_steps = cfg.gradient_accumulation_steps
    enable_tf32(device)
    torch.manual_seed(cfg.seed)
    raw_model = GPT(GPTConfig(**cfg.model_fields(), **cfg.speed_fields(dtype), vocab_size=cfg.vocab_size or 50304)).to(device)
    optimizer = make_optimizer(raw_model, cfg, device)
    model = torch.compile(raw_model, mode=cfg.compile_mode) if cfg.compile else raw_model
    ctx = StepContext(cfg, device, dtype)
    # a pool of random batches already on the device: the step is timed, not the data pipeline
    pool = torch.randint(0, raw_model.config.vocab_size, (4, cfg.batch_size, cfg.block_size + 1), device=device)

    def fetch(k):
        sequence = pool[k % len(pool)]
        return sequence[:, :-1], sequence[:, 1:]

    batch, times = fetch(0), []
    for step in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        loss, batch, _ = train_step(model, optimizer, batch, fetch, micro_steps, cfg.grad_clip, ctx)
        synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    if not torch.isfinite(loss):
        raise RuntimeError("the benchmark's loss is not finite")

    profile = profile_step(model, optimizer, batch, fetch, micro_steps, cfg.grad_clip, ctx, device) if profile_rows else None
    seconds = statistics.median(times)
    report = raw_model.param_report()
    tokens_per_s = cfg.batch_size * cfg.block_size * micro_steps / seconds
    flops = report["flops_per_token"] * tokens_per_s
    peak = peak_flops(device, peak_tflops)
    return {
        "device": torch.cuda.get_device_name(device) if device_type(device) == "cuda" else device,
        "dtype": dtype,
        "mlp": cfg.mlp,
        "params": report["params_total"],
        "ms_per_step": 1000 * seconds,
        "tokens_per_s": tokens_per_s,
        "tflops": flops / 1e12,
        "mfu": flops / peak if peak else None,
        "peak_memory_gb": peak_memory_gb(device),
        "profile": profile,
    }


def profile_step(model, optimizer, batch, fetch, micro_steps, grad_clip, ctx, device, rows=10):
    """torch.profiler's table of the `rows` costliest kernels (CUDA) or operators (CPU) of one more step."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    sort_by = "self_cpu_time_total"
    if device_type(device) == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        sort_by = "self_cuda_time_total"
    with torch.profiler.profile(activities=activities) as prof:
        train_step(model, optimizer, batch, fetch, micro_steps, grad_clip, ctx)
        synchronize(device)
    return prof.key_averages().table(sort_by=sort_by, row_limit=rows)


def bench_in_fresh_process(cfg, steps, warmup, peak_tflops=None, profile=False):
    """bench_config in a new process, so that memory peaks, compiled code and CUDA state are the arm's own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(bench_config, cfg, steps, warmup, peak_tflops, profile).result()


def table_header(label):
    return f"{label:>18} {'ms/step':>9} {'tokens/s':>11} {'TFLOP/s':>8} {'MFU':>6} {'peak mem GB':>11} {'params':>8}"


def table_row(value, r):
    """One variant's measurements, aligned under table_header."""
    mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
    speed = f"{r['ms_per_step']:9.1f} {r['tokens_per_s']:11,.0f} {r['tflops']:8.2f} {mfu:>6}"
    return f"{str(value):>18} {speed} {r['peak_memory_gb']:11.2f} {r['params'] / 1e6:7.1f}M"


def parse_arguments(argv):
    """(options, the TrainConfig of each row, the key the rows differ in, its values), checked before any row runs."""
    train_help = "\n\n" + help_text(TrainConfig, "train.py").split("\n", 2)[2]
    usage = "bench.py [CONFIG_FILE.py ...] [--key=value ...]"
    args, rest = load_options(BenchOptions, argv, "bench.py", usage, __doc__.strip(), passthrough=True, more_help=train_help)
    cfg = load_config(TrainConfig, rest, prog="bench.py")
    key, values = parse_compare(args.compare) if args.compare else ("mlp", [cfg.mlp])
    variants = [build(TrainConfig, {**asdict(cfg), key: value}) for value in values]  # TrainConfig checks each value
    for variant in variants:
        resolve_device(variant.device)  # a device that is not there: one line here, not a child's traceback
        check_cuda_graphs(variant, variant.gradient_accumulation_steps)
    return args, variants, key, values


def bench(argv):
    """Time every row and print the table (and the profiles, and the JSON file when asked)."""
    args, variants, key, values = parse_arguments(argv)
    cfg = variants[0]
    print(
        f"{cfg.n_layer} layers x {cfg.n_embd} wide, "
        f"batch {cfg.batch_size} x {cfg.block_size} x {cfg.gradient_accumulation_steps} micro-steps, "
        f"compile={cfg.compile}, loss_chunk_size={cfg.loss_chunk_size}; median of {args.steps} steps after {args.warmup}"
    )
    print(table_header(key))
    rows = []
    for value, variant in zip(values, variants, strict=True):
        rows.append({key: value, **bench_in_fresh_process(variant, args.steps, args.warmup, args.peak, args.profile)})
        print(table_row(value, rows[-1]), flush=True)
    for row in rows if args.profile else []:
        print(f"\nprofile of one step, {key}={row[key]}:\n{row['profile']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def main(argv=None):
    return run_main("bench.py", lambda: bench(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
