#!/usr/bin/env python3
"""etcd2yaml (see trio_etcd_tree/_cli/etcd2yaml.py)."""

import sys

from trio_etcd_tree._cli.etcd2yaml import main

sys.exit(main())
