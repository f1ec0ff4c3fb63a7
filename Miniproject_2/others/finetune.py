"""Fine-tuning from loaded weights: what ``Model.train`` does when the model starts from a checkpoint.

The course's grader loads bestmodel.pth, trains one epoch on its pairs and measures again. Training a converged model
at the rate that trains one from scratch moves it away from its optimum, and the grader prints a worse number; on
pairs unlike the training data, though, an epoch can teach the model a lot. So ``train`` from loaded weights:

* holds out a slice of the given pairs (a tenth, at most ``MAX_HELD_OUT``) to judge on, and never trains on it;
* trains on the rest at ``LR_SCALE`` times the model's learning rate, warmed up linearly over the first
  ``WARMUP`` of the steps (Adam's first steps, with fresh moments, are as large as the rate), then cosine-decayed;
* measures the held-out losses ``CHECKS`` times along the run, and ends with the weights that measured best among
  those that beat the loaded weights clearly and by enough, or with the loaded weights when none did.

Judging without clean images: each held-out pair is predicted both ways round (each image from the other) and
scored against the other noisy image. For noise that is independent between the two images and centred on the clean
image, the model closer to the clean images has the lower expected loss against a noisy target (the Noise2Noise
argument). "Clearly" means by ``Z`` standard errors of the per-pair differences, on the mean absolute error and on
the mean squared error both (the first is robust to impulse noise, the second is what PSNR measures). "Enough" means
the mean squared error fell by at least ``MIN_GAIN`` of itself: a held-out slice can share photographs with the pairs
trained on (50 000 crops cut from a few photographs), and then an epoch that fits those photographs a little better
improves it by a hair, significantly, while new photographs come out worse; a model that learns something about
the data, as on pairs unlike its training data, improves it by several times more. Nothing of the grader's
validation data is seen.

The same file is in Miniproject_1 and Miniproject_2 (each package is handed in on its own; a test keeps the copies
equal). It uses tensor methods and the Model's interface only: ``train_step``, ``predict``, ``learning_rate``,
``batch_size``, ``state_dict`` / ``load_state_dict``.
"""

import math

LR_SCALE = 0.1        # fine-tuning rate, relative to the model's learning rate
WARMUP = 0.05         # fraction of the steps spent warming up
MAX_HELD_OUT = 1000   # pairs held out to judge on (a tenth of the pairs when there are fewer than 10 000)
CHECKS = 4            # held-out measurements along the run, the last at its end
Z = 3.0               # standard errors by which a candidate must beat the loaded weights, on both losses
MIN_GAIN = 0.005      # and the fraction of the held-out mean squared error it must take off


def held_out_losses(model, inputs, targets):
    """Per held-out pair: (mean absolute error, mean squared error) of predicting each image of the pair from the
    other, averaged over the two directions (values on [0, 1]); two tensors of one number per pair."""
    l1 = l2 = 0.0
    for x, y in ((inputs, targets), (targets, inputs)):
        d = (model.predict(x) - y.to(x.device).float()).div_(255.0).flatten(1)
        l1 = l1 + d.abs().mean(1).double() / 2
        l2 = l2 + d.pow(2).mean(1).double() / 2
    return l1, l2


def z_scores(before, after):
    """For each loss: the mean per-pair improvement over its standard error (NaN with fewer than two pairs)."""
    zs = []
    for b, a in zip(before, after):
        d = b - a
        zs.append(float(d.mean() / (d.std() / math.sqrt(d.numel()))) if d.numel() > 1 else float("nan"))
    return zs


def rate(step, steps, peak):
    """The learning rate of step ``step`` (from 0) of ``steps``: linear warm-up to ``peak``, then a cosine decay."""
    warm = max(1, round(steps * WARMUP))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warm) / (steps - warm + 1)))


def fine_tune(model, inputs, targets, num_epochs):
    """Train ``model`` (weights loaded from a checkpoint) on the pairs for ``num_epochs`` passes, as the module
    docstring says. Returns what it measured: {"held_out": pairs, "steps": steps, "before": (l1, l2), "after":
    (l1, l2) of the weights it ends with, "kept": "loaded" or the step whose weights it kept, "checks": [(step,
    z of l1, z of l2, the fraction of the held-out mean squared error taken off), ...]}."""
    n = inputs.shape[0]
    order = inputs.new_empty(n).float().uniform_().argsort()       # a random permutation (torch's global RNG)
    held = order[:max(1, min(MAX_HELD_OUT, n // 10))]
    train = order[len(held):]
    held_in, held_target = inputs[held], targets[held]
    before = held_out_losses(model, held_in, held_target)
    loaded = model.state_dict(with_optimizer=False)
    best = {"losses": before, "kept": "loaded", "state": loaded}
    measured = []
    epochs = max(0, int(num_epochs))
    steps = math.ceil(len(train) / model.batch_size) * epochs
    checks = {math.ceil(steps * (k + 1) / CHECKS) for k in range(CHECKS)} if steps else set()
    base_lr = model.learning_rate
    step = 0
    try:
        for _ in range(epochs):
            shuffled = train[train.new_empty(len(train)).float().uniform_().argsort()]
            for i in range(0, len(shuffled), model.batch_size):
                model.learning_rate = rate(step, steps, base_lr * LR_SCALE)
                idx = shuffled[i:i + model.batch_size]
                model.train_step(inputs[idx], targets[idx])
                step += 1
                if step in checks:
                    losses = held_out_losses(model, held_in, held_target)
                    z = z_scores(before, losses)
                    gain = 1 - float(losses[1].mean()) / (float(before[1].mean()) or 1.0)
                    measured.append((step, z[0], z[1], gain))
                    if all(v >= Z for v in z) and gain >= MIN_GAIN and \
                            float(losses[1].mean()) < float(best["losses"][1].mean()):
                        best = {"losses": losses, "kept": f"step {step}",
                                "state": model.state_dict(with_optimizer=False)}
    finally:
        model.learning_rate = base_lr
    model.load_state_dict(best["state"])
    return {"held_out": len(held), "steps": steps, "before": _means(before), "after": _means(best["losses"]),
            "kept": best["kept"], "checks": measured}


def _means(losses):
    return tuple(float(t.mean()) for t in losses)
