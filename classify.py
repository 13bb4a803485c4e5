"""
Train a sequence classifier whose backbone is our GPT on labelled texts, and score it on a test split.

    python classify.py config/classify_tweets.py --mlp=swiglu                # from scratch, any mlp and shape
    python classify.py config/classify_tweets.py --init_from=out/swiglu      # fine-tune a train.py run
    python classify.py config/classify_tweets.py --labels=negative,positive  # keep a subset of the labels

Does a lower language-model loss carry over to a task? Each eval scores the whole test split:
accuracy, macro-F1, per-class precision/recall/F1, the confusion matrix and the majority-class
accuracy as a floor, in out_dir/metrics.jsonl (compare.py reports such runs like train.py's) and
in wandb when asked. As in train.py, the batches depend on `seed` and the iteration alone, so the
arms of one seed see the same texts in the same order, and init_from=resume continues a run exactly.

Texts are tokenized once, truncated to block_size tokens (the first ones) and right-padded per
batch; the head reads the last real token's final hidden state (`pooling`), so padding changes
nothing. A char vocabulary from a pretrained run drops the characters it lacks (their share is
logged as unknown_char_share).
"""

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields

try:  # torch takes seconds to import: a Ctrl-C meanwhile ends the script as quietly as one in main()
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from core.checkpoint import (
        MODEL_KEYS,
        gpt_from_args,
        load_checkpoint,
        model_from_checkpoint,
        remove_stale_temp,
        save_checkpoint,
    )
    from core.configurator import ConfigError
    from core.hardware import autocast, check_device, check_dtype, enable_tf32, resolve_device, resolve_dtype
    from core.metrics import MetricsLog, start_metrics, start_wandb
    from data.labelled import load_labelled
    from data.tokenizer import CHAR_SEPARATOR, CharTokenizer, DataError, get_tokenizer, tokenizer_from_meta
    from model import GPT, POOLINGS, SPEED_FIELDS, GPTClassifier, GPTConfig
    from train import TrainingError, get_lr, make_optimizer, rng_state, run_script, stop_on_signals
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("classify.py: interrupted", file=sys.stderr)
    sys.exit(130)

# What a classify checkpoint holds beyond the weights: enough to rebuild model, tokenizer and labels, and to resume.
CLASSIFY_KEYS = ("model", "model_args", "data_meta", "label_names", "pooling", "optimizer", "config", "iter", "best_macro_f1", "elapsed")


@dataclass
class ClassifyConfig:
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
    n_layer: int = 4  # from scratch: the model shape and MLP (a pretrained backbone keeps its own)
    n_head: int = 4
    n_embd: int = 128
    mlp: str = "swiglu"
    multiple_of: int = 16
    bias: bool = False
    dropout: float = 0.1  # applies to a pretrained backbone too
    block_size: int = 64  # texts are cut to this many tokens (at most the pretrained backbone's block_size)
    pooling: str = "last"  # the head reads: last = the last real token's hidden state, mean = the mean over real tokens
    # training
    out_dir: str = "out-classify"  # ckpt.pt and metrics.jsonl are written here
    batch_size: int = 32
    max_iters: int = 600
    eval_interval: int = 100  # score the test split every this many iterations
    log_interval: int = 10
    always_save_checkpoint: bool = False  # save at every eval, not only when macro-F1 improves
    learning_rate: float = 1e-3
    min_lr: float | None = None  # None = learning_rate / 10
    decay_lr: bool = True
    warmup_iters: int = 50
    lr_decay_iters: int | None = None  # None = max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    fused_adamw: bool = True
    seed: int = 1337  # the head's and a scratch model's init, and (apart) the order of the training texts
    device: str = "auto"
    dtype: str = "auto"
    wandb_log: bool = False
    wandb_project: str = "swiglu-gpt-classify"
    wandb_group: str = ""  # '' = 'classify-<n labels>'
    wandb_run_name: str = ""  # '' = '<mlp or backbone>-s<seed>'
    wandb_mode: str = ""  # '' = online when logged in, else offline

    def __post_init__(self):
        for name in ("batch_size", "max_iters", "eval_interval", "log_interval", "block_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}")
        check_device(self.device)
        check_dtype(self.dtype)
        if self.init_from == "scratch":
            GPTConfig(**self.scratch_model_fields(), vocab_size=1)  # validates the model keys now
        self.init_from = self.init_from.replace("{seed}", str(self.seed))
        self.wandb_group = self.wandb_group or f"classify-{self.labels or 'all'}"
        self.wandb_run_name = (
            self.wandb_run_name or f"{self.mlp if self.init_from == 'scratch' else os.path.basename(self.init_from)}-s{self.seed}"
        )

    def scratch_model_fields(self):
        """The GPTConfig fields this config sets for a model from scratch (vocab_size comes from the tokenizer)."""
        return {f.name: getattr(self, f.name) for f in fields(GPTConfig) if hasattr(self, f.name) and f.name not in SPEED_FIELDS}


