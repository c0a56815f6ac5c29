"""requests stage."""
