"""Framework integrations (docs/integrations.md): thin wrappers on ``safeboard.init`` and
``run.log``, one module per framework, each importing its framework only when it is
imported itself, so this package imports with none of them installed."""