# ---- data ------------------------------------------------------------------------------------


@dataclass
class EncodedTexts:
    """Token ids of each text (cut to block_size) and its class id."""

    ids: list  # one int64 array per text
    labels: np.ndarray
    truncated: int  # how many texts were cut
    unknown_chars: int  # characters a char vocabulary lacked (dropped)
    chars: int


def encode_texts(tokenizer, texts, labels, block_size):
    """Tokenize every text once; characters outside a char vocabulary are dropped and counted."""
    ids, truncated, unknown, chars = [], 0, 0, 0
    vocab = set(tokenizer.vocab) - {CHAR_SEPARATOR} if isinstance(tokenizer, CharTokenizer) else None
    for text in texts:
        if vocab is not None:
            known = "".join(c for c in text if c in vocab)
            unknown, chars = unknown + len(text) - len(known), chars + len(text)
            text = known or tokenizer.vocab[tokenizer.eot_id]  # a text of unknown characters only: one end-of-text token
        tokens = tokenizer.encode_to_numpy(text).astype(np.int64)
        truncated += len(tokens) > block_size
        ids.append(tokens[:block_size])
    return EncodedTexts(ids, np.asarray(labels, dtype=np.int64), truncated, unknown, chars)


def pad_batch(ids, labels, device):
    """(idx, lengths, labels) tensors: the texts right-padded with id 0 to the longest one."""
    lengths = [len(t) for t in ids]
    idx = np.zeros((len(ids), max(lengths)), dtype=np.int64)
    for row, tokens in enumerate(ids):
        idx[row, : len(tokens)] = tokens
    as_tensor = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64)).to(device)  # noqa: E731
    return as_tensor(idx), as_tensor(lengths), as_tensor(labels)


