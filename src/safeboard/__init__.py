"""safeboard."""
