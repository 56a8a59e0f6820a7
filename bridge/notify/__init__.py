"""Outgoing notices: signed webhooks, alert emails (SMTP) and Slack messages."""
