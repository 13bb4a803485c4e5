"""
Export a training run as a Hugging Face transformers model folder, usable offline by
AutoModelForCausalLM, AutoTokenizer, pipelines and lm-evaluation-harness.

    python export.py --out_dir=out/swiglu                      # writes out/swiglu/hf
    python export.py --out_dir=out/llama --hf_dir=hf/llama --overwrite=True

The folder holds config.json, model.safetensors (float32), the tokenizer (GPT-2's BPE or the
character vocabulary, as the run's data was prepared) and data_meta.json (that tokenizer's fields,
which train.py's init_from=<folder> checks against its data). The GPT-2 block becomes a
GPT2LMHeadModel, the modern block a LlamaForCausalLM (gated MLP) or ArceeForCausalLM (plain MLP), and
with qk_norm a Qwen3ForCausalLM (gated) or ApertusForCausalLM (plain); see core/hf.py. A block no
transformers class computes is refused in one line. The folder appears complete or not at all.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from core.entry import interrupt_guard, run_main

with interrupt_guard(__name__, "export.py"):  # torch and transformers take seconds to import
    from core.checkpoint import MODEL_KEYS, load_checkpoint, model_from_checkpoint
    from core.configurator import load_config
    from core.hf import export_model


@dataclass
class ExportConfig:
    out_dir: str = "out"  # the training run whose ckpt.pt to export
    hf_dir: str = ""  # the transformers folder to write; '' = <out_dir>/hf
    overwrite: bool = False  # replace an existing hf_dir


def export(argv):
    """Load the config and the checkpoint, write the folder, say what was written."""
    cfg = load_config(ExportConfig, argv, prog="export.py", description=__doc__.strip().splitlines()[0])
    folder = Path(cfg.hf_dir or Path(cfg.out_dir) / "hf")
    checkpoint = load_checkpoint(cfg.out_dir, required=MODEL_KEYS)
    kind = export_model(model_from_checkpoint(checkpoint), checkpoint["data_meta"], folder, overwrite=cfg.overwrite)
    print(f"wrote {folder}: a {kind} model and its tokenizer; AutoModelForCausalLM.from_pretrained({str(folder)!r}) loads it")


def main(argv=None):
    return run_main("export.py", lambda: export(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
