# The quick start's model with the LLaMA-style block (RMSNorm, RoPE, QK-norm, no biases) and a SwiGLU MLP.
# Twin of config/llama_gelu.py: the two files differ in `mlp` alone; the shape and budget are
# config/swiglu.py's, so the pair asks whether SwiGLU's gain over GELU survives the modern block.
#   python data/prepare.py quickstart && python train.py config/llama_swiglu.py
data_dir = "data/quickstart"
out_dir = "out/llama_swiglu"
wandb_group = "quickstart-4x192-llama"  # apart from the GPT-2 twins' group (their default name)
mlp = "swiglu"

# the block: every switch of model.GPTConfig set to LLaMA's, but the embeddings stay tied. Both arms
# share the choice, so either is fair between them; tied keeps the pair at the parameter count of the
# GPT-2 twins (config/swiglu.py), where an untied lm_head would add vocab x n_embd = 9.7M parameters
# at GPT-2's vocabulary, five times the 1.8M the blocks hold, trained on a third of an epoch.
norm = "rmsnorm"
pos = "rope"
rope_theta = 10000.0
qk_norm = True
bias = False
tie_embeddings = True

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
