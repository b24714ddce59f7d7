"""``python -m safeboard`` and the ``safeboard`` command (``run``): the CLI. A Ctrl-C while
the CLI is still being imported ends as it does later, ``aborted`` and exit status 130,
not a traceback."""

import sys


def run() -> None:
    try:
        from safeboard.cli import main  # noqa: PLC0415  (inside the guard: see above)
    except KeyboardInterrupt:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
