"""TensorBoard itself, unchanged, behind safeboard's TLS and login (docs/tensorboard.md).

``child`` runs TensorBoard on a Unix socket; ``supervisor`` starts, caps and stops those
children; ``tickets`` lets a user into TensorBoard's own origin; ``proxy`` is that origin's
ASGI application.
"""
