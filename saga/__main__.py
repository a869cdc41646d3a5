"""`python -m saga`: the same as the `saga` command."""

from saga.cli.main import main

main()
