"""Who may do what: opaque tokens (stored as hashes), the user token the API asks for, and the labels
a runner token allows."""