def train_indices(seed, iteration, batch_size, n):
    """The training texts of an iteration: a function of (seed, iteration) alone, epochs in fresh shuffles."""
    positions = np.arange(iteration * batch_size, (iteration + 1) * batch_size)
    orders = {int(e): np.random.default_rng([seed, int(e)]).permutation(n) for e in np.unique(positions // n)}
    return np.array([orders[int(p // n)][p % n] for p in positions])


# ---- model -----------------------------------------------------------------------------------


def build_classifier(cfg, label_names, train_texts, checkpoint):
    """(classifier, tokenizer, data_meta): from scratch, from a pretrained train.py run, or a resumed classify run."""
    if checkpoint is not None:  # resume: everything as the run saved it
        tokenizer = tokenizer_from_meta(checkpoint["data_meta"])
        backbone = gpt_from_args(checkpoint["model_args"])
        model = GPTClassifier(backbone, len(label_names), checkpoint["pooling"])
        model.load_state_dict(checkpoint["model"])
        return model, tokenizer, checkpoint["data_meta"]
    torch.manual_seed(cfg.seed)
    if cfg.init_from == "scratch":
        if cfg.tokenizer == "char":
            tokenizer = CharTokenizer(sorted(set("".join(train_texts)) - {CHAR_SEPARATOR}))
        else:
            tokenizer = get_tokenizer(cfg.tokenizer)
        backbone = GPT(GPTConfig(**cfg.scratch_model_fields(), vocab_size=tokenizer.vocab_size))
    else:
        pretrained = load_checkpoint(cfg.init_from, required=MODEL_KEYS)
        tokenizer = tokenizer_from_meta(pretrained["data_meta"])
        backbone = model_from_checkpoint(pretrained, dropout=cfg.dropout)
    model = GPTClassifier(backbone, len(label_names), cfg.pooling)
    return model, tokenizer, tokenizer.meta()


# ---- evaluation ------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, test, label_names, majority_accuracy, device, ctx, batch_size=128):
    """Test loss and every metric of the eval record, over the whole test split."""
    model.eval()
    order = np.argsort([len(t) for t in test.ids], kind="stable")  # similar lengths together: little padding
    predictions, total_loss = np.empty(len(order), dtype=np.int64), 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        idx, lengths, labels = pad_batch([test.ids[r] for r in rows], test.labels[rows], device)
        with ctx:
            logits, _ = model(idx, lengths)
        total_loss += F.cross_entropy(logits.float(), labels, reduction="sum").item()
        predictions[rows] = logits.argmax(-1).cpu().numpy()
    model.train()
    classes = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(test.labels, predictions, labels=classes, zero_division=0)
    return {
        "test_loss": total_loss / len(order),
        "accuracy": float((predictions == test.labels).mean()),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(label_names, precision, recall, f1, support, strict=True)
        },
        "confusion": confusion_matrix(test.labels, predictions, labels=classes).tolist(),
        "majority_accuracy": majority_accuracy,
    }


# ---- the run ---------------------------------------------------------------------------------


def classify(cfg):
    """Train and score a classifier as cfg says; returns a summary dict (final and best metrics, iterations, time)."""
    device = resolve_device(cfg.device)
    data = load_labelled(
        cfg.train_file,
        cfg.test_file,
        cfg.hf_dataset,
        cfg.hf_config,
        cfg.train_split,
        cfg.test_split,
        cfg.text_column,
        cfg.label_column,
        tuple(filter(None, cfg.labels.split(","))),
    )
    checkpoint = start_out_dir(cfg, device)
    if checkpoint is not None and checkpoint["label_names"] != data.label_names:
        raise ConfigError(
            f"init_from=resume: the checkpoint's labels {checkpoint['label_names']} differ from the data's {data.label_names}"
        )
    run = start_run(cfg, data, checkpoint, device)
    stopped_by = train_loop(run)
    return finish_run(run, stopped_by)


@dataclass
class ClassifyRun:
    """What the loop works with: built by start_run, its counters updated as it goes."""

    cfg: ClassifyConfig
    device: str
    model: GPTClassifier
    optimizer: torch.optim.Optimizer
    ctx: object  # the autocast context of every forward pass
    label_names: list
    tokenizer_meta: dict
    train: EncodedTexts
    test: EncodedTexts
    majority_accuracy: float  # the test accuracy of always guessing the commonest training label
    log: MetricsLog
    wandb_run_id: str | None
    iter: int = 0
    best_macro_f1: float = -1.0
    metrics: dict | None = None  # the last evaluation's
    elapsed_before: float = 0.0  # wall time of the earlier parts of a resumed run
    started: float = 0.0
    window: tuple = (0.0, 0)  # (time, iteration) of the last train record: texts/s leaves evaluation out

    def progress(self):
        """The fields every train and eval record starts with."""
        return {"iter": self.iter, "examples": self.iter * self.cfg.batch_size, "time": self.elapsed_before + time.time() - self.started}


def train_loop(run):
    """Step until max_iters or a signal, evaluating, logging and saving on the way; returns the signal that stopped it, if any."""
    cfg = run.cfg
    with stop_on_signals() as stop:
        while run.iter < cfg.max_iters:
            if stop["signal"]:
                save(run)
                print(
                    f"stopped by signal {stop['signal']} at iteration {run.iter}; checkpoint saved, continue with --init_from=resume",
                    file=sys.stderr,
                )
                return stop["signal"]
            for group in run.optimizer.param_groups:
                group["lr"] = lr = get_lr(run.iter, cfg)
            rows = train_indices(cfg.seed, run.iter, cfg.batch_size, len(run.train.ids))
            idx, lengths, labels = pad_batch([run.train.ids[r] for r in rows], run.train.labels[rows], run.device)
            with run.ctx:
                _, loss = run.model(idx, lengths, labels)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
            run.iter += 1

            at_end = run.iter == cfg.max_iters
            if run.iter % cfg.log_interval == 0 or at_end:
                log_training(run, loss.item(), lr)
            if run.iter % cfg.eval_interval == 0 or at_end:
                improved = evaluate_and_log(run)
                if improved or cfg.always_save_checkpoint or at_end:
                    save(run)
    return None


def start_run(cfg, data, checkpoint, device):
    """Model, tokenized texts, optimizer and metrics log, fresh or from the checkpoint being resumed."""
    model, tokenizer, tokenizer_meta = build_classifier(cfg, data.label_names, data.train_texts, checkpoint)
    if tokenizer.vocab_size > model.backbone.config.vocab_size:
        raise DataError(f"tokenizer {tokenizer.name} has {tokenizer.vocab_size} tokens, more than the backbone's vocab_size")
    block_size = min(cfg.block_size, model.backbone.config.block_size)
    train = encode_texts(tokenizer, data.train_texts, data.train_labels, block_size)
    test = encode_texts(tokenizer, data.test_texts, data.test_labels, block_size)
    model.to(device)
    optimizer = make_optimizer(model, cfg, device)
    enable_tf32(device)
    train_counts = np.bincount(train.labels, minlength=len(data.label_names))
    run = ClassifyRun(
        cfg=cfg,
        device=device,
        model=model,
        optimizer=optimizer,
        ctx=autocast(device, resolve_dtype(cfg.dtype, device)),
        label_names=data.label_names,
        tokenizer_meta=tokenizer_meta,
        train=train,
        test=test,
        majority_accuracy=float((test.labels == train_counts.argmax()).mean()),
        log=None,
        wandb_run_id=None,
    )
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"][0]["torch"].cpu())
        run.iter, run.best_macro_f1, run.elapsed_before = checkpoint["iter"], checkpoint["best_macro_f1"], checkpoint["elapsed"]
        run.wandb_run_id, run.metrics = checkpoint.get("wandb_run_id"), checkpoint.get("metrics")
    else:
        torch.manual_seed(cfg.seed + 1)  # dropout's stream, apart from the init's

    data_meta = {
        **tokenizer_meta,
        "source": data.source,
        "label_names": data.label_names,
        "train_examples": len(train.ids),
        "test_examples": len(test.ids),
        "train_counts": dict(zip(data.label_names, train_counts.tolist(), strict=True)),
        "test_counts": dict(zip(data.label_names, np.bincount(test.labels, minlength=len(data.label_names)).tolist(), strict=True)),
        "majority_accuracy": run.majority_accuracy,
        "block_size": block_size,
        "truncated_share": (train.truncated + test.truncated) / (len(train.ids) + len(test.ids)),
        "unknown_char_share": (train.unknown_chars + test.unknown_chars) / max(1, train.chars + test.chars)
        if isinstance(tokenizer, CharTokenizer)
        else None,
    }
    report = model.backbone.param_report()
    print(model.backbone.param_report_line())
    print(
        f"{len(train.ids):,} train / {len(test.ids):,} test texts, labels {', '.join(data.label_names)}; "
        f"majority-class accuracy {run.majority_accuracy:.3f}; "
        f"{data_meta['truncated_share']:.1%} of texts cut to {block_size} tokens"
    )
    wandb_run = None
    if cfg.wandb_log:
        wandb_config = {**asdict(cfg), **report, "data": data_meta}
        wandb_run = start_wandb(
            cfg.wandb_project, cfg.wandb_group, cfg.wandb_run_name, cfg.wandb_mode, wandb_config, run.wandb_run_id, cfg.out_dir
        )
        run.wandb_run_id = wandb_run.id
    # the shape and MLP the backbone has (a pretrained one keeps its own): what a report labels the arm by
    backbone = {key: getattr(model.backbone.config, key) for key in cfg.scratch_model_fields()}
    config_record = {
        "event": "config",
        "task": "classify",
        "config": {**asdict(cfg), **backbone},
        "model": report,
        "data": data_meta,
        "examples_per_iter": cfg.batch_size,
        "world_size": 1,
    }
    start_metrics(cfg.out_dir, config_record, resumed_at=run.iter if checkpoint is not None else None)
    run.log = MetricsLog(cfg.out_dir, wandb_run)
    run.started = time.time()
    run.window = (run.started, run.iter)
    return run


def log_training(run, loss, lr):
    """The train record: loss, lr and texts/s since the last one; a non-finite loss stops the run."""
    if not math.isfinite(loss):
        raise TrainingError(f"loss became non-finite at iteration {run.iter}; stopped without saving")
    examples_per_s = (run.iter - run.window[1]) * run.cfg.batch_size / max(1e-9, time.time() - run.window[0])
    run.window = (time.time(), run.iter)
    run.log.write({"event": "train", **run.progress(), "loss": loss, "lr": lr, "examples_per_s": examples_per_s})
    print(f"iter {run.iter}: loss {loss:.4f}, lr {lr:.2e}, {examples_per_s:,.0f} texts/s")


def evaluate_and_log(run):
    """Score the test split and write the eval record; True when macro-F1 is the best so far."""
    run.metrics = evaluate(run.model, run.test, run.label_names, run.majority_accuracy, run.device, run.ctx)
    run.log.write({"event": "eval", **run.progress(), **run.metrics})
    scores = run.metrics
    print(f"iter {run.iter}: test loss {scores['test_loss']:.4f}, accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f}")
    improved = run.metrics["macro_f1"] > run.best_macro_f1
    run.best_macro_f1 = max(run.best_macro_f1, run.metrics["macro_f1"])
    run.window = (time.time(), run.iter)  # evaluation time stays out of texts/s
    return improved


def save(run):
    """Checkpoint the run atomically: weights, optimizer, tokenizer, labels and counters."""
    save_checkpoint(
        run.cfg.out_dir,
        {
            "model": run.model.state_dict(),
            "model_args": asdict(run.model.backbone.config),
            "data_meta": run.tokenizer_meta,
            "label_names": run.label_names,
            "pooling": run.model.pooling,
            "optimizer": run.optimizer.state_dict(),
            "config": asdict(run.cfg),
            "iter": run.iter,
            "best_macro_f1": run.best_macro_f1,
            "elapsed": run.progress()["time"],
            "wandb_run_id": run.wandb_run_id,
            "rng": [rng_state()],
            "metrics": run.metrics,
        },
    )


def finish_run(run, stopped_by):
    """The end record (when max_iters was reached), the logs closed; returns the run's summary."""
    final = {f"final_{key}": run.metrics[key] for key in ("accuracy", "macro_f1", "test_loss")} if run.metrics else {}
    progress = run.progress()
    if run.iter == run.cfg.max_iters:
        run.log.write(
            {
                "event": "end",
                "iter": run.iter,
                "examples": progress["examples"],
                "time": progress["time"],
                "best_macro_f1": run.best_macro_f1,
                **final,
            }
        )
    run.log.close({"best_macro_f1": run.best_macro_f1, **final})
    return {
        "iter": run.iter,
        "time": progress["time"],
        "best_macro_f1": run.best_macro_f1,
        "interrupted": run.iter < run.cfg.max_iters,
        "signal": stopped_by,
        "out_dir": run.cfg.out_dir,
        **final,
    }


def start_out_dir(cfg, device):
    """Make out_dir; the checkpoint to resume from, or None (refusing to overwrite a run there)."""
    try:
        os.makedirs(cfg.out_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"out_dir {cfg.out_dir} cannot be used as a folder: {e.strerror}") from None
    remove_stale_temp(cfg.out_dir)
    if cfg.init_from == "resume":
        return load_checkpoint(cfg.out_dir, map_location=device, required=CLASSIFY_KEYS)
    if os.path.exists(os.path.join(cfg.out_dir, "ckpt.pt")):
        raise ConfigError(f"{cfg.out_dir} already holds a checkpoint; continue it with --init_from=resume or choose another out_dir")
    return None


def main(argv=None):
    return run_script(ClassifyConfig, classify, "classify.py", __doc__.strip().splitlines()[0], argv, "nothing in out_dir was changed")


if __name__ == "__main__":
    sys.exit(main())
