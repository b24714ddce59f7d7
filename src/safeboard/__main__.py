"""``python -m safeboard`` runs the CLI."""

from safeboard.cli import main

if __name__ == "__main__":
    main()
