"""``safeboard import tensorboard`` through the local server's import socket
(``import.sock`` in its 0700 data directory): the command opens the event files and hands
their descriptors to the server, which reads them with the same reader and stores their
scalars through its ingest directly (docs/tensorboard.md; docs/security.md, "S19 The
import socket").

- protocol.py: the framing both sides speak (standard library only: the command imports
  neither httpx nor numpy, P7);
- command.py: the command's side;
- listener.py: the server's socket and its checks;
- runner.py: the import on the server, the same ``RunImport`` as over HTTP.
"""
