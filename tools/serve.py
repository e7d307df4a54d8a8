#!/usr/bin/env python3
"""trio-etcd-tree-serve: a real etcd to try things on (see trio_etcd_tree/_cli/demo.py)."""

import sys

from trio_etcd_tree._cli.demo import serve_main

sys.exit(serve_main())
