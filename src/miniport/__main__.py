"""``python -m miniport`` runs the CLI."""

from miniport.cli.main import main

main()
