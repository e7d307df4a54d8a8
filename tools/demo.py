#!/usr/bin/env python3
"""The trio-etcd-tree demo (see trio_etcd_tree/_cli/demo.py)."""

import sys

from trio_etcd_tree._cli.demo import main

sys.exit(main())
