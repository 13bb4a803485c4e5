# classify_tweets.py with the head on the mean of the real tokens' states instead of the last one's.
from config.classify_tweets import *  # noqa: F403

out_dir = "out-classify/tweets_mean"
pooling = "mean"
