"""``n2n-tui report RUN [RUN...] --out DIR``: figures (PNG and PDF), metrics.csv and summary.md for a report."""
from __future__ import annotations

from sessions import Store


def run(args) -> int:
    from sessions.report import build_report

    with Store(args.runs_dir, create=False, readonly=True) as store:  # looking never creates or writes anything
        written = build_report(store, args.runs, args.out, step=args.step, force=args.force)
    print(f"wrote {len(written)} files to {args.out}: " + ", ".join(p.name for p in written))
    return 0
