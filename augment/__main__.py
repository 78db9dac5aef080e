"""`python -m augment` runs the CLI."""

from augment.cli import main

main()
