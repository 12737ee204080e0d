"""Repository secrets: encrypted at rest, set and listed (names only) through the API and the
CLI, handed to the steps that name them when a runner claims a job."""
