"""Participants: the SDK to write one, and the conformance check that proves any one."""
