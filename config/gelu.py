# Quick start: a small GPT with a GELU MLP (GPT-2's) that trains on a laptop CPU in a few minutes.
# Twin of config/swiglu.py: the two files differ in `mlp` alone.
#   python data/prepare.py quickstart && python train.py config/gelu.py
data_dir = "data/quickstart"
out_dir = "out/gelu"
mlp = "gelu"

n_layer = 4
n_head = 6
n_embd = 192  # 8/3 * 192 = 512 exactly: the SwiGLU and GELU MLPs have equal parameters
block_size = 128
batch_size = 16
dropout = 0.0

max_iters = 200  # 410k tokens: a third of an epoch of the Shakespeare corpus, about 8 min on 2 CPU cores
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 20
weight_decay = 0.1
beta2 = 0.99

eval_interval = 40
eval_iters = 8
log_interval = 10
