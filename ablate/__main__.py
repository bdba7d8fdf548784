"""``python -m ablate`` runs the command line."""

from ablate.cli import main

main()
