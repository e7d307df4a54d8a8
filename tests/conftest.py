"""Test configuration: the fixtures come from trio_etcd_tree.testing.pytest_plugin (loaded
with -p in pyproject.toml)."""
