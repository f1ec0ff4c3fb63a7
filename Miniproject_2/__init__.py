"""Miniproject 2: Noise2Noise with a deep-learning framework written from scratch (see model.py and others/)."""
