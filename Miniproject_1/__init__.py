"""Miniproject 1: Noise2Noise denoiser in PyTorch (course grader entry point: model.Model)."""
