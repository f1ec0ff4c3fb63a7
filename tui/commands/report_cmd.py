"""``n2n-tui report RUN [RUN...] --out DIR [--mark PSNR:LABEL]``: figures (PNG and PDF), metrics.csv and summary.md
for a report; the marks (``--mark`` and RUNS/marks.toml) are drawn on the PSNR figure."""
from __future__ import annotations

from sessions import Store


def run(args) -> int:
    from sessions.marks import load_marks
    from sessions.report import build_report

    marks = load_marks(args.runs_dir, args.mark)  # a bad mark is refused before anything is read or written
    with Store(args.runs_dir, create=False, readonly=True) as store:  # looking never creates or writes anything
        written = build_report(store, args.runs, args.out, step=args.step, force=args.force, marks=marks)
    print(f"wrote {len(written)} files to {args.out}: " + ", ".join(p.name for p in written))
    return 0
