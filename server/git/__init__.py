"""Git plumbing the server needs: a bare mirror per repository to read pipeline files from."""
