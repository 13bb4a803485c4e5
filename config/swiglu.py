# Quick start: a small GPT with a SwiGLU MLP that trains on a laptop CPU in a few minutes.
# Twin of config/gelu.py: the two files differ in `mlp` alone.
#   python data/prepare.py pystdlib && python train.py config/swiglu.py
data_dir = "data/pystdlib"
out_dir = "out/swiglu"
mlp = "swiglu"

n_layer = 4
n_head = 6
n_embd = 192  # 8/3 * 192 = 512 exactly: the SwiGLU and GELU MLPs have equal parameters
block_size = 128
batch_size = 16
dropout = 0.0

max_iters = 600
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 30
weight_decay = 0.1
beta2 = 0.99

eval_interval = 100
eval_iters = 20
log_interval = 10
