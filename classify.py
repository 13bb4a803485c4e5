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

Here: the texts, the classifier, its loop and its scores. The keys are ClassifyConfig's
(core/configs.py); the rest of a run's life is core/lifecycle.py's, as for train.py.
"""

import math
import sys
import time
from dataclasses import asdict, dataclass

from core.entry import interrupt_guard

with interrupt_guard(__name__, "classify.py"):  # torch takes seconds to import
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from core.checkpoint import MODEL_KEYS, gpt_from_args, load_checkpoint, load_weights, model_from_checkpoint
    from core.configs import ClassifyConfig
    from core.configurator import ConfigError
    from core.hardware import autocast, enable_tf32, resolve_device, resolve_dtype
    from core.lifecycle import (
        Run,
        TrainingError,
        check_resumable,
        claim_out_dir,
        finish_run,
        get_lr,
        make_optimizer,
        open_metrics,
        restore_optimizer,
        resume_checkpoint,
        run_trainer,
        save_run,
        seed_dropout,
        set_lr,
        stop_message,
        stop_on_signals,
    )
    from data.labelled import load_labelled
    from data.tokenizer import CHAR_SEPARATOR, CharTokenizer, DataError, get_tokenizer, tokenizer_from_meta
    from model import GPT, GPTClassifier, GPTConfig

# What a classify checkpoint holds beyond the weights: enough to rebuild model, tokenizer and labels, and to resume.
CLASSIFY_KEYS = (
    "model",
    "model_args",
    "data_meta",
    "label_names",
    "pooling",
    "optimizer",
    "config",
    "iter",
    "best_macro_f1",
    "elapsed",
    "rng",
)
# Keys that decide which texts a resumed run trains and is scored on, in which order: a resume must keep them.
RUN_DEFINING_KEYS = (
    "seed",
    "batch_size",
    "block_size",
    "train_file",
    "test_file",
    "hf_dataset",
    "hf_config",
    "train_split",
    "test_split",
    "text_column",
    "label_column",
    "labels",
)


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


def load_pretrained(cfg):
    """(checkpoint, tokenizer) of the train.py run to fine-tune (init_from names its out_dir), else None.

    Read before out_dir is made, so a wrong init_from leaves nothing behind.
    """
    if cfg.init_from in ("scratch", "resume"):
        return None
    pretrained = load_checkpoint(cfg.init_from, required=MODEL_KEYS, written_by="train.py")
    if "label_names" in pretrained:
        raise ConfigError(
            f"init_from={cfg.init_from} is a classify.py run, not a language model; fine-tune a train.py run, "
            f"or continue that one with --out_dir={cfg.init_from} --init_from=resume"
        )
    return pretrained, tokenizer_from_meta(pretrained["data_meta"])


def build_classifier(cfg, label_names, train_texts, checkpoint, pretrained):
    """(classifier, tokenizer, data_meta): resumed from `checkpoint`, fine-tuned from `pretrained`, or from scratch."""
    if checkpoint is not None:  # resume: everything as the run saved it
        tokenizer = tokenizer_from_meta(checkpoint["data_meta"])
        model = GPTClassifier(gpt_from_args(checkpoint["model_args"]), len(label_names), checkpoint["pooling"])
        load_weights(model, checkpoint)
        return model, tokenizer, checkpoint["data_meta"]
    torch.manual_seed(cfg.seed)
    if pretrained is not None:
        language_model, tokenizer = pretrained
        backbone = model_from_checkpoint(language_model, dropout=cfg.dropout)
    else:
        if cfg.tokenizer == "char":
            tokenizer = CharTokenizer(sorted(set("".join(train_texts)) - {CHAR_SEPARATOR}))
        else:
            tokenizer = get_tokenizer(cfg.tokenizer)
        backbone = GPT(GPTConfig(**cfg.model_fields(), vocab_size=tokenizer.vocab_size))
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
    pretrained = load_pretrained(cfg)
    with claim_out_dir(cfg):
        checkpoint = resume_checkpoint(cfg, device, CLASSIFY_KEYS, "classify.py")
        if checkpoint is not None:
            check_same_run(cfg, checkpoint, data)
        run = start_run(cfg, data, checkpoint, pretrained, device)
        return finish(run, train_loop(run))


def check_same_run(cfg, checkpoint, data):
    """Refuse (ConfigError) a resume that would train another run: other texts, another order, other labels."""
    check_resumable(cfg, checkpoint, RUN_DEFINING_KEYS)
    if checkpoint["label_names"] != data.label_names:
        raise ConfigError(
            f"init_from=resume: the checkpoint's labels {checkpoint['label_names']} differ from the data's {data.label_names}"
        )


@dataclass(kw_only=True)
class ClassifyRun(Run):
    """What the loop works with: built by start_run, its counters updated as it goes."""

    model: GPTClassifier
    ctx: object  # the autocast context of every forward pass
    label_names: list
    tokenizer_meta: dict
    train: EncodedTexts
    test: EncodedTexts
    majority_accuracy: float  # the test accuracy of always guessing the commonest training label
    best_macro_f1: float = -1.0
    metrics: dict | None = None  # the last evaluation's

    def progress(self):
        """The fields every train and eval record starts with."""
        return {"iter": self.iter, "examples": self.iter * self.cfg.batch_size, "time": self.elapsed()}


def train_loop(run):
    """Step until max_iters or a signal, evaluating, logging and saving on the way; returns the signal that stopped it, if any."""
    cfg = run.cfg
    with stop_on_signals() as stop:
        while run.iter < cfg.max_iters:
            if stop["signal"]:
                save(run)
                print(stop_message(run, stop["signal"]), file=sys.stderr)
                return stop["signal"]
            lr = get_lr(run.iter, cfg)
            set_lr(run.optimizer, lr)
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


def start_run(cfg, data, checkpoint, pretrained, device):
    """Model, tokenized texts, optimizer and metrics log: resumed, fine-tuned from a pretrained run, or from scratch."""
    model, tokenizer, tokenizer_meta = build_classifier(cfg, data.label_names, data.train_texts, checkpoint, pretrained)
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
    )
    if checkpoint is not None:
        restore_optimizer(optimizer, checkpoint, cfg)
        run.continue_from(checkpoint)
        run.best_macro_f1, run.metrics = checkpoint["best_macro_f1"], checkpoint.get("metrics")
    seed_dropout(cfg, 0, checkpoint)
    start_logs(run, data, tokenizer, block_size)
    run.start_clock()
    return run


def start_logs(run, data, tokenizer, block_size):
    """Say what is being trained on what, and open metrics.jsonl and the wandb run."""
    train, test, names = run.train, run.test, data.label_names
    counts = {split: np.bincount(texts.labels, minlength=len(names)).tolist() for split, texts in (("train", train), ("test", test))}
    data_meta = {
        **run.tokenizer_meta,
        "source": data.source,
        "label_names": names,
        "train_examples": len(train.ids),
        "test_examples": len(test.ids),
        "train_counts": dict(zip(names, counts["train"], strict=True)),
        "test_counts": dict(zip(names, counts["test"], strict=True)),
        "majority_accuracy": run.majority_accuracy,
        "block_size": block_size,
        "truncated_share": (train.truncated + test.truncated) / (len(train.ids) + len(test.ids)),
        "unknown_char_share": (train.unknown_chars + test.unknown_chars) / max(1, train.chars + test.chars)
        if isinstance(tokenizer, CharTokenizer)
        else None,
    }
    report = run.model.backbone.param_report()
    print(run.model.backbone.param_report_line())
    print(
        f"{len(train.ids):,} train / {len(test.ids):,} test texts, labels {', '.join(names)}; "
        f"majority-class accuracy {run.majority_accuracy:.3f}; "
        f"{data_meta['truncated_share']:.1%} of texts cut to {block_size} tokens"
    )
    # the shape and MLP the backbone has (a pretrained one keeps its own): what a report labels the arm by
    backbone = {key: getattr(run.model.backbone.config, key) for key in run.cfg.model_fields()}
    config_record = {"task": "classify", "config": {**asdict(run.cfg), **backbone}, "model": report, "data": data_meta}
    open_metrics(run, {**config_record, "examples_per_iter": run.cfg.batch_size, "world_size": 1}, {**report, "data": data_meta})


def log_training(run, loss, lr):
    """The train record: loss, lr and texts/s since the last one; a non-finite loss stops the run."""
    if not math.isfinite(loss):
        raise TrainingError(f"loss became non-finite at iteration {run.iter}; stopped without saving")
    iterations, seconds = run.take_window()
    examples_per_s = iterations * run.cfg.batch_size / seconds
    run.log.write({"event": "train", **run.progress(), "loss": loss, "lr": lr, "examples_per_s": examples_per_s})
    print(f"iter {run.iter}: loss {loss:.4f}, lr {lr:.2e}, {examples_per_s:,.0f} texts/s")


def evaluate_and_log(run):
    """Score the test split and write the eval record; True when macro-F1 is the best so far."""
    started = time.time()
    run.metrics = evaluate(run.model, run.test, run.label_names, run.majority_accuracy, run.device, run.ctx)
    run.log.write({"event": "eval", **run.progress(), **run.metrics})
    scores = run.metrics
    print(f"iter {run.iter}: test loss {scores['test_loss']:.4f}, accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f}")
    improved = run.metrics["macro_f1"] > run.best_macro_f1
    run.best_macro_f1 = max(run.best_macro_f1, run.metrics["macro_f1"])
    run.eval_seconds += time.time() - started  # evaluation time stays out of texts/s
    return improved


def save(run):
    """Checkpoint the run (core.lifecycle.save_run): weights, tokenizer, labels and scores so far."""
    state = {
        "model": run.model.state_dict(),
        "model_args": asdict(run.model.backbone.config),
        "data_meta": run.tokenizer_meta,
        "label_names": run.label_names,
        "pooling": run.model.pooling,
        "best_macro_f1": run.best_macro_f1,
        "metrics": run.metrics,
    }
    save_run(run, state)


def finish(run, stopped_by):
    """The end record and the summary (core.lifecycle.finish_run): the best macro-F1 and the final scores."""
    final = {f"final_{key}": run.metrics[key] for key in ("accuracy", "macro_f1", "test_loss")} if run.metrics else {}
    return finish_run(run, stopped_by, {"examples": run.iter * run.cfg.batch_size}, {"best_macro_f1": run.best_macro_f1, **final})


def main(argv=None):
    return run_trainer(ClassifyConfig, classify, "classify.py", __doc__.strip().splitlines()[0], argv, "nothing in out_dir was changed")


if __name__ == "__main__":
    sys.exit(main())
