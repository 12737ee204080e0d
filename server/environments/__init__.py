"""Protected environments: who may deploy where, decided on the server."""
