"""provider stage."""
