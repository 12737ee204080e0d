"""Pruning what grows without bound: build logs past their retention age."""
