"""Every trainer's typed config: RunConfig holds the keys all of them share, one subclass per script.

TrainConfig is train.py's (bench.py reads it too), ClassifyConfig classify.py's. A config file of
plain assignments and --key=value fill them (core/configurator.py); `python train.py -h` lists the
keys with the comments written here.
"""

import os
from dataclasses import dataclass, fields

from core.hardware import check_device, check_dtype
from core.hf import check_source
from core.step import SDPA_BACKENDS
from model import POOLINGS, SPEED_FIELDS, GPTConfig


@dataclass
class RunConfig:
    """The keys every trainer has: output and resume, logging, the model, AdamW and its schedule, the device."""

    # output, evaluation and logging
    out_dir: str = "out"  # ckpt.pt and metrics.jsonl are written here
    init_from: str = "scratch"  # 'scratch' (out_dir must hold no checkpoint) or 'resume'
    eval_interval: int = 250  # evaluate (and maybe checkpoint) every this many iterations
    log_interval: int = 10  # log train loss, lr, throughput every this many iterations
    always_save_checkpoint: bool = False  # save at every eval, not only when the eval improves
    wandb_log: bool = False  # also log to Weights & Biases
    wandb_project: str = "swiglu-gpt"
    wandb_group: str = ""  # '' = a name shared by the arms of one comparison
    wandb_run_name: str = ""  # '' = '<mlp>-s<seed>'
    wandb_mode: str = ""  # '' = online when logged in, else offline; or 'online', 'offline', 'disabled'
    # batch
    batch_size: int = 12  # sequences per micro-step per process
    block_size: int = 256  # context length
    # model (see model.GPTConfig)
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm layers
    mlp: str = "swiglu"  # gelu, gelu_tanh (GPT-2's own), relu, relu2, swiglu, geglu, reglu
    multiple_of: int = 16  # gated MLP hidden size is rounded up to a multiple of this
    mlp_hidden: int | None = None  # None = 4*n_embd (plain) or the 2/3 rule (gated)
    swish_beta: bool = False  # swiglu: learnable beta, gamma in the gate x*sigmoid(beta*x + gamma)
    mlp_init: str = "gpt2"  # gpt2: every matrix N(0, 0.02); matched: a gated MLP's W_up so its output at init has the plain MLP's RMS
    # the block: GPT-2's by default; rmsnorm + rope + qk_norm + bias=False (+ tie_embeddings=False) is LLaMA's
    norm: str = "layernorm"  # layernorm (GPT-2) or rmsnorm (LLaMA)
    pos: str = "learned"  # positions: learned (a table, GPT-2) or rope (rotary q and k, LLaMA; no table)
    rope_theta: float = 10000.0  # pos=rope: the base of the rotation frequencies
    qk_norm: bool = False  # RMSNorm on each head's q and k before attention (Qwen3)
    tie_embeddings: bool = True  # the output layer shares the token embedding's matrix; False: a separate lm_head
    # optimizer (AdamW, or Muon for the blocks' matrices) and schedule (linear warmup, cosine decay)
    optimizer: str = "adamw"  # adamw; or muon: torch.optim.Muon for the blocks' matrices, AdamW (learning_rate) for the rest
    muon_lr: float = 0.02  # optimizer=muon: the blocks' matrices' peak learning rate, on learning_rate's schedule
    muon_momentum: float = 0.95  # optimizer=muon: Muon's (Nesterov) momentum
    learning_rate: float = 6e-4
    max_iters: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip the gradient norm to this; 0 = no clipping
    decay_lr: bool = True
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None = max_iters
    min_lr: float | None = None  # None = learning_rate / 10
    fused_adamw: bool = True  # fused AdamW kernel where supported (CUDA, CPU)
    # system
    device: str = "auto"  # auto = cuda, then mps, then cpu
    dtype: str = "auto"  # auto = bfloat16 autocast where supported, else float32
    seed: int = 1337  # model init and data order (separate generators)

    def __post_init__(self):
        if self.wandb_mode not in ("", "online", "offline", "disabled"):
            raise ValueError(f"wandb_mode must be one of '', 'online', 'offline', 'disabled'; got {self.wandb_mode!r}")
        for name in ("eval_interval", "log_interval", "batch_size", "block_size", "max_iters"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        check_device(self.device)
        check_dtype(self.dtype)
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        check_choice(self, "optimizer", ("adamw", "muon"))
        if self.muon_lr <= 0 or not 0 <= self.muon_momentum < 1:
            raise ValueError(f"muon_lr must be positive and muon_momentum in [0, 1); got {self.muon_lr}, {self.muon_momentum}")

    def model_fields(self):
        """The values that define the model: GPTConfig's fields but vocab_size and the speed-only ones."""
        skipped = {"vocab_size", *SPEED_FIELDS}  # the vocabulary comes from the data or the tokenizer
        return {f.name: getattr(self, f.name) for f in fields(GPTConfig) if hasattr(self, f.name) and f.name not in skipped}

    def take_model_fields(self, values):
        """Set the model keys from `values` (a dict of GPTConfig fields): a pretrained model's shape is its own."""
        for key in self.model_fields():
            setattr(self, key, values[key])


def check_choice(cfg, name, allowed):
    """Raise ValueError unless cfg.<name> is one of `allowed`."""
    if getattr(cfg, name) not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {getattr(cfg, name)!r}")


@dataclass
class TrainConfig(RunConfig):
    """train.py's keys: a language model on a folder made by data/prepare.py."""

    data_dir: str = "data/quickstart"  # a folder written by data/prepare.py
    # scratch, resume, gpt2 / gpt2-medium / gpt2-large / gpt2-xl (OpenAI's weights, from the hub), or a transformers
    # folder (export.py writes them): the model keys then come from those weights, dropout and block_size from here
    init_from: str = "scratch"
    eval_iters: int = 20  # batches per split in each evaluation
    diagnostics: bool = False  # log per-layer statistics at each log_interval (core/diagnostics.py): a "diag" record
    wandb_group: str = ""  # '' = '<data folder>-<n_layer>x<n_embd>', shared by both arms
    gradient_accumulation_steps: int = 1  # micro-steps per iteration, summed over all processes
    vocab_size: int | None = None  # None = the data's, padded to a multiple of 64 when >= 1024
    compile: bool = False  # torch.compile the model
    # speed switches: each computes the same losses as the plain path, within float tolerance
    compile_mode: str = "default"  # torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune
    loss_chunk_size: int = 0  # >0: loss in chunks of this many tokens, never materialising full logits
    fused_gate_up: bool = False  # gated MLPs: W_gate and W_up in one matmul (same parameters)
    autocast: bool = True  # bfloat16 through torch.autocast; False: bf16 activations cast explicitly, fp32 master weights
    sdpa_backend: str = "auto"  # attention kernel tried first: auto (PyTorch's order), cudnn, flash, efficient, math
    prefetch: bool = True  # CUDA: copy the next batch from pinned memory while the GPU computes
    peak_tflops: float | None = None  # the device's peak for MFU; None = look it up

    def __post_init__(self):
        super().__post_init__()
        if self.init_from not in ("scratch", "resume"):
            check_source(self.init_from)
        check_choice(self, "compile_mode", ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))
        check_choice(self, "sdpa_backend", ("auto", *SDPA_BACKENDS))
        for name in ("eval_iters", "gradient_accumulation_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        GPTConfig(**self.model_fields(), **self.speed_fields(self.dtype), vocab_size=self.vocab_size or 1)  # validates the model keys
        # readable defaults, recorded with the run so a report can find the group again
        self.wandb_group = self.wandb_group or f"{os.path.basename(os.path.normpath(self.data_dir))}-{self.n_layer}x{self.n_embd}"
        pretrained = self.init_from not in ("scratch", "resume")
        self.wandb_run_name = (
            self.wandb_run_name or f"{os.path.basename(os.path.normpath(self.init_from)) if pretrained else self.mlp}-s{self.seed}"
        )

    def speed_fields(self, dtype):
        """The GPTConfig fields that only change speed (model.SPEED_FIELDS), as the switches and the resolved dtype ask."""
        explicit_bf16 = not self.autocast and dtype == "bfloat16"
        return {
            "loss_chunk_size": self.loss_chunk_size,
            "fused_gate_up": self.fused_gate_up,
            "compute_dtype": "bfloat16" if explicit_bf16 else None,
        }


@dataclass
class ClassifyConfig(RunConfig):
    """classify.py's keys: a sequence classifier on labelled texts, its backbone from scratch or a train.py run."""

    # labelled data: a train and a test file (CSV, JSONL or Parquet), or a Hugging Face dataset
    train_file: str = ""  # labelled texts to train on
    test_file: str = ""  # labelled texts to score at every eval
    hf_dataset: str = ""  # instead of files: a hub name, or a loader (csv, json, parquet) reading train_file/test_file
    hf_config: str | None = None  # the dataset's configuration name
    train_split: str = "train"
    test_split: str = "test"
    text_column: str = "text"
    label_column: str = "label"
    labels: str = ""  # comma list: keep only these labels, in this class order; '' = every label of the train split
    # the backbone
    init_from: str = "scratch"  # scratch, resume (continue out_dir), or a train.py out_dir to fine-tune ('{seed}' = this seed)
    tokenizer: str = "gpt2"  # from scratch: a tiktoken encoding, or char (the characters of the train texts)
    pooling: str = "last"  # the head reads: last = the last real token's hidden state, mean = the mean over real tokens
    # defaults of their own
    out_dir: str = "out-classify"
    n_layer: int = 4  # from scratch: the model shape and MLP (a pretrained backbone keeps its own)
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1  # applies to a pretrained backbone too
    block_size: int = 64  # texts are cut to this many tokens (at most the pretrained backbone's block_size)
    batch_size: int = 32  # texts per iteration
    max_iters: int = 600
    eval_interval: int = 100  # score the test split every this many iterations
    always_save_checkpoint: bool = False  # save at every eval, not only when macro-F1 improves
    learning_rate: float = 1e-3
    warmup_iters: int = 50
    beta2: float = 0.99
    seed: int = 1337  # the head's and a scratch model's init, and (apart) the order of the training texts
    wandb_project: str = "swiglu-gpt-classify"
    wandb_group: str = ""  # '' = 'classify-<labels or all>'
    wandb_run_name: str = ""  # '' = '<mlp or backbone>-s<seed>'

    def __post_init__(self):
        super().__post_init__()
        check_choice(self, "pooling", POOLINGS)
        if self.init_from == "scratch":
            GPTConfig(**self.model_fields(), vocab_size=1)  # validates the model keys now
        self.init_from = self.init_from.replace("{seed}", str(self.seed))
        self.wandb_group = self.wandb_group or f"classify-{self.labels or 'all'}"
        self.wandb_run_name = (
            self.wandb_run_name or f"{self.mlp if self.init_from == 'scratch' else os.path.basename(self.init_from)}-s{self.seed}"
        )
