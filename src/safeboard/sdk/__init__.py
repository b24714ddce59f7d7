"""The training-script side: runs, logging, the background sender and the disk spool.

Public names are re-exported from ``safeboard`` itself; import from there.
"""
