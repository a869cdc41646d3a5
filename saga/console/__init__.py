"""The web console: sagas, their timelines, operator actions and dead letters, served by
the front door under /console."""
