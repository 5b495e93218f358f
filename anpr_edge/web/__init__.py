"""The installer's web page: plain HTML, CSS and JavaScript in ``static/``, shipped in the package and
served by ``anpr_edge.health`` (no build step, nothing loaded from the network)."""
