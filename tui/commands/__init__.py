"""One module per ``n2n-tui`` subcommand; each exposes ``run(args) -> int``."""
