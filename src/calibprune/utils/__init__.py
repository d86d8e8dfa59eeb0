"""Small helpers shared by every layer: atomic writes, resource tracking, provenance."""
