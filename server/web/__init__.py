"""Server-rendered status pages (Jinja2, autoescaped)."""
