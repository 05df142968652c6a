"""Root fixtures. Area fixtures live in each folder's own conftest.py."""
