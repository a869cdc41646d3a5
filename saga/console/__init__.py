"""The web console: sagas, their timelines, operator actions, dead letters, definitions
and the overview, served by the front door under /console."""
