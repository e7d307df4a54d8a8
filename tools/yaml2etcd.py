#!/usr/bin/env python3
"""yaml2etcd (see trio_etcd_tree/_cli/yaml2etcd.py)."""

import sys

from trio_etcd_tree._cli.yaml2etcd import main

sys.exit(main())
