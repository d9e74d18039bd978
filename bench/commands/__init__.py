"""One module per ``python -m bench`` verb, each with ``configure(parser)`` and ``main(args)``."""
