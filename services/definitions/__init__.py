"""The shop's saga definition documents."""
