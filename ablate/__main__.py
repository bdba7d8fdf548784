"""``python -m ablate`` runs the command line."""

from ablate.entry import main

main()
