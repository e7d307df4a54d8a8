"""The core: the one error hierarchy, the values the client hands back, transactions as
Python values, keys, value codecs and small utilities. It imports nothing above it."""
