#!/usr/bin/env python3
"""The etcd-tree viewer (see trio_etcd_tree/_cli/viewer.py)."""

import sys

from trio_etcd_tree._cli.viewer import main

sys.exit(main())
