"""backend/windows."""
