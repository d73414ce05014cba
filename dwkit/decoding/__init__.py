"""Shared decoding: options and results, logit rules, greedy and beam search."""
