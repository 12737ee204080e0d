"""The pipeline file `.greenlight.yml`: its schema, precise errors, and the jobs it plans."""
