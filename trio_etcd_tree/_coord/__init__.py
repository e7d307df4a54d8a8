"""Coordination recipes on etcd: locks and leader elections, in etcd's own key layout.

``session`` holds what both share (the contender key, waiting one's turn); ``lock`` and
``election`` build on it.
"""
