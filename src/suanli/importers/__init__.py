"""Importers turn other formats of a fleet into suanli's fleet file structure."""
