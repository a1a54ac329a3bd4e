"""The composition root: the only package that reads the environment and builds infrastructure."""
