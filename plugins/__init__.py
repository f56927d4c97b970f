"""Built-in regprune plugins.  Each module is registered like a third-party plugin."""
