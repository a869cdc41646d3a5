"""The web console's drawing parts: timelines, definition diagrams, overview figures."""
