#!/usr/bin/env python3
"""etcdmon (see trio_etcd_tree/_cli/etcdmon.py)."""

import sys

from trio_etcd_tree._cli.etcdmon import main

sys.exit(main())
