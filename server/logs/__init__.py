"""Step logs for people: ANSI rendered safely, paged by line ranges, searched, streamed live (SSE)."""
