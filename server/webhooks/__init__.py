"""GitHub webhooks: verify, store the delivery and the build in one transaction, reply fast."""
