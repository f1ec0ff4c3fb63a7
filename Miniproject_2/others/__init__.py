"""Miniproject_2's framework: convolution arithmetic (conv), blocks (nn), optimizers (optim), safe checkpoints
(checkpoint) and device choice (device). Imports only ``torch.empty/cat/arange``, ``torch.nn.functional.fold/unfold``
and the Python standard library."""
