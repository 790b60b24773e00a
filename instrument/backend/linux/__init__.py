"""backend/linux."""
