"""Artifacts: files a job keeps, uploaded by its runner, listed and downloaded by readers and deploy jobs."""
