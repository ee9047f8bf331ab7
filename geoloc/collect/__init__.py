"""Data collection inside the database: areas, the grid, Street View metadata, buffer selection."""
