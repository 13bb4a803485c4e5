# Fine-tune the README's character-level Shakespeare GELU twin (seed-matched) on the tweets;
# characters its vocabulary lacks (digits, @, #, ...) are dropped and their share logged.
#   python compare.py config/shakespeare_char_swiglu.py config/shakespeare_char_gelu.py ...  (README, "Characters")
#   python compare.py config/classify_tweets_char_swiglu.py config/classify_tweets_char_gelu.py --script=classify.py --seeds=3
from config.classify_tweets import *  # noqa: F403

init_from = "runs/shakespeare_char_small/shakespeare_char_gelu-s{seed}"
out_dir = "out-classify/tweets_char_gelu"
block_size = 128  # the backbone's context: 20% of the tweets are cut
max_iters = 300
learning_rate = 3e-4
warmup_iters = 30
eval_interval = 100  # scoring 5.6k tweets character by character costs half a minute on a CPU core
