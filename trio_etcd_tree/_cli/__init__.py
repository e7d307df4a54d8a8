"""The command-line tools; each module has a ``main(argv) -> int``."""
