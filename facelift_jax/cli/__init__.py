"""The command-line layer shared by the commands (``python -m facelift_jax.<command>``): reading
argv, resolving the config, mapping flags to config fields. No library module imports it."""
