"""Training and export code (the `[train]` extra). The runtime never imports this subpackage."""
