"""Framework integrations: thin wrappers on ``safeboard.init`` / ``run.log`` that a
framework calls back (docs/integrations.md). Each module imports its framework only when
its class is first used, so importing one never needs the framework installed."""
