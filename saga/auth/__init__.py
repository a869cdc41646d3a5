"""The auth service: users with hashed passwords in Redis, signed expiring tokens."""
