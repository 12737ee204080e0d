"""What the runner and the server both import: the runner API's models (``spec``), log binding,
git access, the budget and visibility of log lines, the broker workaround. It imports neither."""
