"""``python -m structbandits`` runs the command line."""

from structbandits.cli import main

main()
