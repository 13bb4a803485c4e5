# GPT-2 small (124M) with a GELU MLP, for GPUs (twin: gpt2_124m_swiglu.py).
# nanoGPT's recipe: ~0.5M tokens per iteration (12 x 1024 x 40). On 8 GPUs:
#   torchrun --standalone --nproc_per_node=8 train.py config/gpt2_124m_gelu.py
# Data: any large corpus, e.g.
#   python data/prepare.py --hf_dataset=HuggingFaceFW/fineweb-edu --hf_config=sample-10BT --out_dir=data/fineweb-edu
data_dir = "data/fineweb-edu"
out_dir = "out/gpt2_124m_gelu"
mlp = "gelu"

n_layer = 12
n_head = 12
n_embd = 768  # 8/3 * 768 = 2048 exactly: the same MLP parameters as GELU's 4 * 768
block_size = 1024
batch_size = 12
gradient_accumulation_steps = 40
dropout = 0.0
bias = False

max_iters = 600000
lr_decay_iters = 600000
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 2000
weight_decay = 0.1
beta2 = 0.95

eval_interval = 1000
eval_iters = 200
log_interval = 10
compile = True
wandb_log = True
