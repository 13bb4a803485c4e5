# nanoGPT's "baby GPT" on character-level Shakespeare, with a GELU MLP (twin: shakespeare_char_swiglu.py).
# Small data, 10M parameters: it overfits, so dropout is on and the best val loss is what counts.
#   python data/prepare.py ../shared/corpora/shakespeare --tokenizer=char --out_dir=data/shakespeare_char
#   python train.py config/shakespeare_char_gelu.py
data_dir = "data/shakespeare_char"
out_dir = "out/shakespeare_char_gelu"
mlp = "gelu"

n_layer = 6
n_head = 6
n_embd = 384  # 8/3 * 384 = 1024 exactly: equal MLP parameters in both twins
block_size = 256
batch_size = 64
dropout = 0.2

max_iters = 5000
lr_decay_iters = 5000
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
beta2 = 0.99  # larger than GPT-2's 0.95: few tokens per iteration

eval_interval = 250
eval_iters = 200
log_interval = 10
