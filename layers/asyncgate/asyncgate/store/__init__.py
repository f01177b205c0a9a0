"""Data access: DynamoDB items and the conditional writes that guard every transition."""
