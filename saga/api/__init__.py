"""The front door: the customer's HTTP API."""
