"""Results on GitHub: the REST API client, commit statuses (through an outbox) and redelivery of
webhook deliveries that never reached Greenlight."""
