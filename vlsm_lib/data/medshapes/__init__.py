"""MedShapes."""
