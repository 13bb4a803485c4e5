"""
The tables (and for call B the curves) of scripts/gpu_call_a.sh and gpu_call_b.sh.

    python3 scripts/gpu_report.py a WORK_DIR OUT_DIR
    python3 scripts/gpu_report.py b WORK_DIR OUT_DIR

Writes OUT_DIR/results.json and OUT_DIR/table.md (call B: also OUT_DIR/val_loss_vs_time.png)
and prints the table of the rows that ran. Exits non-zero when the nanoGPT row every ratio needs
is missing, so an empty table never passes for a result.
"""

import json
import re
import sys
from pathlib import Path

# call A: (label, json file); ours' files hold one row per arm
ROWS_A = [
    ("nanoGPT", "nanogpt_gelu.json"),
    ("nanoGPT", "nanogpt_swiglu.json"),
    ("ours, plain", "ours_plain.json"),
    ("ours, loss_chunk_size=4096", "ours_chunked.json"),
    ("ours, fused_gate_up", "ours_fused.json"),
    ("ours, sdpa_backend=cudnn", "ours_cudnn.json"),
    ("ours, autocast=False", "ours_explicit_bf16.json"),
    ("ours, reduce-overhead", "ours_graphs.json"),
    ("ours, all switches", "ours_all.json"),
]
EVAL_LINE = re.compile(r"^([\d.]+)\t(?:step|iter) (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def load_rows(work):
    rows = []
    for label, name in ROWS_A:
        path = work / name
        if path.exists():
            data = json.loads(path.read_text())
            rows += [{"label": label, **row} for row in (data if isinstance(data, list) else [data])]
    return rows


def fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def report_a(work, out):
    rows = load_rows(work)
    nano = {r["mlp"]: r for r in rows if r["label"] == "nanoGPT"}
    base = nano.get("swiglu")
    # one peak for every MFU: the one bench.py took from hardware.py for this card
    peaks = [r["tflops"] / r["mfu"] for r in rows if r["label"] != "nanoGPT" and r.get("mfu")]
    for r in nano.values():
        r["mfu"] = r["tflops"] / peaks[0] if peaks else r["mfu"]
    lines = [
        "| code, setting | mlp | ms/step | tokens/s | vs nanoGPT SwiGLU | MFU | peak GB | vs nanoGPT mem |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speed = r["tokens_per_s"] / base["tokens_per_s"] if base else None
        memory = r["peak_memory_gb"] / base["peak_memory_gb"] if base else None
        lines.append(
            f"| {r['label']} | {r['mlp']} | {r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} | {fmt(speed, '.2f')}x"
            f" | {fmt(r['mfu'], '.1%')} | {fmt(r['peak_memory_gb'], '.1f')} | {fmt(memory, '.2f')}x |"
        )
    for r in rows:
        if r.get("profile"):
            lines += ["", f"torch.profiler, one step of {r['label']}, {r['mlp']}:", "```", r["profile"], "```"]
    write(out, rows, lines)
    if base is None:
        sys.exit("no nanoGPT SwiGLU row: the ratios could not be computed (see logs.txt)")


def eval_points(path):
    """(seconds since process start, iteration, val loss) of every evaluation in a timed log."""
    points = []
    for line in path.read_text().splitlines() if path.exists() else []:
        match = EVAL_LINE.match(line)
        if match:
            points.append((float(match[1]), int(match[2]), float(match[4])))
    return points


def report_b(work, out):
    runs = {name: eval_points(work / f"{name}.tlog") for name in ("nanogpt_char", "ours_char", "ours_char_eval40")}
    if not runs["nanogpt_char"]:
        sys.exit("nanoGPT's run logged no evaluation: nothing to compare against (see logs.txt)")
    best_time, best_iter, best = min(runs["nanogpt_char"], key=lambda p: p[2])
    rows, lines = (
        [],
        [
            f"nanoGPT (GELU, as shipped): best val loss {best:.4f} at iteration {best_iter}, {best_time:.1f} s after process start",
            "",
            "| run | evals | best val loss | first reaches nanoGPT's best at | time ratio |",
            "|---|---|---|---|---|",
        ],
    )
    for name, points in runs.items():
        if not points:
            continue
        reached = next(((t, it) for t, it, v in points if v <= best), None)
        row = {
            "run": name,
            "points": points,
            "best_val_loss": min(v for _, _, v in points),
            "reached_s": reached[0] if reached else None,
            "ratio": reached[0] / best_time if reached else None,
        }
        rows.append(row)
        where = f"{reached[0]:.1f} s (iter {reached[1]})" if reached else "not reached"
        ratio = f"{row['ratio']:.2f}x" if reached else "-"
        lines.append(f"| {name} | {len(points)} | {row['best_val_loss']:.4f} | {where} | {ratio} |")
    write(out, rows, lines)  # before the plot, so the numbers come back even if plotting fails
    plot_b(runs, best, out / "val_loss_vs_time.png")


def plot_b(runs, best, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in runs.items():
        if points:
            ax.plot([p[0] for p in points], [p[2] for p in points], marker=".", label=name)
    ax.axhline(best, color="gray", linestyle="--", linewidth=0.8, label=f"nanoGPT best {best:.3f}")
    ax.set(xlabel="seconds since process start", ylabel="val loss", title="baby GPT, character Shakespeare: val loss against wall time")
    ax.set_ylim(top=min(3.0, ax.get_ylim()[1]))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write(out, rows, lines):
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("a", "b"):
        sys.exit("usage: gpu_report.py a|b WORK_DIR OUT_DIR")
    {"a": report_a, "b": report_b}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
