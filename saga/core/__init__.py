"""The pure core: saga definitions, events, the fold and decide. No I/O, no clock."""
