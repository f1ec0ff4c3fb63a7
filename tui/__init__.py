"""n2n-tui: the Textual dashboard and the ``n2n-tui`` command line."""
