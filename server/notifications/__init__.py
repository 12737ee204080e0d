"""Notifications: messages to Slack-compatible webhooks, e-mail and signed JSON webhooks when a
build fails, is fixed or errors, and when a deployment ends."""
