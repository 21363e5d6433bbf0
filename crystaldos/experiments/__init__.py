"""Experiments over the shipped models and their committed results (the README's headline table)."""
