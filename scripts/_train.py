"""The recipe behind scripts/train_mp1.py and scripts/train_mp2.py (the shipped bestmodel.pth files), trained by the
product's own ``engine.Trainer``: the loop, the learning-rate schedule (``engine.schedule``), the evaluations and the
best-weights bookkeeping are the ones a user's ``n2n-tui train`` run gets. What the recipe adds lives here, around
the Trainer, in sinks that use only its public face (events in; ``set_lr``, ``stop``, ``save_best`` out):

- ``--n-train`` `sample` crops (each cut, flipped and corrupted twice, independently), seen ``--epochs`` times;
  ``--renoise`` is the Trainer's own ``fresh`` mode (``RunConfig.fresh``, ``engine.fresh``): every epoch after the
  first trains on a new noise draw of both versions (new dead-leaves images too, for ``leaves``), drawn in a thread
  while the previous epoch trains; an epoch whose draw is late waits for it (a ``data`` event says so).
- ``Budget``: ``--minutes``. The Trainer runs Adam at ``--lr`` on its cosine schedule (a linear warm-up over the first
  ``--warmup`` of the run's steps, then a cosine decay to 1% of the rate). The run's progress is steps done / total
  steps or, with ``--minutes``, elapsed training time / budget when that is further along: then the rate is set to
  the schedule's value at that progress, so a run that would overrun its wall-clock budget compresses its schedule
  and still ends with a fully decayed rate, and it stops when the budget is spent.
- ``Log``: the printed lines and ``--curve FILE`` (every evaluation as a JSON line); the best weights go to
  ``--out`` (``Trainer.save_best``: atomic) at every evaluation that improves on the best so far.

The validation PSNR is measured on the fixed ``--n-val`` pairs the way the course grader does (mean per-image PSNR),
by the Trainer: at step 0, every ``total / --evals`` steps, and at every epoch end (its rule); when the budget stops
the run between two of them, once more here. The Trainer's evaluation events carry no SSIM: the one each printed line
shows costs one more pass over the validation pairs. At the end the file is reloaded into a fresh Model() and measured
again.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from engine.config import ConfigError, RunConfig
from engine.data import DataError, Dataset, load_data
from engine.evaluate import evaluate
from engine.headless import auto_recover
from engine.models import bestmodel_path, model_module
from engine.trainer import Trainer

DECAY_TO = 0.01       # the cosine schedule ends at this fraction of --lr
PRINT_EVERY = 500     # steps between progress lines (and the loss they average)
MAX_RECOVERIES = 3    # an exploding loss: halve the rate and go on, this many times (engine.headless.auto_recover)


def _describe(model) -> str:
    net = model.net
    params = net.parameters() if hasattr(net, "parameters") else (p for p, _ in net.param())
    n = sum(p.numel() for p in params)
    return f"device {model.device}, config {model.config}, {n} parameters"


def _parser(engine: int, description: str, defaults: dict) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default="sample")
    p.add_argument("--noise", default="mix")
    p.add_argument("--n-train", type=int, default=defaults["n_train"], help="training pairs (sample crops)")
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=defaults["epochs"])
    p.add_argument("--renoise", action=argparse.BooleanOptionalAction, default=defaults["renoise"],
                   help="new noise for the training pairs every epoch")
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    p.add_argument("--lr", type=float, default=defaults["lr"], help="peak rate, after the warm-up")
    p.add_argument("--warmup", type=float, default=0.02, help="fraction of the run spent warming up the rate")
    p.add_argument("--minutes", type=float, default=0, help="wall-clock budget of the training loop (0: none)")
    p.add_argument("--evals", type=int, default=defaults["evals"],
                   help="validations spread over the run's steps (the last at the end); the trainer also "
                        "validates at every epoch end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: the Model's own choice)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=str(bestmodel_path(engine)))
    p.add_argument("--curve", default=None, help="append every evaluation to this file as a JSON line")
    p.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="start from these weights (a checkpoint of the same network) instead of random ones")
    if engine == 1:
        p.add_argument("--widths", default=defaults["widths"], help="U-Net widths per level, e.g. 32,48,64")
    else:
        for key in ("c1", "c2", "c3", "k"):
            p.add_argument(f"--{key}", type=int, default=defaults[key])
    p.add_argument("--loss", default="l1", choices=("l1", "l2"))
    return p


def _init_from(model, path: str, p: argparse.ArgumentParser) -> None:
    """--init: the run starts from the weights in ``path`` (fine-tuning). Their network must be the recipe's or, for
    Miniproject_1, a narrower U-Net of the same depth and loss: that one is widened into the recipe's widths without
    changing what it computes (``UNet.widen_from``), so a wider network starts where the narrow one ended."""
    wanted = dict(model.config)
    source = type(model)(device="cpu")
    try:
        source.load_pretrained_model(path)
    except (OSError, ValueError) as e:
        p.error(f"--init: {e}")
    if source.config == wanted:
        model.load_pretrained_model(path)  # in place: the optimizer built on the model's parameters keeps them
        return
    widen = getattr(model.net, "widen_from", None)
    if widen is not None and {**source.config, "widths": None} == {**wanted, "widths": None}:
        with contextlib.suppress(ValueError):  # not the same depth, or a level narrower than the file's
            widen(source.net.to(model.device))
            print(f"--init: the U-Net of widths {source.config['widths']} in {path}, widened into "
                  f"{wanted['widths']} (the same function: its new units start unread)", flush=True)
            return
    p.error(f"--init: {path} holds the network {source.config}, the recipe asks for {wanted} (give its widths, or "
            "wider ones of the same depth)")


def _model_options(engine: int, args) -> dict:
    if engine == 1:
        return {"widths": [int(w) for w in str(args.widths).split(",")]}
    return {"c1": args.c1, "c2": args.c2, "c3": args.c3, "k": args.k}


class Budget:
    """Sink: the wall-clock budget (``--minutes``; 0: none) and the run's progress, max(steps done / total, training
    time / budget). While the time is ahead of the steps, the rate is set (``set_lr``) to the Trainer's own schedule
    at the time's progress, times whatever scale other changes gave it (the loss guard's halvings); once the budget is
    spent the run stops after the current step."""

    def __init__(self, trainer: Trainer, minutes: float):
        self.trainer, self.seconds = trainer, 60.0 * minutes
        self.start = time.time()
        self.ratio = 1.0     # the compression last asked of the Trainer's rate: factor(time's step) / factor(step)
        self.spent = False

    def restart(self) -> None:
        """Training starts now (after the data, the model and the step-0 evaluation)."""
        self.start = time.time()

    def elapsed(self) -> float:
        return time.time() - self.start

    def progress(self, step: int) -> float:
        t = self.trainer
        return max(step / t.total_steps, self.elapsed() / self.seconds if self.seconds else 0.0)

    def __call__(self, ev) -> None:
        if ev.kind != "step" or not self.seconds or self.spent:
            return
        t = self.trainer
        done = self.elapsed() / self.seconds
        if done >= 1.0:
            self.spent = True
            t.stop(f"time budget of {self.seconds / 60:g} min spent")
            return
        # the next step is step ev.step (0-based); the time says the schedule should be at done * total
        ahead = max(float(ev.step), done * t.total_steps)
        factor = t.schedule.factor(ev.step, t.total_steps, t.steps_per_epoch)
        ratio = t.schedule.factor(ahead, t.total_steps, t.steps_per_epoch) / factor if factor > 0 else 1.0
        if not math.isclose(ratio, self.ratio, rel_tol=1e-6):
            scale = t.lr_scale / self.ratio   # what is not ours: the guard's halvings, 1 otherwise
            t.set_lr(t.base_lr * scale * ratio * factor)
            self.ratio = ratio


class Log:
    """Sink: what the script prints, the ``--curve`` file, and the best weights at ``--out``."""

    def __init__(self, trainer: Trainer, budget: Budget, out: str, curve):
        self.trainer, self.budget, self.out, self.curve = trainer, budget, out, curve
        self.losses: list[float] = []
        self.seen = 0
        self.best: float | None = None    # the best PSNR written to out
        self.last_eval = 0                # the step of the last evaluation

    def __call__(self, ev) -> None:
        t = self.trainer
        if ev.kind == "step":
            self.losses.append(ev.loss)
            n, bs = len(t.dataset), t.batch_size
            self.seen = (ev.epoch - 1) * n + min((ev.step - (ev.epoch - 1) * t.steps_per_epoch) * bs, n)
            if ev.step % PRINT_EVERY == 0:
                print(f"  step {ev.step}/{t.total_steps}  progress {self.budget.progress(ev.step - 1):.3f}  lr "
                      f"{ev.lr:.2e}  loss {self.recent_loss():.4f}  {self.seen / self.budget.elapsed():.0f} img/s",
                      flush=True)
        elif ev.kind == "eval" and ev.step == 0:
            print(f"noisy input: val PSNR {ev.psnr_noisy:.2f} dB", flush=True)
            self.budget.restart()
        elif ev.kind == "eval":
            mark = ""
            if self.best is None or ev.best_psnr > self.best:   # the Trainer's best improved (or none written yet)
                t.save_best(self.out)
                self.best = ev.best_psnr
                mark = self.saved(ev.psnr == ev.best_psnr)
            self.report(ev.step, ev.epoch, ev.psnr, ev.psnr_noisy, mark)
        elif ev.kind == "control" and ev.action in ("guard", "error", "data"):
            print(f"{ev.action} at step {ev.step}: {ev.detail.strip()}", flush=True)

    def recent_loss(self) -> float:
        recent = self.losses[-PRINT_EVERY:] or [float("nan")]
        return sum(recent) / len(recent)

    def final_eval(self) -> None:
        """The weights the run ended with, when no evaluation saw them (a run the budget stopped mid-way)."""
        t = self.trainer
        if t.step == self.last_eval:
            return
        r = evaluate(t.model, t.dataset.val_input, t.dataset.val_target)
        bar = self.best if self.best is not None else t.best_psnr   # step 0's, when nothing is written yet
        mark = ""
        if bar is None or r["psnr"] > bar:
            t.model.save(self.out)
            self.best, mark = r["psnr"], self.saved(True)
        elif self.best is None:
            t.save_best(self.out)
            self.best, mark = t.best_psnr, self.saved(False)
        self.report(t.step, t.epoch, r["psnr"], r["psnr_noisy"], mark, r["ssim"])

    def saved(self, these: bool) -> str:
        """The end of an evaluation's line that wrote --out: these weights, or the best ones of an earlier step."""
        t = self.trainer
        return f"  -> saved {self.out}" + ("" if these else f" (the best: step {t.best_step}, {t.best_psnr:.2f} dB)")

    def report(self, step, epoch, psnr, psnr_noisy, mark, ssim=None) -> None:
        t = self.trainer
        self.last_eval = step
        if ssim is None:
            ssim = evaluate(t.model, t.dataset.val_input, t.dataset.val_target)["ssim"]
        elapsed = self.budget.elapsed()
        print(f"eval at step {step} (epoch {epoch}, {self.seen} images, {elapsed / 60:.1f} min): loss "
              f"{self.recent_loss():.4f}  val PSNR {psnr:.2f} dB (noisy {psnr_noisy:.2f}, gain "
              f"{psnr - psnr_noisy:+.2f})  SSIM {ssim:.3f}  {self.seen / max(elapsed, 1e-9):.0f} img/s{mark}",
              flush=True)
        if self.curve:
            self.curve.write(json.dumps({"step": step, "images": self.seen, "seconds": round(elapsed, 1),
                                         "psnr": psnr, "psnr_noisy": psnr_noisy, "lr": t.lr}) + "\n")
            self.curve.flush()


