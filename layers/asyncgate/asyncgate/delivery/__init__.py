"""Webhook delivery: Standard Webhooks signing and an SSRF-safe HTTP transport."""
