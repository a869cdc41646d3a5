"""The saga participants (stock, payment, order) and the auth service."""
