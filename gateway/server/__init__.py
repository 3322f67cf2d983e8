"""The composition root: the app factory, the HTTP routes, the CLI; it may import every layer."""
