# The RELU twin of classify_tweets.py: the same data, shape and schedule, another MLP.
from config.classify_tweets import *  # noqa: F403

out_dir = "out-classify/tweets_relu"
mlp = "relu"
