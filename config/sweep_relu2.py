# The sweeps' recipe: small GPTs with a ReLU² MLP (nanochat's) on all of character-level Shakespeare
# (twins: sweep_swiglu.py, sweep_gelu.py).
# Data-rich: 600 steps of 2,048 tokens are 1.2M tokens, a quarter of an epoch, so no dropout.
# The shape and the learning rate are what the sweeps vary, e.g.
#   python data/prepare.py ../shared/corpora/shakespeare --tokenizer=char --out_dir=data/shakespeare_char
#   python compare.py config/sweep_swiglu.py config/sweep_gelu.py config/sweep_relu2.py --runs_dir=runs/sweep_size \
#       --sweep=n_layer/n_head/n_embd=2/2/48,3/3/72,4/3/96,4/4/144
data_dir = "data/shakespeare_char"
out_dir = "out/sweep_relu2"
mlp = "relu2"

n_layer = 4
n_head = 3
n_embd = 96  # a multiple of 6: 8/3 * n_embd is a multiple of 16, so both MLPs have equal parameters
block_size = 64
batch_size = 32
dropout = 0.0

max_iters = 600
lr_decay_iters = 600
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 30
weight_decay = 0.1
beta2 = 0.99

eval_interval = 100
eval_iters = 40
log_interval = 20