def main(engine: int, description: str, defaults: dict) -> int:
    p = _parser(engine, description, defaults)
    args = p.parse_args()
    if args.epochs < 1 or args.n_train < 1 or args.n_val < 1 or not args.lr > 0 or args.batch_size < 1 \
            or not 0 <= args.warmup < 1 or args.evals < 1 or args.minutes < 0:
        p.error("epochs, n-train, n-val, batch-size, evals must be >= 1, lr > 0, 0 <= warmup < 1, minutes >= 0")

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)  # the data's noise is drawn with them too
    if engine == 2:
        torch.set_grad_enabled(False)  # the framework computes its own gradients
    torch.manual_seed(args.seed)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()
    try:
        ds = load_data(args.data, noise=args.noise, seed=args.seed, n_train=args.n_train, n_val=args.n_val)
    except DataError as e:
        p.error(str(e))
    if args.renoise and ds.train_clean is None:
        p.error(f"--renoise needs a generated data source (sample, leaves, images:DIR), not {args.data}")
    print(f"data: {ds.source} {ds.noise}: {len(ds)} training pairs, {len(ds.val_input)} validation "
          f"({time.time() - t0:.0f} s)", flush=True)
    if device.startswith("cuda"):  # the training pairs on the GPU before the Trainer sees them
        ds = Dataset(ds.train_input.to(device), ds.train_target.to(device), ds.val_input, ds.val_target, ds.source,
                     ds.noise, ds.train_clean)

    total = math.ceil(len(ds) / args.batch_size) * args.epochs
    warmup = min(math.ceil(args.warmup * total), total - 1)  # the steps whose progress is under --warmup
    config = RunConfig(engine=engine, data=args.data, noise=args.noise, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, subset=args.n_train, n_val=args.n_val,
                       eval_every=math.ceil(total / args.evals), seed=args.seed, device=device, threads=threads,
                       loss=args.loss, model=_model_options(engine, args), schedule="cosine", warmup=warmup,
                       decay_to=DECAY_TO, fresh=args.renoise)
    with tempfile.TemporaryDirectory(prefix="n2n-train-") as tmp:
        try:
            trainer = Trainer(config, run_dir=Path(tmp) / "run", dataset=ds)
            if args.init:
                _init_from(trainer.model, args.init, p)
            trainer.prepare()
        except ConfigError as e:
            p.error(str(e))
        if trainer.dataset is not ds or trainer.total_steps != total:
            raise RuntimeError("the Trainer did not take the data set as given (sliced or moved): the warm-up, the "
                               "evaluation cadence and --renoise assume it trains on exactly these tensors")
        model = trainer.model
        print(f"{_describe(model)}, batch {trainer.batch_size}, {args.epochs} epoch(s) of {len(ds)} pairs = {total} "
              f"steps, lr {args.lr:g} (warm-up {args.warmup:g}, cosine), renoise {'on' if args.renoise else 'off'}, "
              f"budget {f'{args.minutes:g} min' if args.minutes else 'none'}, torch threads {threads}", flush=True)
        print(f"engine.Trainer: cosine schedule from engine.schedule (warm-up {warmup} steps, down to "
              f"{DECAY_TO:g} x lr), validation every {config.eval_every} steps and at every epoch end", flush=True)

        budget = Budget(trainer, args.minutes)
        with open(args.curve, "a") if args.curve else contextlib.nullcontext() as curve:
            log = Log(trainer, budget, args.out, curve)
            for sink in (log, budget, auto_recover(trainer, MAX_RECOVERIES)):
                trainer.add_sink(sink)
            final = trainer.run()
            if final == "failed" or (final == "stopped" and not budget.spent):
                print(f"training {final}: {trainer.message}", flush=True)
                return 1
            log.final_eval()

    check = model_module(engine).Model(**({} if args.device is None else {"device": args.device}))
    check.load_pretrained_model(args.out)
    result = evaluate(check, ds.val_input, ds.val_target)
    print(f"reloaded {args.out} in a fresh Model(): val PSNR {result['psnr']:.2f} dB, noisy input "
          f"{result['psnr_noisy']:.2f} dB, gain {result['psnr'] - result['psnr_noisy']:+.2f} dB; {trainer.step} steps, "
          f"{log.seen} images in {budget.elapsed() / 60:.1f} min"
          + (f", {trainer.fresh_epochs} new noise draws over {trainer.epoch} epochs" if args.renoise else ""),
          flush=True)
    return 0
