"""sdfuse."""
