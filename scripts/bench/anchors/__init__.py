"""Bare apps the suite measures hookstream against."""
