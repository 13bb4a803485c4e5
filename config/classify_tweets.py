# Sentiment of tweets from scratch (../shared/corpora/sentiment_tweets: 31.6k train / 5.6k test,
# negative / neutral / positive), SwiGLU arm; twins classify_tweets_gelu.py and _relu.py differ in
# mlp alone. --labels=negative,positive gives the binary task.
#   python classify.py config/classify_tweets.py --seed=1
#   python compare.py config/classify_tweets.py config/classify_tweets_gelu.py config/classify_tweets_relu.py \
#       --script=classify.py --seeds=3 --runs_dir=runs/tweets --out=report/tweets
train_file = "../shared/corpora/sentiment_tweets/train.csv"
test_file = "../shared/corpora/sentiment_tweets/test.csv"
out_dir = "out-classify/tweets_swiglu"

tokenizer = "gpt2"  # six times the texts/s of char on a CPU: a tweet is ~30 BPE tokens, ~100 characters
block_size = 64  # cuts under 1% of the tweets
n_layer = 4
n_head = 4
n_embd = 96  # 8/3 * 96 = 256 exactly: equal MLP parameters in every arm
mlp = "swiglu"
dropout = 0.1
pooling = "last"

batch_size = 32
max_iters = 600  # one epoch of the binary task, 0.6 of the 3-class one
eval_interval = 100
learning_rate = 1e-3
warmup_iters = 50
